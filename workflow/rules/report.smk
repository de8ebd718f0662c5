# Aggregated tables and training records → every figure, each in the report with its caption.


rule figures:
    input:
        tables=expand(
            "results/eval/{table}.tsv",
            table=EVALUATION_TABLES + SUMMARY_TABLES + STREAM_TABLES + STREAM_SUMMARY_TABLES + ZERO_SHOT_TABLES,
        ),
        histories=per_run("results/models/{model}/{fold}/{window}/history.tsv"),
        searches=per_run("results/models/{model}/{fold}/{window}/search.tsv"),
    output:
        svg=[
            report(f"results/figures/{name}.svg", caption=f"../report/{name}.rst", category="Figures")
            for name in FIGURES
        ],
        png=expand("results/figures/{name}.png", name=FIGURES),
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        vote_window_ms=config["evaluation"]["vote_window_ms"],
        window=WINDOWS[0],
        family=FAMILIES[next(iter(config["folds"]))],
        families=json.dumps(FAMILIES),
        eval_dir=input_folder,
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics figures --eval-dir {params.eval_dir} --histories {input.histories} "
        "--searches {input.searches} --out-dir {params.out_dir} --vote-window-ms {params.vote_window_ms} "
        "--window {params.window} --family {params.family} --families-json {params.families:q} > {log} 2>&1"
