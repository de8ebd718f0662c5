"""Random hyper-parameter search, final training and test logits for one model × fold.

    search.tsv   every sampled configuration, its validation score and status (a diverged trial, whose
                 validation loss is never finite, is recorded and never chosen), and the chosen one
    model.pt     weights of the kept epoch (:func:`kept_row`), model config, hyper-parameters,
                 normalisation statistics (from the training selection only), history, classes
                 (its fields: :data:`.model_file.NETWORK_FIELDS`)
    history.tsv  per epoch: train/validation loss and accuracy, learning rate, seconds, frames/s
    logits.pt    every test frame: logits over all classes, label, subject, repetition, frame, AdaBN setting

Test data are read once, after training, to write logits.pt; search, early stopping and normalisation see
training and validation data only. One seed drives everything; CPU reruns are bit-identical.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.atomic import atomic_write_tsv
from ..core.errors import InputError
from ..core.units import ms_to_frames
from ..data.ninapro import REST
from .adaptation import predict, protocol_of
from .calibration_free import calibration_free
from .dataset import DB23, Normalisation, Selection, choose_device
from .decision_choice import setting_calibrations
from .folds import FoldSelections, fold_selections, setup_repetitions, training_view
from .glove import decoded_test_poses, decoding_view
from .logits import write_logits
from .model_file import write_network_file
from .models import ModelConfig, build_model, model_losses, parameter_groups
from .onset_gate import OnsetGate
from .pose_head import batch_loss
from .poses import FoldCodes, fold_codes, pose_fields
from .rest_bias import validation_streams
from .rest_windows import setting_rest_windows
from .stream_scoring import StreamScoring
from .stream_selection import STREAM_SCORE, movement_accuracy_at
from .training_batches import training_augmenter, training_sampler
from .training_settings import HyperParameters, TrainingSettings, sample_hyperparameters

log = logging.getLogger(__name__)


@dataclass
class Device:
    """Where training runs, chosen once: CUDA with bfloat16 autocast when present, else the CPU."""

    device: torch.device

    @property
    def autocast(self):
        enabled = self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)


@dataclass(frozen=True, kw_only=True)
class Setting:
    """What every training run of one model × fold shares."""

    data: DB23  # normalised
    selections: FoldSelections
    config: ModelConfig
    settings: TrainingSettings
    adabn: bool
    adaptation: str
    device: Device
    seed: int
    class_codes: torch.Tensor | None = None  # pose prototypes for a pose class encoder (a new user's)
    raw: DB23 | None = None  # the training view before normalisation: what the controller reads (rest calibration)
    subject_codes: torch.Tensor | None = None  # [subject, class, 22] each subject's prototypes (zero-shot folds)
    pose_descriptions: torch.Tensor | None = None  # [subject, class, 22] the classes' poses from the others' gloves
    normalisation: Normalisation | None = None  # the training selection's, for the controller's scorer
    pose: FoldCodes | None = None  # a pose class encoder's codes as computed (on the CPU), what model.pt saves

    def scores(
        self, model: torch.nn.Module, selection: Selection, pool: dict, memo: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the selection's segment frames (:func:`.adaptation.predict`; ``memo``: its cross-fitted
        statistics, kept for these weights)."""
        return predict(
            model,
            self.data,
            selection,
            adabn=self.adabn,
            adaptation=self.adaptation,
            pool=pool,
            batch=self.settings.evaluation_batch,
            context=self.config.context,
            limit=self.settings.adaptation_frames,
            statistics_batch=self.settings.groups * len(self.data.classes),
            seed=self.seed,
            codes=self.subject_codes,
            memo=memo,
        )

    def stream_scoring(self) -> StreamScoring:
        """How this setting's streams are scored, as the controller scores them."""
        return StreamScoring(
            raw=self.raw,
            normalised=self.data,
            normalisation=self.normalisation,
            adabn=self.adabn,
            adaptation=self.adaptation,
            adaptation_frames=self.settings.adaptation_frames,
            codes=self.subject_codes,
            protocol=self.settings.adaptation_protocol,
            update_frames=max(1, ms_to_frames(1000 * self.settings.adaptation_update_s, self.data.frame_rate_hz)),
            left_out=self.selections.test_pool,  # a test repetition adapts nothing training reads, past or not
            setup=setup_repetitions(self.selections, with_validation=False),
        )

    def validation_streams(
        self, model: torch.nn.Module, gate: OnsetGate | None = None, memo: dict | None = None
    ) -> list:
        """(positions, logits, truth) of the validation streams, scored as the controller scores them
        (:func:`.rest_bias.validation_streams`): what the rest calibration and stream selection read."""
        validation = self.selections.validation
        pool = self.selections.validation_pool
        scoring = self.stream_scoring()
        return validation_streams(model, scoring=scoring, selection=validation, pool=pool, gate=gate, memo=memo)

    def validation_stream_score(self, model: torch.nn.Module, memo: dict | None = None) -> float:
        """:func:`.stream_selection.movement_accuracy_at` on the validation streams, at the rest calibration's target
        (at 10 % without one: the score needs an operating point)."""
        target = self.settings.rest_false_activation_target
        stretches = [(logits, truth) for _, logits, truth in self.validation_streams(model, memo=memo)]
        return movement_accuracy_at(stretches, self.data.classes.index(REST), 0.1 if target is None else target)

    def validation_scores(self, model: torch.nn.Module, memo: dict | None = None) -> tuple[float, float]:
        """Cross-entropy and accuracy of per-frame predictions over all classes, on the validation selection."""
        logits, index = self.scores(model, self.selections.validation, self.selections.validation_pool, memo)
        labels = index[:, 1]
        loss = torch.nn.functional.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss, accuracy


def train_once(
    setting: Setting,
    hyper: HyperParameters,
    epochs: int,
    seed: int,
    description: str = "",
    initial: dict | None = None,
) -> tuple[torch.nn.Module | None, list[dict], dict]:
    """Train from scratch, or from the ``initial`` weights (a state dict of the setting's model: fine-tuning); return
    the model with its kept epoch's weights (:func:`kept_row`; None if the validation loss was never finite:
    diverged), the history and timings. A non-finite training loss ends the run early."""
    settings, device = setting.settings, setting.device
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**{**setting.config.as_dict(), "dropout": hyper.dropout})).to(device.device)
    if setting.class_codes is not None:
        model.class_codes.copy_(setting.class_codes)
    if initial is not None:
        model.load_state_dict(initial)
    optimiser = torch.optim.AdamW(parameter_groups(model, hyper.weight_decay), lr=hyper.learning_rate)
    total_steps = epochs * settings.steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_steps, 1))
    sampler = training_sampler(setting, seed)
    augmenter = training_augmenter(setting, seed)
    loss_of = model_losses(model)
    history, timings = [], []
    best_state = best_memo = None
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        losses, correct, counted = [], 0.0, 0.0
        for _ in tqdm(range(settings.steps_per_epoch), desc=f"{description} epoch {epoch}", leave=False, mininterval=5):
            batch = augmenter(sampler.draw())
            with device.autocast:
                logits, loss = batch_loss(model, batch, loss_of)
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
        diverged = not math.isfinite(train_loss)
        memo = {}  # this epoch's cross-fitted statistics of the validation repetitions, for both scores
        val_loss, val_accuracy = (math.nan, math.nan) if diverged else setting.validation_scores(model, memo)
        by_stream = settings.selection == "stream" and not diverged
        val_stream = setting.validation_stream_score(model, memo) if by_stream else math.nan
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_group_accuracy": correct / counted if model.config.kind == "contrastive" else float("nan"),
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                STREAM_SCORE: val_stream,
                "lr": schedule.get_last_lr()[0],
            }
        )
        timings.append({"seconds": seconds, "frames_per_s": counted / seconds})
        log.info("%s epoch %d: %s", description, epoch, history[-1])
        if kept_row(history) is history[-1]:
            best_state, best_memo = copy.deepcopy(model.state_dict()), memo
        if diverged:
            log.warning("%s: the training loss is not finite in epoch %d; the run stops here", description, epoch)
            break
    if best_state is None:
        return None, history, {"timings": timings, "best_epoch": None}
    model.load_state_dict(best_state)
    # best_memo: the kept weights' cross-fitted statistics of the validation repetitions (the rest calibration's)
    return model, history, {"timings": timings, "best_epoch": kept_row(history)["epoch"], "memo": best_memo}


def kept_row(history: list[dict]) -> dict | None:
    """The epoch whose weights training keeps: the highest validation stream score when selecting on the stream
    (``training.selection: stream``: the rows carry one), else the lowest finite validation loss; the first of ties
    (None when no validation loss is finite: diverged)."""
    finite = [row for row in history if math.isfinite(row["val_loss"])]
    by_stream = [row for row in finite if math.isfinite(row.get(STREAM_SCORE, math.nan))]
    if by_stream:
        return max(by_stream, key=lambda row: row[STREAM_SCORE])  # max keeps the first of ties
    return min(finite, key=lambda row: row["val_loss"]) if finite else None


def search(setting: Setting, seed: int) -> tuple[list[dict], HyperParameters]:
    """The random search: every trial's row for search.tsv, and the chosen hyper-parameters (highest validation
    accuracy among trials that did not diverge, ties to the lower validation loss; with ``training.selection:
    stream``, the highest validation stream score instead)."""
    settings = setting.settings
    candidates = sample_hyperparameters(settings, settings.search_trials, seed)
    rows = []
    for trial, hyper in enumerate(candidates, start=1):
        label = f"trial {trial}/{len(candidates)}"
        model, history, _ = train_once(setting, hyper, settings.search_epochs, seed + trial, label)
        best = kept_row(history) or {"val_loss": math.nan, "val_accuracy": math.nan}
        status = "ok" if model is not None else "diverged"
        rows.append(
            {
                "trial": trial,
                **vars(hyper),
                "val_loss": best["val_loss"],
                "val_accuracy": best["val_accuracy"],
                STREAM_SCORE: best.get(STREAM_SCORE, math.nan),
                "status": status,
            }
        )
    usable = [row for row in rows if row["status"] == "ok"]
    if not usable:
        raise InputError(
            f"every one of the {len(rows)} search trials diverged (no finite validation loss): narrow "
            "training.search.learning_rate towards smaller rates"
        )
    if settings.selection == "stream" and any(math.isfinite(row[STREAM_SCORE]) for row in usable):
        usable = [row for row in usable if math.isfinite(row[STREAM_SCORE])]
        winner = max(usable, key=lambda row: (row[STREAM_SCORE], -row["val_loss"]))
    else:
        winner = max(usable, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
    for row in rows:
        row["chosen"] = row["trial"] == winner["trial"]
    log.info("best trial %d: %s", winner["trial"], winner)
    return rows, candidates[winner["trial"] - 1]


def fold_setting(
    tensor_paths: list[Path],
    model_name: str,
    model_settings: dict,
    architecture: dict,
    fold_name: str,
    fold: dict,
    settings: TrainingSettings,
    seed: int,
    device: str,
    window: str | None,
) -> tuple[Setting, Normalisation]:
    """What every training run of one network model × fold shares, and the normalisation of its training selection:
    the data (normalised), its selections, the model's configuration and, for a pose class encoder, its codes."""
    chosen = Device(choose_device(device))
    settings = settings.for_model(model_settings)
    adabn = bool(model_settings["adabn"])
    adaptation = model_settings.get("adaptation", "cross_fitted") if adabn else "none"  # as logits.pt says
    decodes = bool(model_settings.get("pose_decoder"))
    loaded = DB23.load(
        tensor_paths, device=str(chosen.device), with_streams=True, window=window, with_stream_glove=decodes
    )
    selections = fold_selections(loaded, fold, fold_name)
    raw = training_view(loaded, fold, selections)  # a zero-shot fold's held-out stretches left out
    normalisation = raw.normalisation(
        selections.train,
        log_amplitude=settings.log_amplitude,
        epsilon_fraction=settings.log_floor,
        floor_quanta=settings.log_floor_quanta,
    )
    data, descriptions = raw.normalised(normalisation), None
    if decodes:  # each subject's glove standardised: the pose head's target
        data, descriptions = decoding_view(loaded, raw, data, selections.train)
    config = ModelConfig(
        kind=model_settings["kind"],
        n_channels=data.emg.shape[-1],
        n_classes=len(data.classes),
        embedding_dim=architecture["embedding_dim"],
        conv_maps=architecture["conv_maps"],
        width=architecture["width"],
        depth=architecture["depth"],
        context=architecture["context_frames"],
        dropout_layers=architecture["dropout_layers"],
        class_encoder=model_settings.get("class_encoder", "onehot"),
        # Per-user input normalisation needs batch norms whose statistics are one person's: AdaBN's.
        input_norm=settings.normalisation == "per_subject" and adabn,
        logit_scale=None if architecture["logit_scale"] == "learnable" else float(architecture["logit_scale"]),
        pose_weight=float(model_settings["pose_decoder"]["weight"]) if decodes else 0.0,
    )
    log.info("%s/%s on %s: %d subjects, %s", model_name, fold_name, chosen.device, len(data.subjects), config)
    codes = subject_codes = pose = None
    if config.class_encoder == "pose":  # an unseen gesture is described to each subject by the others' gloves
        unseen = [data.classes.index(gesture) for gesture in fold.get("unseen", [])]
        pose = fold_codes(loaded, selections.train, unseen)
        codes, subject_codes = pose.new_user.to(chosen.device), pose.subjects
        subject_codes = None if subject_codes is None else subject_codes.to(chosen.device)
    setting = Setting(
        data=data,
        selections=selections,
        config=config,
        settings=settings,
        adabn=adabn,
        adaptation=adaptation,
        device=chosen,
        seed=seed,
        class_codes=codes,
        raw=raw,
        subject_codes=subject_codes,
        normalisation=normalisation,
        pose_descriptions=descriptions,
        pose=pose,
    )
    return setting, normalisation


def train_fold(
    tensor_paths: list[Path],
    model_name: str,
    model_settings: dict,
    architecture: dict,
    fold_name: str,
    fold: dict,
    settings: TrainingSettings,
    seed: int,
    out_dir: Path,
    device: str = "auto",
    window: str | None = None,
) -> None:
    """Search, train and write search.tsv, model.pt, history.tsv and logits.pt for one network model × fold, on
    the segments of ``window`` (default: the tensors' first)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    setting, normalisation = fold_setting(
        tensor_paths, model_name, model_settings, architecture, fold_name, fold, settings, seed, device, window
    )
    data, selections = setting.data, setting.selections

    search_rows, hyper = search(setting, seed)
    model, history, extra = train_once(setting, hyper, setting.settings.final_epochs, seed, "final")
    if model is None:
        raise InputError(
            f"{model_name}/{fold_name}: final training never reached a finite validation loss with the chosen "
            f"hyper-parameters {vars(hyper)}: narrow training.search.learning_rate towards smaller rates"
        )
    gate = OnsetGate.from_config(setting.settings.onset_gate, data.frame_rate_hz)
    calibration, decision = setting_calibrations(setting, model, gate, extra["memo"])
    free = calibration_free(setting, model, gate, fold)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_tsv(search_rows, out_dir / "search.tsv")
    atomic_write_tsv(
        [{**row, **timing} for row, timing in zip(history, extra["timings"], strict=True)], out_dir / "history.tsv"
    )
    write_network_file(
        out_dir / "model.pt",
        data,
        state_dict={k: v.cpu() for k, v in model.state_dict().items()},
        model_config=setting.config.as_dict() | {"dropout": hyper.dropout},
        hyperparameters=vars(hyper),
        normalisation=normalisation.state_dict(),
        model=model_name,
        adabn=setting.adabn,
        adaptation=setting.adaptation,
        adaptation_protocol=protocol_of(setting.adabn, setting.adaptation, setting.settings.adaptation_protocol),
        adaptation_update_s=setting.settings.adaptation_update_s,
        fold=fold_name,
        fold_spec=fold,
        unseen=fold.get("unseen", []),
        **pose_fields(setting.pose),
        best_epoch=extra["best_epoch"],
        history=history,
        seed=seed,
        rest_bias=0.0 if calibration is None else calibration.bias,
        calibration=None if calibration is None else calibration.as_dict(),
        rest_false_activation_target=setting.settings.rest_false_activation_target,
        guard_ms=setting.settings.guard_ms,
        onset_gate=None if gate is None else gate.as_dict(),
        decision=None if decision is None else decision.as_dict(),
        calibration_free=free,
    )
    # The one place test data are read.
    memo = {}  # the test repetitions' cross-fitted statistics: their segments, rest windows and decoded poses
    logits, index = setting.scores(model, selections.test, selections.test_pool, memo)
    write_logits(
        out_dir / "logits.pt",
        logits,
        index,
        data,
        model_name,
        fold_name,
        setting.adabn,
        setting.adaptation,
        fold.get("unseen", []),
        rest_windows=setting_rest_windows(setting, model, memo),
        poses=decoded_test_poses(setting, model, index, memo),
    )
    log.info("wrote %s", out_dir)
