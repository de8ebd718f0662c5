# Test logits → voting, subset-size accuracy (the headline), exact expectation and metrics per model × fold,
# then one table of each kind for the whole run.

EVAL_TABLES = ["subset_accuracy", "subset_exact", "voting", "metrics", "confusion"]


rule evaluate:
    input:
        "results/models/{model}/{fold}/logits.pt",
    output:
        expand("results/eval/{{model}}/{{fold}}/{table}.tsv", table=EVAL_TABLES),
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
            table=EVAL_TABLES,
        ),
    output:
        subset_accuracy=report("results/eval/subset_accuracy.tsv", caption="../report/tables.rst", category="Tables"),
        subset_exact=report("results/eval/subset_exact.tsv", caption="../report/tables.rst", category="Tables"),
        voting=report("results/eval/voting.tsv", caption="../report/tables.rst", category="Tables"),
        metrics=report("results/eval/metrics.tsv", caption="../report/tables.rst", category="Tables"),
        confusion=report("results/eval/confusion.tsv", caption="../report/tables.rst", category="Tables"),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=expand("results/eval/{model}/{fold}", model=config["models"], fold=config["folds"]),
        tables=EVAL_TABLES,
    shell:
        "python -m contrastive_prosthetics aggregate --inputs {params.inputs} --tables {params.tables} "
        "--out-dir results/eval > {log} 2>&1"
