"""The command line: every subcommand's arguments, exit status 2 with one line on bad input, and tracebacks for
genuine bugs."""

from __future__ import annotations

import json

import pytest
from conftest import DEFAULT_CONFIG, PREPROCESS, emg_for, make_protocol, write_mat

from contrastive_prosthetics import cli
from contrastive_prosthetics.data.tensor_file import read_tensor_file

SUBCOMMANDS = ("synthesize", "download", "convert", "train", "evaluate", "aggregate", "figures")


def run(*argv: str) -> int:
    return cli.main(list(argv))


def error_line(capsys, command: str) -> str:
    """The error the command printed: one line, led by the command's name."""
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"contrastive-prosthetics {command}: error: ")
    return lines[0]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_and_requires_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as helped:
        run(command, "--help")
    assert helped.value.code == 0 and "--" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bare:
        run(command)
    assert bare.value.code == 2
    assert "the following arguments are required" in capsys.readouterr().err


def test_convert_rejects_a_source_without_an_exercise(capsys):
    with pytest.raises(SystemExit) as error:
        run("convert", "--database", "db1", "--subject", "1", "--source", "S1_A1_E1.mat", "--preprocess-json", "{}")
    assert error.value.code == 2 and "expected EXERCISE=PATH" in capsys.readouterr().err


def test_synthesize_with_impossible_timing_exits_2(tmp_path, capsys):
    params = json.dumps({**DEFAULT_CONFIG["synthetic"], "movement_s": 0.1})
    args = ["--database", "db2", "--subject", "1", "--exercise", "B", "--seed", "0", "--params-json", params]
    assert run("synthesize", *args, "--out", str(tmp_path / "x.mat")) == 2
    assert "movement_s" in error_line(capsys, "synthesize")
    assert not list(tmp_path.iterdir())


def test_download_from_an_unreachable_server_exits_2(tmp_path, capsys):
    args = ["--database", "db1", "--subject", "1", "--exercises", "A", "--url", "http://127.0.0.1:9/s1.zip"]
    folders = ["--archive-dir", str(tmp_path / "a"), "--dest-dir", str(tmp_path / "d")]
    options = ["--retries", "0", "--backoff-s", "0", "--timeout-s", "1"]
    assert run("download", *args, *folders, *options) == 2
    assert "data.source: local" in error_line(capsys, "download")


def test_convert_of_a_damaged_file_exits_2_naming_it(tmp_path, capsys):
    damaged = tmp_path / "S1_A1_E1.mat"
    damaged.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 50)
    preprocess = json.dumps(PREPROCESS.as_dict())
    args = [
        "--database",
        "db1",
        "--subject",
        "1",
        "--source",
        f"A={damaged}",
        "--preprocess-json",
        preprocess,
        "--seed",
        "0",
        "--threads",
        "2",
    ]
    assert run("convert", *args, "--out", str(tmp_path / "s1.pt")) == 2
    assert str(damaged) in error_line(capsys, "convert")
    assert not (tmp_path / "s1.pt").exists()


def test_convert_writes_a_tensor_file(tmp_path):
    protocol = make_protocol([1, 2], 10, movement_samples=150, rest_samples=130)
    source = write_mat(tmp_path / "S1_A1_E1.mat", protocol, emg_for(protocol, 10, rectified=True))
    preprocess = json.dumps(PREPROCESS.as_dict())
    args = [
        "--database",
        "db1",
        "--subject",
        "1",
        "--source",
        f"A={source}",
        "--preprocess-json",
        preprocess,
        "--seed",
        "0",
        "--threads",
        "2",
    ]
    assert run("convert", *args, "--out", str(tmp_path / "s1.pt")) == 0
    assert read_tensor_file(tmp_path / "s1.pt")["valid"][:3].all()


def test_train_on_missing_tensors_exits_2(tmp_path, capsys):
    args = ["--model", "lda", "--model-json", '{"kind": "lda", "adabn": false}', "--architecture-json", "{}"]
    fold = json.dumps({"scheme": "repetitions", "train": [1], "validation": [2], "test": [3]})
    args += ["--fold", "f", "--fold-json", fold, "--window", "onset", "--seed", "0", "--device", "cpu"]
    args += ["--training-json", json.dumps(DEFAULT_CONFIG["training"])]
    args += ["--evaluation-json", json.dumps(DEFAULT_CONFIG["evaluation"])]
    args += ["--threads", "1", "--tensors", str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path / "out")]
    assert run("train", *args) == 2
    assert "missing.pt" in error_line(capsys, "train")


def test_evaluate_of_a_file_that_is_not_logits_exits_2(tmp_path, capsys):
    (tmp_path / "logits.pt").write_bytes(b"not a torch file")
    args = [
        "--logits",
        str(tmp_path / "logits.pt"),
        "--vote-window-ms",
        "250",
        "--trials",
        "2",
        "--seed",
        "0",
        "--threads",
        "1",
    ]
    assert run("evaluate", *args, "--out-dir", str(tmp_path / "eval")) == 2
    assert "logits.pt" in error_line(capsys, "evaluate")
    assert not (tmp_path / "eval").exists()


def test_aggregate_of_a_missing_table_exits_2(tmp_path, capsys):
    args = ["--inputs", str(tmp_path / "eval" / "m" / "f"), "--tables", "metrics", "--out-dir", str(tmp_path)]
    assert run("aggregate", *args, "--families-json", "{}", "--seed", "0") == 2
    assert "metrics.tsv" in error_line(capsys, "aggregate")


def test_figures_without_tables_exits_2(tmp_path, capsys):
    args = ["--eval-dir", str(tmp_path), "--histories", "h.tsv", "--searches", "s.tsv", "--out-dir", str(tmp_path)]
    args += ["--window", "onset", "--family", "reps", "--families-json", "{}"]
    assert run("figures", *args, "--vote-window-ms", "250") == 2
    assert ".tsv" in error_line(capsys, "figures")


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """An unexpected ValueError is a programming error, not bad input: main must not swallow it."""

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("contrastive_prosthetics.evaluation.summary.aggregate_run", broken)
    with pytest.raises(ValueError, match="a bug"):
        args = ["--inputs", str(tmp_path), "--tables", "metrics", "--out-dir", str(tmp_path)]
        run("aggregate", *args, "--families-json", "{}", "--seed", "0")


def test_train_with_a_training_section_missing_a_key_exits_2_naming_it(tmp_path, capsys):
    args = ["--model", "lda", "--model-json", '{"kind": "lda", "adabn": false}', "--architecture-json", "{}"]
    fold = json.dumps({"scheme": "repetitions", "train": [1], "validation": [2], "test": [3]})
    args += ["--fold", "f", "--fold-json", fold, "--window", "onset", "--seed", "0", "--device", "cpu"]
    training = {key: value for key, value in DEFAULT_CONFIG["training"].items() if key != "guard_ms"}
    args += ["--training-json", json.dumps(training), "--evaluation-json", json.dumps(DEFAULT_CONFIG["evaluation"])]
    args += ["--threads", "1", "--tensors", str(tmp_path / "s1.pt"), "--out-dir", str(tmp_path / "out")]
    assert run("train", *args) == 2
    assert "training.guard_ms missing" in error_line(capsys, "train")
    assert not (tmp_path / "out").exists()
