# Test logits → voting, subset-size accuracy (the headline), exact expectation and metrics per model × fold,
# then one table of each kind for the whole run.


rule evaluate:
    input:
        "results/models/{model}/{fold}/logits.pt",
    output:
        expand("results/eval/{{model}}/{{fold}}/{table}.tsv", table=EVALUATION_TABLES),
    log:
        "logs/evaluate/{model}/{fold}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{fold}.tsv"
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
        "--out-dir results/eval/{wildcards.model}/{wildcards.fold} > {log} 2>&1"


rule aggregate:
    input:
        expand(
            "results/eval/{model}/{fold}/{table}.tsv",
            model=config["models"],
            fold=config["folds"],
            table=EVALUATION_TABLES,
        ),
    output:
        [
            report(f"results/eval/{table}.tsv", caption="../report/tables.rst", category="Tables")
            for table in EVALUATION_TABLES
        ],
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=expand("results/eval/{model}/{fold}", model=config["models"], fold=config["folds"]),
        tables=EVALUATION_TABLES,
    shell:
        "python -m contrastive_prosthetics aggregate --inputs {params.inputs} --tables {params.tables} "
        "--out-dir results/eval > {log} 2>&1"
