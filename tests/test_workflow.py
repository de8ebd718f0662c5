"""The Snakemake workflow end to end on tiny configurations (runs snakemake in a subprocess)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import site
import subprocess
import sys
import threading
import venv
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, check_figure, emg_for, make_protocol, write_mat
from snakemake_runs import (
    DEFAULT,
    check_metrics_recompute_the_logits,
    evaluated_runs,
    job_counts,
    snakemake,
    write_config,
)
from tiny_config import tiny

from contrastive_prosthetics.data.tensor_file import read_tensor_file
from contrastive_prosthetics.evaluation.artefacts import (
    EVALUATION_TABLES,
    FIGURES,
    FULL_TABLES,
    STREAM_TABLES,
    SUMMARY_TABLES,
    ZERO_SHOT_SETS,
    ZERO_SHOT_STREAM_TABLES,
    ZERO_SHOT_TABLES,
)
from contrastive_prosthetics.evaluation.calibration_summary import METRICS
from contrastive_prosthetics.learning.logits import read_logits
from contrastive_prosthetics.learning.model_file import read_model_file

pytestmark = pytest.mark.workflow


def test_a_centred_rms_plans_no_stream_evaluation(tmp_path):
    """A centred RMS reads ahead of its frame: no controller decides that way, so its models are not scored on
    streams (the stream tables are written with their header only) rather than passed off as causal."""
    result = snakemake(write_config(tmp_path, lambda c: c["preprocess"].update(rms_alignment="centred")), "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result)
    assert "stream" not in jobs and jobs["aggregate_stream"] == "1" and jobs["train"] != "0"


def test_default_dag_plans_every_subject(tmp_path):
    result = snakemake(write_config(tmp_path, lambda c: None), "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result)
    windows = len(DEFAULT["preprocess"]["windows"])
    assert windows == 1  # the demonstration trains the reference's onset window only
    # reps-2-5 trains four networks and LDA; the zero-shot family's one set trains contrastive_pose alone; the
    # calibration family one contrastive model per new user (the two DB2 subjects), each calibrated
    # (its own scoring). contrastive_pose decodes pose: its pose decoding is scored on reps-2-5 and on the zero-shot
    # set.
    networks, sets, subjects = 4, 1, len(DEFAULT["folds"]["calibration"]["subjects"])
    assert subjects == 2
    assert jobs == {
        "convert": "3",
        "synthesize": "6",
        "train": str((networks + sets + subjects) * windows),
        "calibration_curve": str(subjects * windows),
        "calibration_summary": "1",
        "train_lda": str(windows),
        "evaluate": str((networks + 1 + sets) * windows),
        "stream": str((networks + 1 + sets) * windows),  # LDA too
        "zero_shot": str(sets * windows),
        "aggregate": "1",
        "aggregate_stream": "1",
        "stream_summary": "1",
        "aggregate_zero_shot": "1",
        "pose_decoding": str((1 + sets) * windows),
        "aggregate_pose_decoding": "1",
        "figures": "1",
        "all": "1",
    }


def test_a_calibration_family_of_two_new_users_per_fold_plans_a_network_and_a_curve_per_pair(tmp_path):
    """new_users: 2 over the three subjects: folds of db2/s1 and db2/s2, and of db3/s1; each curve reads its new
    users' tensors."""
    result = snakemake(
        write_config(tmp_path, lambda c: c["folds"]["calibration"].update(subjects="all", new_users=2)),
        "--dry-run",
        "--printshellcmds",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_counts(result)
    networks, sets, folds = 4, 1, 2
    assert jobs["train"] == str(networks + sets + folds) and jobs["calibration_curve"] == str(folds)
    planned = result.stdout + result.stderr
    assert "calibration/contrastive/calibration-db2-s1-s2/onset/calibration.tsv" in planned
    assert "--tensors results/tensors/db2/s1.pt results/tensors/db2/s2.pt --validation-tensors" in planned
    assert "calibration/contrastive/calibration-db3-s1/onset/calibration.tsv" in planned


def test_full_scale_config_plans_every_download_and_a_gpu_job_per_network_and_fold(tmp_path):
    full = yaml.safe_load((REPO / "config" / "ninapro.yaml").read_text())
    result = snakemake(tmp_path, "--dry-run", "--configfile", str(REPO / "config" / "ninapro.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_counts(result)
    subjects = sum(len(listed) for listed in full["data"]["databases"].values())
    lda = sum(model["kind"] == "lda" for model in full["models"].values())
    sets = full["folds"]["zero-shot"]["sets"]  # zero-shot folds train the pose model only
    folds = sum(
        len(f["subjects"]) if f["scheme"] == "leave_one_subject_out" else 1
        for f in full["folds"].values()
        if f["scheme"] not in ("zero_shot", "calibration")
    )
    new_users = len(full["folds"]["new-user"]["subjects"])  # calibration folds train contrastive_adabn only
    windows = len(full["preprocess"]["windows"])
    assert (subjects, folds, new_users) == (51, 12, 11)  # DB2's 40 and DB3's 11; standard, leave-one-amputee-out
    assert jobs["download"] == jobs["convert"] == str(subjects)
    assert jobs["train"] == str(((len(full["models"]) - lda) * folds + sets + new_users) * windows)
    assert jobs["train_lda"] == str(lda * folds * windows)
    assert jobs["evaluate"] == str((len(full["models"]) * folds + sets) * windows)
    assert jobs["calibration_curve"] == str(new_users * windows)


def test_pipeline_makes_tensors_models_and_every_table(tiny_run):
    workdir = tiny_run
    for name in ("db2/s1", "db3/s6"):
        tensors = read_tensor_file(workdir / f"results/tensors/{name}.pt")
        assert (
            tensors["segments"]["onset"]["emg"].shape == tensors["segments"]["steady"]["emg"].shape == (18, 6, 50, 12)
        )
        assert tensors["valid"].all()
    dead = read_tensor_file(workdir / "results/tensors/db3/s6.pt")["channel_mask"]
    assert dead.tolist() == [True] * 10 + [False] * 2
    assert (workdir / "logs/convert/db2/s1.log").exists() and (workdir / "benchmarks/convert/db2/s1.tsv").exists()
    for model in ("contrastive_adabn", "classifier", "lda"):
        for window in ("onset", "steady"):
            folder = workdir / "results/models" / model / "reps-2-5" / window
            assert sorted(p.name for p in folder.iterdir()) == ["history.tsv", "logits.pt", "model.pt", "search.tsv"]
            logits = read_logits(folder / "logits.pt")
            assert logits["logits"].shape == (2 * 18 * 2 * 50, 18) and logits["model"] == model
            assert logits["window"] == window
            assert (workdir / f"logs/train/{model}/reps-2-5/{window}.log").exists()
    zero_shot = pd.read_csv(workdir / "results/eval/zero_shot.tsv", sep="\t")
    assert set(zero_shot["set"]) == {"unseen", "seen", "all"} and set(zero_shot["model"]) == {"contrastive_pose"}
    assert (zero_shot["chance"] == 1 / zero_shot["classes"]).all() and zero_shot["oracle_accuracy"].notna().all()
    assert list(zero_shot.columns[5:11]) == [
        "set",
        "subject",
        "decided_by",
        "gesture_accuracy",
        "gesture_chance",
        "gesture_windows_as_rest",
    ]
    # Pooled rows ("all") and each test subject's own (reps-2-5, the fold the zero-shot set copies, tests both).
    assert set(zero_shot["subject"]) == {"all", "db2/s1", "db3/s6"}
    assert set(zero_shot["decided_by"]) == {"class_encoder", "pose_decoder"}  # the default pose model decodes pose
    stream = pd.read_csv(workdir / "results/eval/stream_metrics.tsv", sep="\t")
    # Every model, LDA from its stream features.
    assert set(stream["model"]) == {"contrastive_adabn", "classifier", "contrastive_pose", "lda"}
    assert set(stream["window"]) == {"onset", "steady"} and set(stream["vote_ms"].dropna()) == {0, 50, 100, 250}
    assert set(stream["rule"]) == {"vote", "hysteresis"} and stream["vote_ms"].isna().eq(stream["rule"] != "vote").all()
    assert stream["k"].max() == 17
    # Pooled rows ("all") at every k, and each test subject's own rows at k = K for subject means.
    own = stream[stream["subject"] != "all"]
    assert set(own["subject"]) == {"db2/s1", "db3/s6"} and (own["k"] == 17).all()
    # Only an AdaBN model names where its statistics came from, in every table that carries the label.
    timing = pd.read_csv(workdir / "results/eval/stream_timing.tsv", sep="\t")
    tradeoff = pd.read_csv(workdir / "results/eval/stream_tradeoff.tsv", sep="\t")
    for table in (stream, timing, tradeoff):
        assert (table["adaptation"] == "none").eq(~table["adabn"]).all()
    # The trade-off holds each model's calibrated operating point, with the stream evaluation's k = K figures (the
    # votes'; a rule's rows have no vote length to match on).
    calibrated = tradeoff[tradeoff["calibrated"] & tradeoff["vote_ms"].notna()]
    calibrated = calibrated.set_index(["model", "fold", "window", "vote_ms"])
    pooled = stream[(stream["subject"] == "all") & (stream["k"] == 17) & (stream["rule"] == "vote")].set_index(
        ["model", "fold", "window", "vote_ms"]
    )
    assert set(calibrated.index) == set(pooled.index)
    difference = calibrated["rest_false_activation"] - pooled.loc[calibrated.index, "rest_false_activation"]
    assert (difference.abs() < 1e-9).all()
    assert "What a user gets" in (workdir / "first-run.log").read_text()  # the end-of-run table


def test_every_table_has_a_row_per_run_group_subset_and_vote(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    evaluation = config["evaluation"]
    runs = evaluated_runs(tiny_run)
    # contrastive_adabn, classifier, contrastive_pose and LDA on reps-2-5, the pose model on its zero-shot set.
    assert len(runs) == 5 * 2 and {model for model, _, _ in runs} == set(config["models"])
    tables = {
        name: pd.read_csv(tiny_run / f"results/eval/{name}.tsv", sep="\t")
        for name in EVALUATION_TABLES + SUMMARY_TABLES + STREAM_TABLES + ZERO_SHOT_TABLES + ZERO_SHOT_STREAM_TABLES
    }
    gestures, groups, subjects = 17, 5, 2  # groups: all, intact, amputee and each of the two subjects
    vote_frames = evaluation["vote_window_ms"] // 10  # 10 ms frames
    stream_sizes = len({k for k in evaluation["stream_subset_sizes"] if k <= gestures} | {gestures})
    # Each size's drawn subsets pooled, but k = K once (its one subset), then each subject's own row at k = K.
    pooled = (stream_sizes - 1) * evaluation["stream_trials"] + 1
    # Every causal vote, and the saved decision rule's own rows (the default: hysteresis).
    decided_by = len(evaluation["stream_vote_ms"]) + (evaluation["decision"]["rule"] != "vote")
    stream_rows = (pooled + subjects) * decided_by
    per_run = {
        "subset_accuracy": groups * gestures * evaluation["subset_trials"],
        "subset_exact": groups * gestures,
        "voting": groups * vote_frames,
        "stream_metrics": stream_rows,  # every size pooled, then each subject's own rows at k = K
        "stream_timing": 1,
    }
    for name, rows in per_run.items():
        counts = tables[name].groupby(["model", "fold", "window"]).size().to_dict()
        assert counts == dict.fromkeys(runs, rows), name
    for name in ("metrics", "confusion"):
        groups_of = tables[name].groupby(["model", "fold", "window"])["group"].apply(set).to_dict()
        assert groups_of == {run: {"all", "intact", "amputee", "subject:db2/s1", "subject:db3/s6"} for run in runs}
    zero_shot_runs = {run for run in runs if run[1].startswith("zero-shot")}
    size = config["folds"]["zero-shot"]["size"]  # unseen gestures: k = 1..size, model and oracle
    # zero_shot: each set decided by the class encoder and by the pose decoder (the default pose model has one),
    # pooled and per test subject.
    zero_shot_rows = len(ZERO_SHOT_SETS) * 2 * (1 + subjects)
    for name, rows in (("zero_shot", zero_shot_rows), ("zero_shot_subsets", 2 * size * evaluation["subset_trials"])):
        assert tables[name].groupby(["model", "fold", "window"]).size().to_dict() == dict.fromkeys(zero_shot_runs, rows)
    # The confusion counts every voted window of each set once, by the model and by its oracle.
    # The zero-shot stream: each set pooled and per test subject, at every stream vote, beside the oracle's.
    streamed = tables["zero_shot_stream"]
    rows = len(ZERO_SHOT_SETS) * (1 + subjects) * decided_by
    assert streamed.groupby(["model", "fold", "window"]).size().to_dict() == dict.fromkeys(zero_shot_runs, rows)
    assert set(streamed["oracle_fold"]) == {"reps-2-5"} and streamed["oracle_movement_accuracy"].notna().all()
    counted = tables["zero_shot_confusion"].groupby(["model", "fold", "window", "set", "scored_by"])["windows"].sum()
    assert counted.groupby(level=[0, 1, 2, 3]).nunique().eq(1).all() and len(counted) == len(zero_shot_runs) * 3 * 2
    summary = tables["subset_summary"]
    assert (summary["subjects"] == subjects).all() and (summary["subsets"] == evaluation["subset_trials"]).all()
    assert set(tables["summary"]["family"]) == {"reps-2-5", "zero-shot"}
    calibration = pd.read_csv(tiny_run / "results/eval/calibration.tsv", sep="\t")
    methods = calibration.groupby("repetitions")["method"].apply(set).to_dict()
    tuned = {"adabn", "fine_tune", "fine_tune_network", "transfer"}  # a classifier has no prototypes to replace
    # c = 0: a model without AdaBN has one start, none (it set its rest bias with its training statistics)
    assert methods == {0: {"none"}, 1: tuned | {"scratch", "lda"}}
    per_curve = calibration.groupby(["window", "repetitions", "method"])["metric"].apply(sorted)
    assert len(per_curve) == 2 * (1 + 6) and all(metrics == sorted(METRICS) for metrics in per_curve)
    accuracies = calibration[calibration["metric"].str.endswith("accuracy")]  # defined for every subject
    assert (accuracies["subjects"] == subjects).all()


def test_the_tables_metrics_are_the_test_logits_recomputed(tiny_run):
    assert len(check_metrics_recompute_the_logits(tiny_run)) == 5 * 2


# What each figure of the tiny run draws: its axes (colour bars included) and texts it must hold.
NETWORKS = [">contrastive_adabn<", ">classifier<", ">contrastive_pose<"]
FIGURE_CONTENTS = {
    "subset_size": (2, [*NETWORKS, ">lda<", "Among k chosen gestures + rest", "8 subsets drawn per k"]),
    "voting": (1, [*NETWORKS, ">lda<", "Accuracy against majority-voting window", "figure (250 ms)"]),
    "confusion": (3, ["Confusion of ", "B17   Wrist extension with closed hand", "Predicted class"]),
    "per_subject": (2, [*NETWORKS, ">lda<", "DB2, 1 subject", "DB3, 1 subject"]),
    "training_curves": (2, [*NETWORKS, "Training of the final models: 3 model(s) × 1 fold(s)"]),
    "search": (1, [*NETWORKS, "up to 2 trials per model × fold (3 runs)"]),
    "windows": (3, [*NETWORKS, ">lda<", ">onset<", ">steady<", "Gesture-only accuracy", "Rest false activation"]),
    "per_class_recall": (1, [*NETWORKS, "lda (bars)", "B17  Wrist extension with closed hand"]),
    "stream": (3, [*NETWORKS, ">lda<", "Onset delay: median (solid), 90th percentile (dashed)"]),
    "stream_tradeoff": (2, [*NETWORKS, ">lda<", "Movement accuracy", "Onset delay", "(250 ms vote)"]),
    "zero_shot": (3, [">contrastive_pose<", "1 held-out set(s)", "Among k unseen gestures + rest", "Gesture accuracy"]),
}


def test_every_figure_draws_its_panels_with_every_model_and_the_tables_numbers(tiny_run):
    figures = tiny_run / "results/figures"
    assert set(FIGURE_CONTENTS) == set(FIGURES)
    svgs = {stem: check_figure(figures / stem, panels, texts) for stem, (panels, texts) in FIGURE_CONTENTS.items()}
    # The confusion figure shows the model chosen on validation, on the first window, with its vote accuracy.
    chosen, percent, decisions = re.search(
        r"Confusion of (\w+), after majority vote.*?accuracy ([\d.]+) % over (\d+) decisions", svgs["confusion"], re.S
    ).groups()
    metrics = pd.read_csv(tiny_run / "results/eval/metrics.tsv", sep="\t")
    vote = metrics.query(
        f"model == '{chosen}' and fold == 'reps-2-5' and window == 'onset' and group == 'all' and level == 'vote'"
    ).set_index("metric")["value"]
    assert float(percent) == pytest.approx(100 * vote["accuracy"], abs=0.05)
    assert int(decisions) == 2 * 18 * 2 * 2  # subjects × classes × test repetitions × 250 ms votes in 500 ms


def test_a_second_run_does_nothing(tiny_run):
    second = snakemake(tiny_run)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_report_embeds_every_figure_and_summary_table_with_its_caption_and_stays_small(tiny_run):
    """Every figure and every run-level table but the full per-subset and per-cell ones (files beside the report),
    each with a caption of its own; the report never embeds a table it only summarises."""
    report = snakemake(tiny_run, "--report", "results/report-test.html")
    assert report.returncode == 0, report.stderr[-3000:]
    path = tiny_run / "results/report-test.html"
    html = path.read_text(errors="replace")
    for figure in FIGURES:
        assert f"{figure}.svg" in html, figure
    tables = EVALUATION_TABLES + SUMMARY_TABLES + STREAM_TABLES + ZERO_SHOT_TABLES + ZERO_SHOT_STREAM_TABLES
    embedded = [table for table in tables if table not in FULL_TABLES]
    added = report.stdout + report.stderr  # snakemake logs "Adding <file> (<size>)." for each embedded file
    for table in embedded:
        assert f"Adding {table}.tsv (" in added, table
        caption = (REPO / "workflow/report/tables" / f"{table}.rst").read_text()
        assert caption.startswith(f"**{table}.tsv**"), table  # a caption of its own, naming its table
    assert FULL_TABLES and not any(f"Adding {table}.tsv (" in added for table in FULL_TABLES)
    assert path.stat().st_size < 15e6
    path.unlink()


def dependencies_only_environment(folder: Path) -> Path:
    """What `snakemake --sdm conda` gives a job: a Python with the dependencies of envs/pipeline.yaml but without
    this package. A bare venv that sees this environment's site-packages through a .pth file: paths listed in a
    .pth are added to sys.path, but their own .pth files (the editable install's hook) are not run."""
    venv.create(folder, with_pip=False)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "lib" / version / "site-packages" / "dependencies.pth").write_text("\n".join(site.getsitepackages()))
    return folder / "bin"


def test_jobs_run_this_checkouts_code_in_an_environment_without_the_package(tmp_path):
    job_bin = dependencies_only_environment(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import torch, scipy, sklearn, h5py; import contrastive_prosthetics"
    outside = subprocess.run([job_bin / "python", "-c", probe], env=env, capture_output=True, text=True)
    assert "No module named 'contrastive_prosthetics'" in outside.stderr  # the dependencies import, the package not
    workdir = write_config(tmp_path / "work", tiny)
    result = snakemake(workdir, "results/tensors/db2/s1.pt", job_bin_dir=job_bin)
    assert result.returncode == 0, result.stderr[-3000:]
    tensors = read_tensor_file(workdir / "results/tensors/db2/s1.pt")
    assert tensors["segments"]["onset"]["emg"].shape == (18, 6, 50, 12)


def test_misspelt_config_key_stops_before_any_job(tmp_path):
    workdir = write_config(tmp_path, lambda c: c["preprocess"].update(rms_windw_ms=100))
    result = snakemake(workdir, "--dry-run")
    assert result.returncode != 0
    assert "rms_windw_ms" in result.stderr + result.stdout
    assert not (workdir / "results").exists()


def test_local_source_reads_real_files_in_place(tmp_path, db1_dir):
    def local(config):
        config["data"].update(source="local", databases={"db1": [2]}, exercises=["A"])
        config["folds"].pop("calibration")  # one subject: no one else to train the new user's model
        config["data"]["local"]["db1"] = str(db1_dir)
        # The onset window alone: one of subject 2's real movements is shorter than onset + steady (2 s).
        config["preprocess"]["windows"] = {"onset": config["preprocess"]["windows"]["onset"]}

    workdir = write_config(tmp_path, local)
    result = snakemake(workdir, "results/tensors/db1/s2.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    tensors = read_tensor_file(workdir / "results/tensors/db1/s2.pt")
    assert tensors["valid"].all() and tensors["segments"]["onset"]["emg"].shape == (13, 10, 100, 10)
    assert not (workdir / "resources").exists()  # nothing copied


@pytest.fixture
def mirror(tmp_path):
    """A NinaPro mirror on 127.0.0.1 serving a DB1-format archive ``s1.zip`` of a hand-made recording."""
    folder = tmp_path / "mirror"
    protocol = make_protocol([1, 2, 3], 10, movement_samples=150, rest_samples=130)
    mat = write_mat(folder / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True))
    with zipfile.ZipFile(folder / "s1.zip", "w") as archive:
        archive.write(mat, "s1/S1_A1_E1.mat")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/s{{subject}}.zip"
    server.shutdown()
    server.server_close()


def test_ninapro_source_downloads_verifies_and_converts(tmp_path, mirror):
    def from_mirror(config):
        config["data"].update(source="ninapro", databases={"db1": [1]}, exercises=["A"])
        config["folds"].pop("calibration")  # one subject: no one else to train the new user's model
        config["data"]["urls"]["db1"] = mirror
        config["preprocess"]["windows"] = {"onset": config["preprocess"]["windows"]["onset"]}  # 1.5 s movements

    workdir = write_config(tmp_path / "run", from_mirror)
    result = snakemake(workdir, "results/tensors/db1/s1.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((workdir / "resources/ninapro/db1/s1/manifest.json").read_text())
    assert [m["name"] for m in manifest["members"]] == ["S1_A1_E1.mat"]
    tensors = read_tensor_file(workdir / "results/tensors/db1/s1.pt")
    assert tensors["valid"][:4].all() and not tensors["valid"][4:].any()
    assert tensors["metadata"]["sources"][0]["sha256"] == manifest["members"][0]["sha256"]

    # A raw file that changes after download is caught when the subject is converted again.
    extracted = workdir / "resources/ninapro/db1/s1/S1_A1_E1.mat"
    extracted.write_bytes(extracted.read_bytes()[:-1] + b"\0")
    again = snakemake(workdir, "--forcerun", "convert", "--", "results/tensors/db1/s1.pt")
    assert again.returncode != 0
    log = (workdir / "logs/convert/db1/s1.log").read_text()
    assert "differs from" in log and "S1_A1_E1.mat" in log


def test_the_download_rule_keeps_the_archive_beside_the_subject_folder_of_its_output(tmp_path):
    """``--archive-dir`` comes from the rule's output (the database's ``archives/`` beside the subject folder), not
    from a path the rule types a second time."""
    workdir = write_config(tmp_path, lambda config: config["data"].update(source="ninapro"))
    result = snakemake(workdir, "--dry-run", "--printshellcmds", "resources/ninapro/db3/s1/manifest.json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--archive-dir resources/ninapro/db3/archives --dest-dir resources/ninapro/db3/s1 " in result.stdout
    rule = (REPO / "workflow" / "rules" / "data.smk").read_text().split("rule download:")[1].split("\nrule ")[0]
    assert "resources/" not in rule.split("shell:")[1] and "archive_dir=archive_folder" in rule


def test_a_db1_only_override_plans_only_db1(tmp_path):
    """--configfile merges key by key; null drops the default's synthetic databases and fold."""
    workdir = write_config(tmp_path, lambda config: None)  # config.yaml as in the repository, the merge's base
    result = snakemake(workdir, "--dry-run", "--configfile", str(REPO / "config" / "db1.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_counts(result)
    db1 = yaml.safe_load((REPO / "config" / "db1.yaml").read_text())
    subjects = len(db1["data"]["databases"]["db1"])
    folds = 1 + subjects  # the standard split, and one leave-one-subject-out fold per subject
    windows, models = len(db1["preprocess"]["windows"]), len(DEFAULT["models"] | db1["models"])
    sets = db1["folds"]["zero-shot"]["sets"]  # zero-shot folds train the pose model only
    assert jobs["download"] == jobs["convert"] == str(subjects)
    # The new-user family trains each of its models once per two subjects (config.yaml's calibration fold is dropped).
    new_user = db1["folds"]["new-user"]
    pairs = -(-subjects // new_user["new_users"])
    assert (subjects, new_user["new_users"], pairs) == (27, 2, 14)
    calibrated = len(new_user["models"]) * pairs
    assert int(jobs["train"]) + int(jobs["train_lda"]) == (models * folds + sets + calibrated) * windows
    assert jobs["calibration_curve"] == str(calibrated * windows)
    assert "synthesize" not in jobs
    planned = result.stdout + result.stderr
    assert "loso-db1-s27" in planned and "reps-2-5-7" in planned and "db2" not in planned
    assert "new-user-db1-s1-s2" in planned and "new-user-db1-s27/" in planned


def test_reference_protocol_plans_its_subjects_model_and_window(tmp_path):
    workdir = write_config(tmp_path, lambda config: None)  # config.yaml as in the repository, the merge's base
    result = snakemake(workdir, "--dry-run", "--configfile", str(REPO / "config" / "reference.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_counts(result)
    assert jobs["download"] == jobs["convert"] == "6"  # the six amputees its code trains and tests on
    assert jobs["train"] == "1" and jobs["train_lda"] == "1" and jobs["evaluate"] == "2"
    planned = result.stdout + result.stderr
    assert "results/models/reference/reps-2-5/reference/logits.pt" in planned
    assert '"rms_alignment": "centred"' in planned and '"logit_scale": 1.0' in planned
    assert "stream" not in jobs  # a centred RMS reads ahead: not scored as a causal controller


def test_every_reference_option_runs_on_synthetic_data(tmp_path):
    """Centred RMS, a 130 ms window, seven layers with dropout on the last four, a fixed logit scale and batch
    statistics at test time, end to end at a tiny budget."""

    def reference_options(config):
        tiny(config)
        config["preprocess"].update(rms_window_ms=5.5, rms_alignment="centred")
        config["preprocess"]["windows"] = {"reference": {"offset_ms": 0, "length_ms": 130}}
        config["evaluation"]["vote_window_ms"] = 130
        config["architecture"].update(depth=7, dropout_layers=4, logit_scale=1.0)
        config["models"] = {"reference": {"kind": "contrastive", "adabn": True, "adaptation": "batch_statistics"}}
        del config["folds"]["zero-shot"], config["folds"]["calibration"]

    workdir = write_config(tmp_path, reference_options)
    target = "results/models/reference/reps-2-5/reference"
    folder = workdir / target
    # Training and its test logits are where the options act; evaluation is the same code as every other run's.
    result = snakemake(workdir, f"{target}/logits.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = read_model_file(folder / "model.pt")
    assert saved["adaptation"] == "batch_statistics" and saved["model_config"]["logit_scale"] == 1.0
    assert saved["model_config"]["depth"] == 7 and saved["model_config"]["dropout_layers"] == 4
    logits = read_logits(folder / "logits.pt")
    assert logits["logits"].shape[0] == 2 * 18 * 2 * 13  # 13 frames of 10 ms in the 130 ms window
    tensors = read_tensor_file(workdir / "results/tensors/db2/s1.pt")
    assert tensors["metadata"]["preprocess"]["rms_alignment"] == "centred"


def test_a_local_folder_with_a_space_a_quote_and_a_dollar_is_read_in_place(tmp_path):
    """Every value reaching the shell is quoted: such a path is read as it is, and nothing in it runs."""
    import hashlib

    folder = tmp_path / "NinaPro DB1 'odd' $(touch PWNED); echo"
    protocol = make_protocol([1, 2, 3], 10, movement_samples=150, rest_samples=130)
    raw = write_mat(folder / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True))
    before = hashlib.sha256(raw.read_bytes()).hexdigest()

    def local(config):
        config["data"].update(source="local", databases={"db1": [1]}, exercises=["A"])
        config["folds"].pop("calibration")  # one subject: no one else to train the new user's model
        config["data"]["local"]["db1"] = str(folder)
        config["preprocess"]["windows"] = {"onset": config["preprocess"]["windows"]["onset"]}

    workdir = write_config(tmp_path / "run", local)
    result = snakemake(workdir, "results/tensors/db1/s1.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    tensors = read_tensor_file(workdir / "results/tensors/db1/s1.pt")
    assert tensors["metadata"]["sources"][0]["file"] == str(raw)
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == before
    assert not list(tmp_path.rglob("PWNED")) and not (workdir / "PWNED").exists()
