# Per-subject tensors → one searched, trained and checkpointed model per {model}/{fold}/{window}, with its test
# logits.


# Networks: a GPU when the cluster has one (CPU otherwise).
rule train:
    input:
        fold_tensors,
    output:
        search="results/models/{model}/{fold}/{window}/search.tsv",
        model="results/models/{model}/{fold}/{window}/model.pt",
        history="results/models/{model}/{fold}/{window}/history.tsv",
        logits="results/models/{model}/{fold}/{window}/logits.pt",
    log:
        "logs/train/{model}/{fold}/{window}.log",
    benchmark:
        "benchmarks/train/{model}/{fold}/{window}.tsv"
    wildcard_constraints:
        model=models_of_kind(lambda kind: kind != "lda"),
    # The longest jobs first, so that short ones fill the cores at the end of a run.
    priority: train_priority
    conda:
        "../../envs/pipeline.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        model=lambda wildcards: json.dumps(config["models"][wildcards.model]),
        architecture=json.dumps(config["architecture"]),
        fold=lambda wildcards: json.dumps(config["folds"][wildcards.fold]),
        training=json.dumps(config["training"]),
        evaluation=TRAINING_EVALUATION,
        seed=config["seed"],
        device=config["device"],
        out_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics train --model {wildcards.model} --model-json {params.model:q} "
        "--architecture-json {params.architecture:q} --fold {wildcards.fold} --fold-json {params.fold:q} "
        "--window {wildcards.window} "
        "--training-json {params.training:q} --evaluation-json {params.evaluation:q} --seed {params.seed} --device {params.device} --threads {threads} "
        "--tensors {input} --out-dir {params.out_dir} > {log} 2>&1"


# The LDA baseline: same command and outputs, but CPU only (scikit-learn), so a cluster never holds a GPU for it.
use rule train as train_lda with:
    wildcard_constraints:
        model=models_of_kind(lambda kind: kind == "lda"),
    resources:
        mem_mb=4000,
