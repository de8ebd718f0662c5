# Test logits → voting, subset-size accuracy (the headline), exact expectation and metrics per model × fold,
# then one table of each kind for the whole run.


rule evaluate:
    input:
        "results/models/{model}/{fold}/{window}/logits.pt",
    output:
        expand("results/eval/{{model}}/{{fold}}/{{window}}/{table}.tsv", table=EVALUATION_TABLES),
    log:
        "logs/evaluate/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{fold}/{window}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        vote_window_ms=config["evaluation"]["vote_window_ms"],
        trials=config["evaluation"]["subset_trials"],
        seed=config["seed"],
        no_rest="" if config["evaluation"]["include_rest"] else "--no-rest",
    shell:
        "python -m contrastive_prosthetics evaluate --logits {input} --vote-window-ms {params.vote_window_ms} "
        "--trials {params.trials} --seed {params.seed} {params.no_rest} "
        "--out-dir results/eval/{wildcards.model}/{wildcards.fold}/{wildcards.window} > {log} 2>&1"


rule aggregate:
    input:
        expand(per_run("results/eval/{model}/{fold}/{window}/{{table}}.tsv"), table=EVALUATION_TABLES),
    output:
        [
            report(f"results/eval/{table}.tsv", caption="../report/tables.rst", category="Tables")
            for table in EVALUATION_TABLES + SUMMARY_TABLES
        ],
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=per_run("results/eval/{model}/{fold}/{window}"),
        tables=EVALUATION_TABLES,
        families=json.dumps(FAMILIES),
        seed=config["seed"],
    shell:
        "python -m contrastive_prosthetics aggregate --inputs {params.inputs} --tables {params.tables} "
        "--families-json {params.families:q} --seed {params.seed} --out-dir results/eval > {log} 2>&1"
