# contrastive-prosthetics: NinaPro sEMG → per-subject tensors → models → subset-size evaluation → report.
# A table of contents: the rules live in workflow/rules/, the logic in the package they call.
import os
import sys

from snakemake.utils import min_version

# The package in src/ beside this file serves both this Snakefile's imports and every job's
# `python -m contrastive_prosthetics`, in whatever environment runs it (.venv, a conda env from envs/, a cluster
# node): the code that runs is always this checkout's, installed or not.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))

from contrastive_prosthetics.config import prepare_config
from contrastive_prosthetics.evaluation.summary import print_run_summary

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


prepare_config(config, "config")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/calibration.smk"


# Run on the submitting machine, never on a cluster node: quick bookkeeping, and downloads, which need the
# internet that compute nodes usually lack and only wait on the network.
localrules:
    all,
    download,
    aggregate,
    aggregate_stream,
    stream_summary,
    aggregate_zero_shot,
    aggregate_pose_decoding,
    figures,
    calibration_summary,


rule all:
    default_target: True
    input:
        tensors=all_tensors(),
        logits=all_logits(),
        tables=expand(
            "results/eval/{table}.tsv",
            table=EVALUATION_TABLES
            + SUMMARY_TABLES
            + STREAM_TABLES
            + STREAM_SUMMARY_TABLES
            + ZERO_SHOT_TABLES
            + ZERO_SHOT_STREAM_TABLES
            + POSE_DECODING_TABLES,
        ),
        figures=expand("results/figures/{name}.{ext}", name=FIGURES, ext=["svg", "png"]),
        calibration=calibration_outputs(),


# A finished run says what happened: each model's numbers, from the aggregated tables, and where to look next.
onsuccess:
    print_run_summary("results/eval/summary.tsv", "results/figures", "make report (results/report.html)")
