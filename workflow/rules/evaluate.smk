# Test logits → voting, subset-size accuracy (the headline), exact expectation and metrics per model × fold ×
# window, then one table of each kind for the whole run.


rule evaluate:
    input:
        "results/models/{model}/{fold}/{window}/logits.pt",
    output:
        # The run's subset_accuracy.tsv concatenates these byte for byte (tens of MB): each run's copy goes once read.
        temp("results/eval/{model}/{fold}/{window}/subset_accuracy.tsv"),
        expand(
            "results/eval/{{model}}/{{fold}}/{{window}}/{table}.tsv",
            table=[table for table in EVALUATION_TABLES if table != "subset_accuracy"],
        ),
    log:
        "logs/evaluate/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{fold}/{window}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    # One thread: with two, torch's first parallel reduction of a process splits its work unpredictably, and the
    # exact expectation's last bits changed from run to run.
    threads: 1
    resources:
        mem_mb=8000,
    params:
        vote_window_ms=config["evaluation"]["vote_window_ms"],
        trials=config["evaluation"]["subset_trials"],
        seed=config["seed"],
        no_rest="" if config["evaluation"]["include_rest"] else "--no-rest",
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics evaluate --logits {input} --vote-window-ms {params.vote_window_ms} "
        "--trials {params.trials} --seed {params.seed} {params.no_rest} --threads {threads} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule aggregate:
    input:
        expand(evaluated_runs("results/eval/{model}/{fold}/{window}/{{table}}.tsv"), table=EVALUATION_TABLES),
    output:
        [run_table(table) for table in EVALUATION_TABLES + SUMMARY_TABLES],
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=evaluated_runs("results/eval/{model}/{fold}/{window}"),
        tables=EVALUATION_TABLES,
        families=json.dumps(FAMILIES),
        seed=config["seed"],
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics aggregate --inputs {params.inputs} --tables {params.tables} "
        "--families-json {params.families:q} --seed {params.seed} --out-dir {params.out_dir} > {log} 2>&1"


# Every frame of the test recordings decided as the real-time controller would, per model × fold × window (LDA from
# the causal features conversion keeps for every stream frame); skipped when the RMS is centred (not causal). A
# zero-shot fold's also among its unseen, seen and all gestures, beside its oracle's streams (zero_shot_stream).
rule stream:
    input:
        model="results/models/{model}/{fold}/{window}/model.pt",
        tensors=fold_tensors,
        oracle=oracle_model,
    output:
        metrics="results/eval/{model}/{fold}/{window}/stream_metrics.tsv",
        tradeoff="results/eval/{model}/{fold}/{window}/stream_tradeoff.tsv",
        timing="results/eval/{model}/{fold}/{window}/stream_timing.tsv",
        zero_shot="results/eval/{model}/{fold}/{window}/zero_shot_stream.tsv",
    log:
        "logs/stream/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/stream/{model}/{fold}/{window}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        fold=lambda wildcards: json.dumps(config["folds"][wildcards.fold]),
        sizes=" ".join(map(str, config["evaluation"]["stream_subset_sizes"])),
        trials=config["evaluation"]["stream_trials"],
        subset_trials=config["evaluation"]["subset_trials"],
        vote_ms=" ".join(map(str, config["evaluation"]["stream_vote_ms"])),
        seed=config["seed"],
        adaptation_frames=config["training"]["adaptation_frames"],
        oracle=oracle_option,
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics stream --model {input.model} --tensors {input.tensors} "
        "--fold {wildcards.fold} --fold-json {params.fold:q} --subset-sizes {params.sizes} --trials {params.trials} "
        "--subset-trials {params.subset_trials} --vote-ms {params.vote_ms} --seed {params.seed} "
        "--adaptation-frames {params.adaptation_frames} {params.oracle} --threads {threads} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule aggregate_stream:
    input:
        stream_runs("results/eval/{model}/{fold}/{window}/stream_metrics.tsv"),
        stream_runs("results/eval/{model}/{fold}/{window}/stream_tradeoff.tsv"),
        stream_runs("results/eval/{model}/{fold}/{window}/stream_timing.tsv"),
        stream_runs("results/eval/{model}/{fold}/{window}/zero_shot_stream.tsv"),
    output:
        [run_table(table) for table in STREAM_TABLES + ZERO_SHOT_STREAM_TABLES],
    log:
        "logs/aggregate_stream.log",
    benchmark:
        "benchmarks/aggregate_stream.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=stream_runs("results/eval/{model}/{fold}/{window}"),
        tables=STREAM_TABLES + ZERO_SHOT_STREAM_TABLES,
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics concatenate --inputs {params.inputs} --tables {params.tables} "
        "--out-dir {params.out_dir} > {log} 2>&1"


# The stream metrics over users (subject means with intervals) and the rest promise user by user.
rule stream_summary:
    input:
        "results/eval/stream_metrics.tsv",
    output:
        run_table("stream_summary"),
    log:
        "logs/stream_summary.log",
    benchmark:
        "benchmarks/stream_summary.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        families=json.dumps(FAMILIES),
        target=target_option(),
        seed=config["seed"],
    shell:
        "python -m contrastive_prosthetics stream-summary --stream-metrics {input} --families-json {params.families:q} "
        "{params.target} --seed {params.seed} --out {output} > {log} 2>&1"


# Zero-shot folds: the held-out gestures, the trained ones and all, against the same model trained on every gesture
# (the table, its subset-size curve and its confusion counts).
rule zero_shot:
    input:
        logits="results/models/{model}/{fold}/{window}/logits.pt",
        oracle=oracle_logits,
    output:
        table="results/eval/{model}/{fold}/{window}/zero_shot.tsv",
        subsets="results/eval/{model}/{fold}/{window}/zero_shot_subsets.tsv",
        confusion="results/eval/{model}/{fold}/{window}/zero_shot_confusion.tsv",
    log:
        "logs/zero_shot/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/zero_shot/{model}/{fold}/{window}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: 1  # as evaluate's: reruns bit-identical
    params:
        vote_window_ms=config["evaluation"]["vote_window_ms"],
        trials=config["evaluation"]["subset_trials"],
        seed=config["seed"],
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics zero-shot --logits {input.logits} --oracle {input.oracle} "
        "--vote-window-ms {params.vote_window_ms} --trials {params.trials} --seed {params.seed} "
        "--threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule aggregate_zero_shot:
    input:
        per_run("results/eval/{model}/{fold}/{window}/zero_shot.tsv", zero_shot_only=True),
        per_run("results/eval/{model}/{fold}/{window}/zero_shot_subsets.tsv", zero_shot_only=True),
        per_run("results/eval/{model}/{fold}/{window}/zero_shot_confusion.tsv", zero_shot_only=True),
    output:
        [run_table(table) for table in ZERO_SHOT_TABLES],
    log:
        "logs/aggregate_zero_shot.log",
    benchmark:
        "benchmarks/aggregate_zero_shot.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=per_run("results/eval/{model}/{fold}/{window}", zero_shot_only=True),
        tables=ZERO_SHOT_TABLES,
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics concatenate --inputs {params.inputs} --tables {params.tables} "
        "--out-dir {params.out_dir} > {log} 2>&1"


# Pose-decoding models: the decoded pose against the glove, per subject, on the held-out repetitions' seen gestures,
# a zero-shot fold's unseen ones and rest (from logits.pt, which keeps both for every test frame).
rule pose_decoding:
    input:
        "results/models/{model}/{fold}/{window}/logits.pt",
    output:
        "results/eval/{model}/{fold}/{window}/pose_decoding.tsv",
    log:
        "logs/pose_decoding/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/pose_decoding/{model}/{fold}/{window}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m contrastive_prosthetics pose-decoding --logits {input} --out {output} > {log} 2>&1"


rule aggregate_pose_decoding:
    input:
        pose_decoding_runs("results/eval/{model}/{fold}/{window}/pose_decoding.tsv"),
    output:
        [run_table(table) for table in POSE_DECODING_TABLES],
    log:
        "logs/aggregate_pose_decoding.log",
    benchmark:
        "benchmarks/aggregate_pose_decoding.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        inputs=pose_decoding_runs("results/eval/{model}/{fold}/{window}"),
        tables=POSE_DECODING_TABLES,
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics concatenate --inputs {params.inputs} --tables {params.tables} "
        "--out-dir {params.out_dir} > {log} 2>&1"
