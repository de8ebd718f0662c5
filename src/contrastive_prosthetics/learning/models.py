"""Encoders, the contrastive (CLIP-style) model, the classifier baseline and adaptive batch normalisation.

The contrastive model embeds every RMS frame with an EMG encoder and every class with a class encoder into one
space; logits are a learnable, clamped scale times the cosine similarity (as in CLIP). Training sees groups of
one frame per class, and the loss is the symmetric cross-entropy over each group's [frame × class] similarity
matrix. The class encoder takes a per-class vector: a one-hot code, or the hand's pose (``class_encoder: pose``:
each class's glove-angle prototype, :mod:`.poses`), from which classes unseen in training are scored by their pose
alone.

The classifier shares the EMG encoder and puts a softmax head over the training classes: restricting its
logits to a subset of gestures is the same operation as for the contrastive model, which makes it the
baseline that tells whether the contrastive head is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InputError
from .pose_head import pose_head


@dataclass(frozen=True)
class ModelConfig:
    kind: str  # "contrastive" or "classifier"
    n_channels: int
    n_classes: int
    embedding_dim: int = 16
    conv_maps: int = 64
    width: int = 512
    depth: int = 2
    dropout: float = 0.1
    context: int = 1  # frames the encoder sees: the current one and the context - 1 before it
    dropout_layers: int | None = None  # the last this many hidden layers have dropout (None: all)
    logit_scale: float | None = None  # a fixed scale of the cosine logits; None: CLIP's learnable temperature
    class_encoder: str = "onehot"  # "onehot": a linear map of each class's one-hot code; "pose": an MLP of its pose
    code_dim: int = 22  # length of a pose code (the glove's sensors)
    input_norm: bool = False  # a batch norm of each electrode's input: per-user normalisation under AdaBN
    pose_weight: float = 0.0  # > 0: a head decodes the glove from the embedding, its loss weighted so (pose_decoder)

    def as_dict(self) -> dict:
        return asdict(self)


def reference_norm_autograd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, rows: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch norm of ``x`` [batch, channel(, length)] with the mean and biased variance of its first ``rows`` rows:
    (normalised x, mean, variance), written out for autograd to differentiate. Kept as the tested reference of
    :func:`reference_norm`, whose gradients are these, bit for bit."""
    dims = (0, 2) if x.dim() == 3 else (0,)
    reference = x[:rows]
    mean, var = reference.mean(dims), reference.var(dims, unbiased=False)
    shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
    normalised = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)
    return normalised * weight.view(shape) + bias.view(shape), mean.detach(), var.detach()


class _ReferenceNorm(torch.autograd.Function):
    """:func:`reference_norm_autograd` with a hand-written backward of the same operations on the same values, so
    the same bits, in fewer full-size passes (9 instead of 14 per layer). Autograd's graph of the written-out form
    recomputes the normalised values (x - mean) / scale for the quotient's gradient and the centred reference rows
    for the variance's, negates full-size tensors before summing them, and adds the statistics' gradient (rows of
    the reference only) to x's as a zero-padded full-size tensor. Here the forward's values are reused, negation
    waits until after the sum (exact: rounding is symmetric in sign) and the statistics' gradient is added into the
    reference rows in place."""

    @staticmethod
    def forward(ctx, x, weight, bias, rows: int, eps: float):
        dims = (0, 2) if x.dim() == 3 else (0,)
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        reference = x[:rows]
        mean, var = reference.mean(dims), reference.var(dims, unbiased=False)
        scale = torch.sqrt(var.view(shape) + eps)
        centred = x - mean.view(shape)
        normalised = centred / scale
        out = normalised * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(centred, normalised, scale, weight)
        ctx.rows, ctx.dims, ctx.shape = rows, dims, shape
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _mean, _var):
        centred, normalised, scale, weight = ctx.saved_tensors
        rows, dims, shape = ctx.rows, ctx.dims, ctx.shape
        # Each line is the gradient autograd computes for one operation of the written-out form, in its dtypes
        # (under CUDA autocast the normalised values are bfloat16 and the output float32).
        grad_bias = grad.sum(dims)
        grad_weight = (grad * normalised).sum(dims)
        grad_normalised = (grad * weight.view(shape)).to(normalised.dtype)
        grad_x = grad_normalised / scale  # also the centred values' gradient
        grad_scale = -(grad_normalised * (normalised / scale)).sum(dims, keepdim=True)
        grad_var = grad_scale / (2 * scale)  # through the square root (and + eps)
        grad_mean = -grad_x.sum(dims, keepdim=True)  # through x - mean
        count = centred[:rows].numel() // centred.shape[1]
        # x[:rows] - mean is the centred reference, as the variance's gradient recomputes it.
        grad_x[:rows] += (2.0 / count) * grad_var * centred[:rows] + grad_mean / count
        return grad_x, grad_weight, grad_bias, None, None


def reference_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, rows: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`reference_norm_autograd`, the same values and gradients, with less work in the backward pass."""
    return _ReferenceNorm.apply(x, weight, bias, rows, eps)


class ReferenceBatchNorm1d(nn.BatchNorm1d):
    """Batch norm that, in training, can normalise a whole batch with the statistics of its first
    ``reference_rows`` rows only (and update its running statistics from them).

    An AdaBN model adapts at test time on a subject's unlabelled continuous recording (mostly rest and
    transitions), not on the class-balanced groups it trains on; normalising each training batch with the
    statistics of frames of the same subject's recording trains it the way it will be used. The statistics are
    part of the graph, as in plain batch norm: the reference rows receive gradients through them. With no
    reference rows it is plain batch norm, and in eval mode it uses its running statistics as usual (AdaBN sets
    them).
    """

    reference_rows = 0
    normalise = staticmethod(reference_norm)  # reference_norm_autograd computes the same, slower (tests, bench)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.reference_rows):
            return super().forward(x)
        out, mean, var = self.normalise(x, self.weight, self.bias, self.reference_rows, self.eps)
        with torch.no_grad():
            count = x[: self.reference_rows].numel() // x.shape[1]
            self.num_batches_tracked += 1
            # In the running statistics' dtype: under autocast the batch's are bfloat16, and lerp_ takes one dtype.
            mean, var = mean.to(self.running_mean.dtype), var.to(self.running_var.dtype)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / max(count - 1, 1), self.momentum)
        return out


class InputNorm(ReferenceBatchNorm1d):
    """Batch norm of each electrode's input (frames [batch, context, channel]): per-channel statistics over the
    batch and the context frames.

    The input's normalisation (:class:`.dataset.Normalisation`) is pooled over the training subjects, so a new
    arm's per-electrode gain (a log-amplitude offset) survives it, and the convolutions' batch norms normalise each
    feature map across every electrode at once, so AdaBN there cannot remove a gain on one electrode. Under AdaBN
    this layer's statistics are each subject's own (one subject per training batch, the user's unlabelled recording
    at deployment): per-user input normalisation, re-estimated by the same adaptation as every other batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class EMGEncoder(nn.Module):
    """RMS frames [batch, channel], or [batch, context, channel] with the frames before each (oldest first), →
    an embedding [batch, embedding_dim].

    The reference's encoder: two convolutions across the electrode axis (neighbouring electrodes of the ring
    see overlapping muscles) with ``conv_maps`` maps, then ``depth`` fully connected layers of ``width`` with
    batch norm, ReLU and dropout. Its 3×3 kernels see a frame as a one-column image, so only three taps along
    the electrodes act: that is what the 3-tap 1-D convolutions here compute. With temporal context the frames
    enter the first convolution as its input maps, so context 1 is exactly the reference's single-frame encoder.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        maps = config.conv_maps
        self.input_norm = InputNorm(config.n_channels) if config.input_norm else None
        self.convolutions = nn.Sequential(
            nn.Conv1d(config.context, maps, kernel_size=3, padding=1),
            ReferenceBatchNorm1d(maps),
            nn.ReLU(),
            nn.Conv1d(maps, maps, kernel_size=3, padding=1),
            ReferenceBatchNorm1d(maps),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        width_in = maps * config.n_channels
        with_dropout = config.depth if config.dropout_layers is None else config.dropout_layers
        for layer in range(config.depth):
            layers += [nn.Linear(width_in, config.width), ReferenceBatchNorm1d(config.width), nn.ReLU()]
            if layer >= config.depth - with_dropout:
                layers.append(nn.Dropout(config.dropout))
            width_in = config.width
        layers.append(nn.Linear(width_in, config.embedding_dim))
        self.layers = nn.Sequential(*layers)

    def stages(self) -> list[nn.Module]:
        """The encoder's modules in the order a frame [batch, context, channel] passes them."""
        first = [] if self.input_norm is None else [self.input_norm]
        return [*first, *self.convolutions, nn.Flatten(1), *self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1) if x.dim() == 2 else x
        if self.input_norm is not None:
            x = self.input_norm(x)
        return self.layers(self.convolutions(x).flatten(1))


def pose_class_encoder(config: ModelConfig) -> nn.Sequential:
    """A pose class encoder: an MLP from a class's pose code (``code_dim``) to its embedding (model.pt's
    ``pose_encoder`` of a calibrated model is its state)."""
    hidden = 4 * config.embedding_dim
    return nn.Sequential(nn.Linear(config.code_dim, hidden), nn.ReLU(), nn.Linear(hidden, config.embedding_dim))


class ContrastiveModel(nn.Module):
    """CLIP-style: frames and class codes meet in one normalised embedding space."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.emg_encoder = EMGEncoder(config)
        if config.class_encoder == "onehot":
            self.class_encoder = nn.Linear(config.n_classes, config.embedding_dim)  # one-hot codes → embeddings
        elif config.class_encoder == "pose":  # a class described by the hand's pose: new classes need no retraining
            self.class_encoder = pose_class_encoder(config)
        else:
            raise InputError(f"unknown class encoder {config.class_encoder!r}; use onehot or pose")
        if config.logit_scale is None:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        else:  # fixed: the reference's code defines a learnable scale but never applies it (a scale of 1)
            self.register_buffer("logit_scale", torch.tensor(math.log(config.logit_scale)))
        if config.class_encoder == "onehot":
            self.register_buffer("class_codes", torch.eye(config.n_classes), persistent=False)
        else:  # the pose prototypes, set from training data (poses.pose_prototypes) and saved with the weights
            self.register_buffer("class_codes", torch.zeros(config.n_classes, config.code_dim))
        self.pose_head = pose_head(config)

    def encode_emg(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.emg_encoder(x), dim=-1)

    def decode_pose(self, x: torch.Tensor) -> torch.Tensor:
        """Frames → [frame, sensor] the decoded standardised glove (a model with a pose head)."""
        return self.pose_head(self.emg_encoder(x))

    def encode_classes(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.class_encoder(self.class_codes if codes is None else codes), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100)).exp()  # CLIP clamps at 100 to keep training stable

    def group_logits(
        self,
        x: torch.Tensor,
        classes: torch.Tensor,
        present: torch.Tensor,
        reference: torch.Tensor | None = None,
        with_poses: bool = False,
    ):
        """Groups [group, class, (context,) channel] → [group, frame, class] logits of each group's frames vs its
        classes. Only ``present`` frames are encoded (absent ones are placeholders that must not shift batch
        statistics); their rows are zeros, which the loss masks. ``reference`` frames, when given, set the batch
        statistics (see :class:`ReferenceBatchNorm1d`). ``with_poses``: (logits, [group, class, sensor] decoded
        poses), from the same encoding."""
        if not with_poses:
            frames = encode_present(self.encode_emg, x, present, reference, self)
            return self.scale() * frames @ self.encode_classes()[classes].T
        embedded = encode_present(self.emg_encoder, x, present, reference, self)
        logits = self.scale() * F.normalize(embedded, dim=-1) @ self.encode_classes()[classes].T
        return logits, self.pose_head(embedded)

    def forward(self, x: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Frames [frame, channel] → logits over every class [frame, class]."""
        return self.scale() * self.encode_emg(x) @ self.encode_classes(codes).T


class ClassifierModel(nn.Module):
    """The same EMG encoder with a softmax head over the training classes (the reference's prediction mode)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.emg_encoder = EMGEncoder(config)
        # A linear head straight on the embedding, as the contrastive model compares that embedding linearly.
        self.head = nn.Linear(config.embedding_dim, config.n_classes)
        self.pose_head = pose_head(config)

    def decode_pose(self, x: torch.Tensor) -> torch.Tensor:
        return self.pose_head(self.emg_encoder(x))

    def group_logits(
        self,
        x: torch.Tensor,
        classes: torch.Tensor,
        present: torch.Tensor,
        reference: torch.Tensor | None = None,
        with_poses: bool = False,
    ):
        if not with_poses:
            encode = lambda frames: self.head(self.emg_encoder(frames))  # noqa: E731
            return encode_present(encode, x, present, reference, self)[..., classes]
        embedded = encode_present(self.emg_encoder, x, present, reference, self)
        return self.head(embedded)[..., classes], self.pose_head(embedded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emg_encoder(x))


def encode_present(
    encode, x: torch.Tensor, present: torch.Tensor, reference: torch.Tensor | None = None, model: nn.Module = None
) -> torch.Tensor:
    """``encode`` of the present frames of groups [group, class, ...]: [group, class, out], zeros where absent.
    With ``reference`` frames, every batch-norm layer of ``model`` normalises with their statistics."""
    frames = x[present]
    if reference is None:
        encoded = encode(frames)
    else:
        layers = [layer for layer in model.modules() if isinstance(layer, ReferenceBatchNorm1d)]
        for layer in layers:
            layer.reference_rows = len(reference)
        try:
            encoded = encode(torch.cat((reference, frames)))[len(reference) :]
        finally:
            for layer in layers:
                layer.reference_rows = 0
    out = encoded.new_zeros((*present.shape, encoded.shape[-1]))
    out[present] = encoded
    return out


MODEL_KINDS = {"contrastive": ContrastiveModel, "classifier": ClassifierModel}


def build_model(config: ModelConfig) -> nn.Module:
    try:
        return MODEL_KINDS[config.kind](config)
    except KeyError:
        raise InputError(f"unknown model kind {config.kind!r}; choose from {sorted(MODEL_KINDS)}") from None


def contrastive_loss(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy over each group's [frame × class] matrix; frame i belongs to class i.

    ``present`` [group, class] removes classes a group's subject never recorded: their rows and columns
    take no part. Vectorised over groups: one masked cross-entropy per direction.
    """
    n = logits.shape[-1]
    target = torch.arange(n, device=logits.device).expand(logits.shape[:-1])
    absent = ~present
    # Mask absent classes as candidates in both directions; -inf would give NaN for fully masked rows.
    masked = logits.masked_fill(absent[:, None, :] | absent[:, :, None], torch.finfo(logits.dtype).min)
    frame_to_class = F.cross_entropy(masked.transpose(1, 2), target, reduction="none")  # [group, frame]
    class_to_frame = F.cross_entropy(masked, target, reduction="none")  # [group, class]
    weight = present.to(logits.dtype)
    return ((frame_to_class + class_to_frame) * weight).sum() / (2 * weight.sum())


def classifier_loss(logits: torch.Tensor, present: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every present frame of the groups against its class, over all training classes."""
    target = classes.expand(present.shape)
    per_frame = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    weight = present.to(logits.dtype)
    return (per_frame * weight).sum() / weight.sum()


def model_losses(model: nn.Module) -> Callable:
    """The training loss of ``model``'s kind, of (group logits, batch): what training and transfer minimise."""
    if model.config.kind == "contrastive":
        return lambda logits, batch: contrastive_loss(logits, batch.present)
    return lambda logits, batch: classifier_loss(logits, batch.present, batch.classes)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the weight matrices and kernels of the EMG encoder and the classifier head
    only; not on batch-norm scales and shifts, biases, the temperature or the class embeddings (as CLIP does)."""
    decayed, kept = [], []
    for name, parameter in model.named_parameters():
        matrix = parameter.dim() >= 2 and not name.startswith("class_encoder")
        (decayed if matrix else kept).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, frames: torch.Tensor, batch_size: int = 1 << 16) -> None:
    """AdaBN: re-estimate every batch-norm layer's statistics from one subject's unlabelled frames.

    Forward passes only, no gradient. Layers are adapted one after another, each from the activations that
    the already adapted layers before it produce in eval mode, so that after adaptation every layer's
    statistics are exactly those of its input at prediction time (one pass in train mode would normalise
    earlier layers with biased batch variances instead). Statistics are a cumulative average over batches
    (``momentum=None``): exact when the frames fit in one batch. The model is left in eval mode, statistics
    frozen.
    """
    model.eval()
    encoder = model.emg_encoder  # every batch-norm layer lives in the encoder
    # Each batch's activations are carried from layer to layer, so that the encoder runs once, not once per
    # batch-norm layer: the same operations on the same batches as running it whole each time, so the same bits.
    chunks = [frames[start : start + batch_size] for start in range(0, len(frames), batch_size)]
    chunks = [x.unsqueeze(1) if x.dim() == 2 else x for x in chunks]
    stages = encoder.stages()
    for stage in stages:
        if isinstance(stage, nn.modules.batchnorm._BatchNorm):
            momentum = stage.momentum
            stage.reset_running_stats()
            stage.momentum = None
            stage.train()
            for x in chunks:
                stage(x)
            stage.eval()
            stage.momentum = momentum
        if stage is stages[-1]:
            break  # the embedding itself is not needed
        chunks = [stage(x) for x in chunks]


def batchnorm_statistics(model: nn.Module) -> list[tuple[torch.Tensor, ...]]:
    """Every batch-norm layer's running mean, variance and batch count: what :func:`adapt_batchnorm` sets."""
    return [
        (layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone())
        for layer in batchnorm_layers(model)
    ]


@torch.no_grad()
def set_batchnorm_statistics(model: nn.Module, statistics: list[tuple[torch.Tensor, ...]]) -> None:
    """Give ``model`` (eval mode) the :func:`batchnorm_statistics` of an adapted copy of it: the same bits as adapting
    it on the same frames."""
    model.eval()
    for layer, (mean, variance, batches) in zip(batchnorm_layers(model), statistics, strict=True):
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(variance)
        layer.num_batches_tracked.copy_(batches)


@torch.no_grad()
def adapt_batchnorm_per_layer(model: nn.Module, frames: torch.Tensor, batch_size: int = 1 << 16) -> None:
    """:func:`adapt_batchnorm` as first written, the reference it is tested and benchmarked against: the whole
    encoder over every batch, once per batch-norm layer."""
    model.eval()
    for layer in batchnorm_layers(model):
        momentum = layer.momentum
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
        for start in range(0, len(frames), batch_size):
            model.emg_encoder(frames[start : start + batch_size])
        layer.eval()
        layer.momentum = momentum
