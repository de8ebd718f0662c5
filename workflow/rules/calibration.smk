# Calibration folds: the model trained on the other subjects, calibrated to each new user of the fold with the first
# c of its calibration repetitions (every method and baseline), scored on its test repetitions; then the run's curve.


rule calibration_curve:
    input:
        model="results/models/{model}/{fold}/{window}/model.pt",
        tensors=test_subject_tensors,
        validation=validation_subject_tensors,
    output:
        "results/calibration/{model}/{fold}/{window}/calibration.tsv",
    log:
        "logs/calibration/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/calibration/{model}/{fold}/{window}.tsv"
    priority: 1  # as its network's (train_priority): the run's last jobs are short ones
    conda:
        "../../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        fold=lambda wildcards: json.dumps(config["folds"][wildcards.fold]),
        training=json.dumps(config["training"]),
        evaluation=TRAINING_EVALUATION,
        calibration=json.dumps(config["calibration"]),
        seed=config["seed"],
    shell:
        "python -m contrastive_prosthetics calibration-curve --model {input.model} --tensors {input.tensors} "
        "--validation-tensors {input.validation} "
        "--fold {wildcards.fold} --fold-json {params.fold:q} --training-json {params.training:q} "
        "--evaluation-json {params.evaluation:q} --calibration-json {params.calibration:q} --seed {params.seed} "
        "--threads {threads} --out {output} > {log} 2>&1"


rule calibration_summary:
    input:
        calibration_runs("results/calibration/{model}/{fold}/{window}/calibration.tsv"),
    output:
        table=report("results/eval/calibration.tsv", caption="../report/tables/calibration.rst", category="Tables"),
        svg=report("results/figures/calibration.svg", caption="../report/calibration.rst", category="Figures"),
        png="results/figures/calibration.png",
    log:
        "logs/calibration_summary.log",
    benchmark:
        "benchmarks/calibration_summary.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        seed=config["seed"],
        stem=lambda wildcards, output: output.svg.removesuffix(".svg"),
    shell:
        "python -m contrastive_prosthetics calibration-summary --inputs {input} --seed {params.seed} "
        "--out {output.table} --figure-stem {params.stem} > {log} 2>&1"
