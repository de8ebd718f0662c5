"""Report figures: every figure written as SVG and PNG from a run's evaluation TSVs and model folders."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT_CONFIG, check_figure
from matplotlib.image import imread

from contrastive_prosthetics.data.ninapro import class_names, describe
from contrastive_prosthetics.evaluation.artefacts import FIGURES as FIGURE_STEMS
from contrastive_prosthetics.evaluation.tables import read_table
from contrastive_prosthetics.report.comparison_figures import validation_choice, zero_shot_figure
from contrastive_prosthetics.report.figures import confusion_figure, make_figures, subset_size_figure
from contrastive_prosthetics.report.plotting import class_sort_key, model_colours, with_labels
from contrastive_prosthetics.report.training_figures import kept_epoch, search_figure, training_curves_figure

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"
MODELS = {"contrastive": False, "classifier_adabn": True}
SUBJECTS = ["db2/s1", "db2/s2", "db3/s1"]
FOLDS = ["reps-2-5", "loso-db3-s1"]
CLASSES = class_names(["B"])[:7]  # rest, B1..B6
WINDOWS_MS = [10, 50, 100, 250, 500]


def write_tsv(rows: list[dict] | pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def skill(model: str) -> float:
    """How much better than chance a made-up model is; classifier_adabn is the better one."""
    return 0.8 if model == "classifier_adabn" else 0.6


def write_run(
    root: Path,
    models: dict[str, bool] = MODELS,
    folds: list[str] = FOLDS,
    subjects: list[str] = SUBJECTS,
    classes: list[str] = CLASSES,
    trials: int = 5,
    windows_ms: list[int] = WINDOWS_MS,
    epochs: int = 4,
    search_trials: int = 6,
) -> tuple[Path, Path]:
    """A small but complete run in the pipeline's layout: ``root/eval`` TSVs and ``root/models/{model}/{fold}``."""
    rng = np.random.default_rng(0)
    eval_dir, models_dir = root / "eval", root / "models"
    k_max = len(classes) - 1
    groups = ["all", "intact", "amputee", *(f"subject:{s}" for s in subjects)]
    subset, exact, voting, metrics, confusion, subset_summary, summary = [], [], [], [], [], [], []
    stream_metrics, stream_timing, stream_tradeoff, zero_shot, zero_shot_subsets = [], [], [], [], []
    for model, adabn in models.items():
        for fold in folds:
            key = {"model": model, "adabn": adabn, "adaptation": "cross_fitted" if adabn else "none"}
            key |= {"fold": fold, "window": "onset"}
            for k in range(1, k_max + 1):
                chance = 1 / (k + 1)
                expected = chance + (1 - chance) * skill(model) ** (k / k_max)
                exact.append({**key, "group": "all", "k": k, "accuracy": expected, "balanced_accuracy": expected})
                for metric, value in (
                    ("accuracy", expected),
                    ("balanced_accuracy", expected),
                    ("gesture_accuracy", expected - 0.05),
                    ("rest_false_activation", 0.3 * (1 - skill(model))),
                ):
                    subset_summary.append(
                        {k_: v for k_, v in key.items() if k_ != "fold"}
                        | {"family": fold, "k": k, "metric": metric, "subject_mean": value}
                        | {"subject_ci_low": value - 0.04, "subject_ci_high": value + 0.04, "subjects": 3}
                        | {"subset_mean": value + 0.01, "subset_ci_low": value - 0.01, "subset_ci_high": value + 0.03}
                        | {"subsets": trials}
                    )
                for trial in range(1, trials + 1):
                    accuracy = float(np.clip(expected + 0.05 + rng.normal(0, 0.04), 0, 1))
                    subset.append(
                        {**key, "group": "all", "k": k, "trial": trial, "accuracy": accuracy}
                        | {"balanced_accuracy": accuracy, "n": 900}
                    )
            for window in windows_ms:
                accuracy = skill(model) + 0.1 * np.log10(window) / 3
                voting.append(
                    {**key, "group": "all", "window_frames": window // 10, "window_ms": window}
                    | {"accuracy": accuracy, "balanced_accuracy": accuracy, "n": 900}
                )
            for window, shift in (("onset", 0.0), ("steady", 0.08)):
                for level in ("frame", "vote"):
                    for metric in ("accuracy", "balanced_accuracy", "gesture_accuracy", "rest_false_activation"):
                        value = skill(model) + shift if metric != "rest_false_activation" else 0.2 - shift
                        summary.append(
                            {k_: v for k_, v in key.items() if k_ not in ("fold", "window")}
                            | {"family": fold, "window": window, "level": level, "metric": metric, "value": value}
                            | {"subject_mean": value, "subject_ci_low": value - 0.05, "subject_ci_high": value + 0.05}
                            | {"subjects": 3, "folds": 1}
                        )
            stream_timing.append(key | {"compute_ms": 0.4, "rms_window_ms": 200, "frame_ms": 10})
            for held_out in ("B1 B4", "B2 B6"):
                for name, count in (("unseen", 2), ("seen", k_max - 2), ("all", k_max)):
                    accuracy = skill(model) - (0.3 if name == "unseen" else 0.0)
                    row = (  # as on DB1: the gesture windows near chance, rest carrying the balanced score
                        key
                        | {"fold": f"zs-{held_out.replace(' ', '-')}", "set": name, "gesture_accuracy": accuracy - 0.2}
                        | {"gesture_chance": 1 / (count + 1), "gesture_windows_as_rest": 0.4}
                        | {"balanced_accuracy": accuracy, "accuracy": accuracy, "chance": 1 / (count + 1)}
                        | {"oracle_gesture_accuracy": accuracy + 0.15, "oracle_gesture_windows_as_rest": 0.1}
                        | {"oracle_balanced_accuracy": accuracy + 0.2, "oracle_accuracy": accuracy + 0.2}
                        | {"gestures": held_out, "classes": count + 1, "gesture_windows": 40}
                    )
                    zero_shot.append(row | {"subject": "all"})
                    for s, subject in enumerate(subjects):  # each test subject's own rows, off the pooled one's
                        zero_shot.append(row | {"subject": subject, "gesture_accuracy": accuracy - 0.1 * s})
                for who in ("model", "oracle"):
                    for k in (1, 2):
                        zero_shot_subsets.append(
                            {"k": k, "trial": 0, "accuracy": skill(model) - 0.1 * k, "balanced_accuracy": 0.5}
                            | {"gesture_accuracy": skill(model) - 0.15 * k, "rest_false_activation": 0.1, "n": 100}
                            | key
                            | {"fold": f"zs-{held_out.replace(' ', '-')}", "scored_by": who}
                        )
            for vote in (0, 5, 10, 25):
                accuracy = skill(model) - 0.1 + 0.004 * vote
                stream_metrics.append(
                    key
                    | {"k": k_max, "trial": 0, "vote_frames": vote, "vote_ms": 10 * vote, "accuracy": accuracy}
                    | {"movement_accuracy": accuracy - 0.05, "rest_accuracy": accuracy + 0.05}
                    | {"rest_false_activation": 0.3 - 0.005 * vote, "onset_delay_p50_ms": 150 + 5 * vote}
                    | {"onset_delay_p90_ms": 300 + 8 * vote, "onsets_missed": 0.05, "changes_per_s": 2 - 0.05 * vote}
                    | {"frames": 5000}
                )
            for offset in (-1.0, 0.0, 1.0, 2.0):  # more bias on rest: quieter rest, fewer movement frames right
                stream_tradeoff.append(
                    key
                    | {"rest_bias": 1.5 + offset, "bias_offset": offset, "calibrated": offset == 0.0, "vote_ms": 250}
                    | {"accuracy": 0.7, "movement_accuracy": skill(model) - 0.1 * offset}
                    | {"rest_false_activation": 0.3 - 0.1 * offset, "false_activations_per_min": 20 - 5 * offset}
                    | {"onset_delay_p50_ms": 200 + 20 * offset, "onset_delay_p90_ms": 500 + 50 * offset}
                    | {"rule": "vote"}
                )
                stream_tradeoff.append(  # the model's hysteresis rule beside its vote: faster at the same rest
                    stream_tradeoff[-1]
                    | {"rule": "hysteresis", "vote_ms": np.nan, "onset_delay_p50_ms": 120 + 20 * offset}
                )
            for group in groups:
                for level, bonus in (("frame", 0.0), ("vote", 0.05)):
                    accuracy = float(np.clip(skill(model) + bonus + rng.normal(0, 0.05), 0, 1))
                    metrics.append({**key, "group": group, "level": level, "metric": "accuracy", "class": ""})
                    metrics[-1]["value"] = accuracy
                    metrics.append({**key, "group": group, "level": level, "metric": "macro_f1", "class": ""})
                    metrics[-1]["value"] = accuracy - 0.02
                    for index, name in enumerate(classes):  # recall falls along the class axis, rest best
                        recall = float(np.clip(skill(model) + 0.2 - 0.05 * index, 0, 1))
                        metrics.append({**key, "group": group, "level": level, "metric": "recall", "class": name})
                        metrics[-1]["value"] = recall
                    for true in classes:
                        for predicted in classes:
                            count = int(rng.poisson(40 * skill(model) if true == predicted else 2))
                            if count:  # zero counts may be missing, as in the pipeline's file
                                confusion.append(
                                    {**key, "group": group, "level": level, "true": true, "predicted": predicted}
                                    | {"count": count}
                                )
            write_model_folder(models_dir / model / fold / "onset", rng, epochs, search_trials, skill(model))
    for name, rows in (
        ("subset_accuracy", subset),
        ("subset_exact", exact),
        ("voting", voting),
        ("metrics", metrics),
        ("confusion", confusion),
        ("subset_summary", subset_summary),
        ("summary", summary),
        ("stream_metrics", stream_metrics),
        ("stream_timing", stream_timing),
        ("stream_tradeoff", stream_tradeoff),
        ("zero_shot", zero_shot),
        ("zero_shot_subsets", zero_shot_subsets),
    ):
        write_tsv(rows, eval_dir / f"{name}.tsv")
    return eval_dir, models_dir


def write_model_folder(folder: Path, rng: np.random.Generator, epochs: int, search_trials: int, skill: float) -> None:
    epoch = np.arange(1, epochs + 1)
    history = pd.DataFrame(
        {
            "epoch": epoch,
            "train_loss": 2.0 / epoch,
            "train_group_accuracy": 1 - 0.5 / epoch,
            "val_loss": 2.2 / epoch + 0.05 * epoch,
            "val_accuracy": skill - 0.5 / epoch,
            "val_stream_movement_accuracy": "nan",  # as training writes it when selecting on segments
            "lr": 1e-3 * np.cos(np.pi * epoch / (2 * epochs)),
            "seconds": 1.5,
            "frames_per_s": 1e5,
        }
    )
    search = pd.DataFrame(
        {
            "trial": np.arange(1, search_trials + 1),
            "learning_rate": 10 ** rng.uniform(-6, -1, search_trials),
            "weight_decay": 10 ** rng.uniform(-6, -1, search_trials),
            "dropout": rng.uniform(0, 0.5, search_trials),
            "val_loss": rng.uniform(0.5, 3, search_trials),
            "val_accuracy": rng.uniform(0.1, 0.9, search_trials),
        }
    )
    # As training writes it: the trial with the highest validation accuracy, ties to the lower loss.
    best = search.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], kind="stable").index[0]
    search["chosen"] = search.index == best
    write_tsv(history, folder / "history.tsv")
    write_tsv(search, folder / "search.tsv")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_run(root)
    return root


@pytest.fixture(scope="module")
def figures(run) -> tuple[Path, list[Path]]:
    out_dir = run / "figures"
    histories, searches = (
        sorted((run / "models").glob("*/*/*/history.tsv")),
        sorted((run / "models").glob("*/*/*/search.tsv")),
    )
    return out_dir, make_figures(
        run / "eval", histories, searches, out_dir, vote_ms=250, window="onset", family=FOLDS[0]
    )


def svg_text(out_dir: Path, stem: str) -> str:
    return (out_dir / f"{stem}.svg").read_text()


def test_every_figure_written_as_svg_and_png(figures):
    out_dir, written = figures
    expected = {out_dir / f"{stem}.{fmt}" for stem in FIGURE_STEMS for fmt in ("svg", "png")}
    assert set(written) == expected
    for path in expected:
        assert path.stat().st_size > 1000, path
    for stem in FIGURE_STEMS:
        image = imread(out_dir / f"{stem}.png")
        assert image.shape[0] >= 300 and image.shape[1] >= 600, (stem, image.shape)
        assert image.std() > 0.01, f"{stem}.png is blank"
        assert svg_text(out_dir, stem).lstrip().startswith("<?xml"), stem
    assert not list(out_dir.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.parametrize(
    ("stem", "texts"),
    [
        (
            "subset_size",
            [
                "Gestures chosen, k",
                "Accuracy (%)",
                "bootstrap interval",
                "subsets drawn",
                "chance",
                "contrastive",
                "Gesture-only accuracy",
                "rest false activation",
            ],
        ),
        ("windows", ["onset", "steady", "Gesture-only accuracy", "Rest false activation", "classifier_adabn"]),
        ("per_class_recall", ["Recall per gesture", "Thumb up", "classifier_adabn (bars)", "contrastive"]),
        ("stream", ["Controller delay (ms)", "Onset delay", "Rest false activation", "usual limit", "contrastive"]),
        ("stream_tradeoff", ["Movement accuracy", "calibrated", "decision rule", "contrastive"]),
        (
            "zero_shot",
            [
                "unseen gestures",
                "generalised",
                "oracle",
                "2 held-out set(s)",
                "Unseen gestures chosen, k",
                "Gesture accuracy (%), mean over the held-out sets",
                "rest decided is a miss; read first",
                "Balanced accuracy (%)",
                "chance: 1 / (the set",
                "decided as rest",
                "their windows decided right",
            ],
        ),
        ("voting", ["Voting window (ms", "Accuracy over all classes (%)", "classifier_adabn", "250 ms"]),
        ("confusion", ["Predicted class", "True class", "B6", "Thumb up", "rest"]),
        ("per_subject", ["db2/s2", "db3/s1", "Intact", "DB2, 2 subjects", "Amputees", "DB3, 1 subject", "contrastive"]),
        ("training_curves", ["Epoch", "validation loss", "Validation accuracy", "classifier_adabn"]),
        ("search", ["Learning rate (log scale)", "Validation accuracy", "chosen", "contrastive"]),
    ],
)
def test_figures_carry_their_labels(figures, stem, texts):
    svg = svg_text(figures[0], stem)
    for text in texts:
        assert text in svg, f"{text!r} missing from {stem}.svg"


def test_confusion_and_recall_show_the_model_chosen_on_validation(figures, run, tmp_path):
    # classifier_adabn has the better validation accuracy in its training records (skill), not only on test data.
    assert "Confusion of classifier_adabn" in svg_text(figures[0], "confusion")
    assert "Recall per gesture after majority vote: classifier_adabn" in svg_text(figures[0], "per_class_recall")
    confusion = pd.read_csv(run / "eval" / "confusion.tsv", sep="\t")
    confusion_figure(confusion, tmp_path / "chosen", model="contrastive")
    assert "Confusion of contrastive" in svg_text(tmp_path, "chosen")


def test_a_model_keeps_its_colour_in_every_figure(figures):
    colour = model_colours(MODELS)["contrastive"]
    for stem in ("subset_size", "voting", "per_subject", "training_curves", "search"):
        assert colour in svg_text(figures[0], stem), stem


def test_a_name_with_both_adabn_settings_is_labelled(tmp_path):
    table = pd.DataFrame({"model": ["lda", "lda", "mlp"], "adabn": ["True", "False", "False"]})
    assert list(with_labels(table)["label"]) == ["lda (AdaBN)", "lda", "mlp"]
    eval_dir, _ = write_run(tmp_path, models={"lda": False})
    summary = pd.read_csv(eval_dir / "subset_summary.tsv", sep="\t")
    both = pd.concat([summary, summary.assign(adabn=True, subject_mean=summary["subject_mean"] / 2)])
    no_exact = pd.read_csv(eval_dir / "subset_exact.tsv", sep="\t").iloc[:0]
    subset_size_figure(both, no_exact, tmp_path / "both")
    assert "lda (AdaBN)" in svg_text(tmp_path, "both")


def test_missing_data_gives_a_figure_that_says_so(run, tmp_path):
    # A run without networks (LDA only) has no histories or searches, but the report still lists both figures.
    assert len(training_curves_figure({}, tmp_path / "curves")) == 2
    assert "No training histories" in svg_text(tmp_path, "curves")
    search_figure({}, tmp_path / "search")
    assert "No hyper-parameter searches" in svg_text(tmp_path, "search")
    confusion = pd.read_csv(run / "eval" / "confusion.tsv", sep="\t")
    confusion_figure(confusion, tmp_path / "absent", model="no-such-model")
    assert "No confusion counts" in svg_text(tmp_path, "absent")


def test_equal_data_give_identical_files(figures, run, tmp_path):
    """Reruns leave the files byte-identical (no dates, fixed SVG ids); two figures stand for all, as they share
    the saving code."""
    subset = pd.read_csv(run / "eval" / "subset_summary.tsv", sep="\t")
    subset = subset[subset["family"] == FOLDS[0]]  # what make_figures shows: the first fold
    exact = pd.read_csv(run / "eval" / "subset_exact.tsv", sep="\t")
    exact = exact[exact["fold"] == FOLDS[0]]
    confusion = pd.read_csv(run / "eval" / "confusion.tsv", sep="\t")
    confusion = confusion[confusion["fold"] == FOLDS[0]]
    subset_size_figure(subset, exact, tmp_path / "subset_size", colours=model_colours(MODELS), vote_ms=250)
    confusion_figure(confusion, tmp_path / "confusion", model="classifier_adabn")
    for stem in ("subset_size", "confusion"):
        assert svg_text(tmp_path, stem) == svg_text(figures[0], stem), stem
        assert (tmp_path / f"{stem}.png").read_bytes() == (figures[0] / f"{stem}.png").read_bytes(), stem


def test_class_order():
    assert sorted(["C2", "B10", "rest", "B2", "C10"], key=class_sort_key) == ["rest", "B2", "B10", "C2", "C10"]


def test_the_kept_epoch_is_the_lowest_finite_validation_loss_for_every_figure(tmp_path):
    """One rule, as training keeps weights: not-finite losses skipped, the first of ties; None when none is finite."""
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4, 5],
            "train_loss": [1.0] * 5,
            "val_loss": [np.nan, 0.5, np.inf, 0.5, 0.7],
            "val_accuracy": [0.9, 0.6, 0.95, 0.8, 0.4],
        }
    )
    assert kept_epoch(history)["epoch"] == 2
    diverged = history.assign(val_loss=np.nan)
    assert kept_epoch(diverged) is None and kept_epoch(history.iloc[:0]) is None
    # The model chosen for the confusion figure is scored at that epoch: a (0.6) against b (0.7).
    other = history.assign(val_loss=[0.4, 0.9, 0.9, 0.9, 0.9], val_accuracy=0.7)
    assert validation_choice({"a/f": history, "b/f": other, "c/f": diverged}) == "b"
    assert validation_choice({"a/f": history.assign(val_accuracy=0.8), "b/f": other}) == "a"
    # A history with no finite validation loss still draws, without a kept epoch.
    assert len(training_curves_figure({"a/f": history, "c/f": diverged}, tmp_path / "curves")) == 2


def test_captions_exist_and_confusion_key_matches_ninapro():
    for stem in FIGURE_STEMS:
        assert len((REPORT / f"{stem}.rst").read_text().strip()) > 200, stem
    key = dict(re.findall(r"^(rest|[A-D]\d+) +(\S.*?)\s*$", (REPORT / "confusion.rst").read_text(), re.MULTILINE))
    assert len(key) == 1 + 12 + 17 + 23 + 9
    for name, description in key.items():
        assert description == describe(name), name


@pytest.mark.parametrize("stem", FIGURE_STEMS)
def test_captions_render_as_snakemake_report_captions(stem):
    """Snakemake renders captions with Jinja (config values) and then as reStructuredText; both must succeed."""
    jinja2 = pytest.importorskip("jinja2")
    docutils_core = pytest.importorskip("docutils.core")
    template = jinja2.Template((REPORT / f"{stem}.rst").read_text())
    changed = copy.deepcopy(DEFAULT_CONFIG)
    changed["evaluation"].update(vote_window_ms=300, subset_trials=50)
    for config in (changed, DEFAULT_CONFIG):
        text = template.render(snakemake=SimpleNamespace(config=config))
        # halt_level 2: a reStructuredText warning (a broken table, say) fails the test
        html = docutils_core.publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]
        assert "{{" not in text and len(html) > 200
        if config is changed and stem in ("subset_size", "voting"):
            assert "300 ms" in text


def test_only_the_named_training_records_are_drawn(run, tmp_path):
    """The figures rule names the history and search files of the configured models: a model folder left over
    from an earlier configuration is not drawn."""
    histories = sorted((run / "models" / "contrastive").glob("*/*/history.tsv"))
    searches = sorted((run / "models" / "contrastive").glob("*/*/search.tsv"))
    make_figures(run / "eval", histories, searches, tmp_path, vote_ms=250)
    leftover = model_colours(MODELS)["classifier_adabn"]
    for stem in ("training_curves", "search"):
        svg = svg_text(tmp_path, stem)
        assert model_colours(MODELS)["contrastive"] in svg and leftover not in svg, stem


def test_the_zero_shot_figure_leads_with_the_gesture_accuracy_then_the_balanced_accuracy(figures):
    """Three panels: gesture accuracy per set (first), balanced accuracy per set, and the subset-size curve."""
    svg = check_figure(figures[0] / "zero_shot", 3)
    assert svg.index("Gesture accuracy (%), mean over") < svg.index("Balanced accuracy (%)") < svg.index("Among k")


def test_the_zero_shot_figure_draws_the_pooled_rows_only(run, tmp_path):
    """zero_shot.tsv's per-subject rows leave the figure as the pooled rows alone draw it (and as a table written
    before them, without a subject column, does)."""
    table, subsets = (read_table(run / "eval" / f"{name}.tsv") for name in ("zero_shot", "zero_shot_subsets"))
    assert set(table["subject"]) == {"all", *SUBJECTS}
    pooled = table[table["subject"] == "all"].drop(columns="subject")
    drawn = [
        zero_shot_figure(rows, subsets, tmp_path / name)[0].read_text()
        for name, rows in (("every", table), ("pooled", pooled))
    ]
    assert drawn[0] == drawn[1]
