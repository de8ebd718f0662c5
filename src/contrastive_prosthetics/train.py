"""Random hyper-parameter search, final training and test logits for one model × fold.

    search.tsv   every sampled configuration and its validation score (best by validation accuracy)
    model.pt     weights of the epoch with the lowest validation loss, model config, hyper-parameters,
                 normalisation statistics (from the training selection only), history, classes
    history.tsv  per epoch: train/validation loss and accuracy, learning rate, seconds, frames/s
    logits.pt    every test frame: logits over all classes, label, subject, repetition, frame, AdaBN setting

Test data are read once, after training, to write logits.pt; search, early stopping and normalisation see
training and validation data only. One seed drives everything; CPU reruns are bit-identical.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_torch_save, atomic_write_tsv
from .dataset import DB23, Selection, choose_device
from .folds import fold_selections
from .logits import write_logits
from .models import ModelConfig, adapt_batchnorm, build_model, classifier_loss, contrastive_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HyperParameters:
    learning_rate: float
    weight_decay: float
    dropout: float


@dataclass(frozen=True)
class TrainingSettings:
    groups: int  # groups per batch; each holds one frame of every class
    steps_per_epoch: int
    log_amplitude: bool
    search_trials: int
    search_epochs: int
    learning_rate: tuple[float, float]  # log-uniform range
    weight_decay: tuple[float, float]  # log-uniform range
    dropout: tuple[float, float]  # uniform range
    final_epochs: int
    evaluation_batch: int = 1 << 16

    @classmethod
    def from_config(cls, training: dict) -> TrainingSettings:
        search = training["search"]
        return cls(
            groups=training["groups"],
            steps_per_epoch=training["steps_per_epoch"],
            log_amplitude=training["log_amplitude"],
            search_trials=search["trials"],
            search_epochs=search["epochs"],
            learning_rate=tuple(search["learning_rate"]),
            weight_decay=tuple(search["weight_decay"]),
            dropout=tuple(search["dropout"]),
            final_epochs=training["final"]["epochs"],
        )


def sample_hyperparameters(settings: TrainingSettings, trials: int, seed: int) -> list[HyperParameters]:
    """``trials`` configurations: learning rate and weight decay log-uniform, dropout uniform."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    def log_uniform(low_high: tuple[float, float]) -> float:
        return float(math.exp(rng.uniform(math.log(low_high[0]), math.log(low_high[1]))))

    return [
        HyperParameters(
            log_uniform(settings.learning_rate),
            log_uniform(settings.weight_decay),
            float(rng.uniform(*settings.dropout)),
        )
        for _ in range(trials)
    ]


@dataclass
class Device:
    """Where training runs, chosen once: CUDA with bfloat16 autocast when present, else the CPU."""

    device: torch.device

    @property
    def autocast(self):
        enabled = self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)


def model_losses(model: torch.nn.Module) -> Callable:
    if model.config.kind == "contrastive":
        return lambda logits, batch: contrastive_loss(logits, batch.present)
    return lambda logits, batch: classifier_loss(logits, batch.present, batch.classes)


@torch.no_grad()
def predict(model: torch.nn.Module, data: DB23, selection: Selection, adabn: bool, batch: int) -> tuple:
    """Logits over all classes for every frame of ``selection`` and the frames' (subject, class, rep, frame).

    With ``adabn``, each subject's batch-norm statistics are re-estimated from that subject's frames of the
    selection (unlabelled: labels are never looked at) before its frames are scored.
    """
    model.eval()
    outputs, indices = [], []
    subjects = (
        [selection.subjects[i : i + 1] for i in range(len(selection.subjects))] if adabn else [selection.subjects]
    )
    for subject in subjects:
        part = Selection(subject, selection.classes, selection.repetitions)
        frames = list(data.frames(part, batch_size=batch))
        if not frames:
            continue
        scorer = model
        if adabn:
            scorer = copy.deepcopy(model)
            adapt_batchnorm(scorer, torch.cat([x for x, _ in frames]), batch)
        outputs += [scorer(x).float() for x, _ in frames]
        indices += [index for _, index in frames]
    return torch.cat(outputs), torch.cat(indices)


def validation_scores(model, data: DB23, selection: Selection, adabn: bool, batch: int) -> tuple[float, float]:
    """Cross-entropy and accuracy of per-frame predictions over all classes."""
    logits, index = predict(model, data, selection, adabn, batch)
    labels = index[:, 1]
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


def train_once(
    data: DB23,
    train: Selection,
    validation: Selection,
    config: ModelConfig,
    hyper: HyperParameters,
    settings: TrainingSettings,
    epochs: int,
    seed: int,
    adabn: bool,
    device: Device,
    description: str = "",
) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train from scratch; return the model with its best-validation-loss weights, the history and timings."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**{**config.as_dict(), "dropout": hyper.dropout})).to(device.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=hyper.learning_rate, weight_decay=hyper.weight_decay)
    total_steps = epochs * settings.steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_steps, 1))
    # AdaBN normalises each subject with its own statistics at test time, so training batches come from one
    # subject each and batch norm learns within-subject statistics; without it, batches mix subjects.
    sampler = data.contrastive_sampler(train, settings.groups, seed=seed, per_subject=adabn)
    loss_of = model_losses(model)
    history, timings = [], []
    best_loss, best_state = math.inf, None
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        losses, correct, counted = [], 0.0, 0.0
        for _ in tqdm(range(settings.steps_per_epoch), desc=f"{description} epoch {epoch}", leave=False, mininterval=5):
            batch = sampler.draw()
            with device.autocast:
                logits = model.group_logits(batch.x, batch.classes).float()
                loss = loss_of(logits, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.detach())
            hits = (logits.argmax(-1) == torch.arange(logits.shape[1], device=logits.device)) & batch.present
            correct += hits.sum().item() if model.config.kind == "contrastive" else 0.0
            counted += batch.present.sum().item()
        seconds = time.perf_counter() - start
        train_loss = torch.stack(losses).mean().item()
        val_loss, val_accuracy = validation_scores(model, data, validation, adabn, settings.evaluation_batch)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_group_accuracy": correct / counted if model.config.kind == "contrastive" else float("nan"),
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": schedule.get_last_lr()[0],
            }
        )
        timings.append({"seconds": seconds, "frames_per_s": counted / seconds})
        log.info("%s epoch %d: %s", description, epoch, history[-1])
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return (
        model,
        history,
        {"timings": timings, "best_epoch": 1 + min(range(len(history)), key=lambda i: history[i]["val_loss"])},
    )


def train_fold(
    tensor_paths: list[Path],
    model_name: str,
    model_settings: dict,
    architecture: dict,
    fold_name: str,
    fold: dict,
    training: dict,
    seed: int,
    out_dir: Path,
    device: str = "auto",
) -> None:
    """Search, train and write search.tsv, model.pt, history.tsv and logits.pt for one model × fold."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    settings = TrainingSettings.from_config(training)
    chosen = Device(choose_device(device))
    raw = DB23.load(tensor_paths, device=str(chosen.device))
    selections = fold_selections(raw, fold)
    normalisation = raw.normalisation(selections.train, log_amplitude=settings.log_amplitude)
    data = raw.normalised(normalisation)
    adabn = bool(model_settings["adabn"])
    config = ModelConfig(
        kind=model_settings["kind"],
        n_channels=data.emg.shape[-1],
        n_classes=len(data.classes),
        embedding_dim=architecture["embedding_dim"],
        conv_maps=architecture["conv_maps"],
        width=architecture["width"],
        depth=architecture["depth"],
    )
    log.info("%s/%s on %s: %d subjects, %s", model_name, fold_name, chosen.device, len(data.subjects), config)

    search_rows = []
    candidates = sample_hyperparameters(settings, settings.search_trials, seed)
    # Search and final training differ only in epochs, seed and the label in the log.
    train = functools.partial(train_once, data, selections.train, selections.validation, config)
    for trial, hyper in enumerate(candidates, start=1):
        trial_label = f"trial {trial}/{len(candidates)}"
        _, history, _ = train(hyper, settings, settings.search_epochs, seed + trial, adabn, chosen, trial_label)
        best = min(history, key=lambda row: row["val_loss"])
        search_rows.append(
            {"trial": trial, **vars(hyper), "val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"]}
        )
    winner = max(search_rows, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
    for row in search_rows:
        row["chosen"] = row["trial"] == winner["trial"]
    hyper = candidates[winner["trial"] - 1]
    log.info("best trial %d: %s", winner["trial"], winner)

    model, history, extra = train(hyper, settings, settings.final_epochs, seed, adabn, chosen, "final")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_tsv(search_rows, out_dir / "search.tsv")
    atomic_write_tsv(
        [{**row, **timing} for row, timing in zip(history, extra["timings"], strict=True)], out_dir / "history.tsv"
    )
    atomic_torch_save(
        {
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "model_config": config.as_dict() | {"dropout": hyper.dropout},
            "hyperparameters": vars(hyper),
            "normalisation": normalisation.state_dict(),
            "classes": data.classes,
            "subjects": data.subject_names,
            "model": model_name,
            "adabn": adabn,
            "fold": fold_name,
            "fold_spec": fold,
            "best_epoch": extra["best_epoch"],
            "history": history,  # without timings, so that reruns give identical files
            "seed": seed,
        },
        out_dir / "model.pt",
    )

    # The one place test data are read.
    logits, index = predict(model, data, selections.test, adabn, settings.evaluation_batch)
    write_logits(out_dir / "logits.pt", logits, index, data, model_name, fold_name, adabn)
    log.info("wrote %s", out_dir)
