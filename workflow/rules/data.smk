# Raw NinaPro files (synthetic, downloaded or local) → one tensor file per subject.


rule synthesize:
    output:
        "resources/synthetic/{db}/s{subject}/{file}.mat",
    log:
        "logs/synthesize/{db}/s{subject}/{file}.log",
    benchmark:
        "benchmarks/synthesize/{db}/s{subject}/{file}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=2000,
    params:
        exercise=exercise_of_file,
        synthetic=json.dumps(config["synthetic"]),
        seed=config["seed"],
    shell:
        "python -m contrastive_prosthetics synthesize --database {wildcards.db} --subject {wildcards.subject} "
        "--exercise {params.exercise} --seed {params.seed} --params-json {params.synthetic:q} "
        "--out {output} > {log} 2>&1"


rule download:
    output:
        manifest="resources/ninapro/{db}/s{subject}/manifest.json",
    log:
        "logs/download/{db}/s{subject}.log",
    benchmark:
        "benchmarks/download/{db}/s{subject}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    resources:
        downloads=1,
    params:
        url=archive_url,
        sha256=archive_checksum,
        exercises=" ".join(EXERCISES),
        retries=config["data"]["download"]["retries"],
        backoff_s=config["data"]["download"]["backoff_s"],
        timeout_s=config["data"]["download"]["timeout_s"],
        archive_dir=archive_folder,
        dest_dir=output_folder,
    shell:
        "python -m contrastive_prosthetics download --database {wildcards.db} --subject {wildcards.subject} "
        "--exercises {params.exercises} --url {params.url:q} {params.sha256:q} "
        "--archive-dir {params.archive_dir} --dest-dir {params.dest_dir} "
        "--retries {params.retries} --backoff-s {params.backoff_s} --timeout-s {params.timeout_s} > {log} 2>&1"


rule convert:
    input:
        convert_inputs,
    output:
        "results/tensors/{db}/s{subject}.pt",
    log:
        "logs/convert/{db}/s{subject}.log",
    benchmark:
        "benchmarks/convert/{db}/s{subject}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    # Two channels are processed at once while a third thread reads the next file (bench/convert_speed.py).
    threads: 2
    resources:
        mem_mb=4000,
    params:
        sources=source_arguments,
        manifest=manifest_argument,
        exercises=" ".join(EXERCISES),
        preprocess=json.dumps(config["preprocess"]),
        seed=config["seed"],
    shell:
        "python -m contrastive_prosthetics convert --database {wildcards.db} --subject {wildcards.subject} "
        "{params.sources:q} {params.manifest:q} --exercises {params.exercises} --seed {params.seed} "
        "--preprocess-json {params.preprocess:q} --threads {threads} --out {output} > {log} 2>&1"
