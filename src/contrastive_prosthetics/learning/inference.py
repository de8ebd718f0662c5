"""The trained network applied frame by frame, as the controller runs it: the same code scores the offline stream
evaluation (:mod:`..evaluation.stream`) and the real-time :class:`..realtime.controller.Controller`, so offline numbers
are the device's numbers.

``InferenceNetwork``  a trained network with its batch norms folded into the layers before them: a frame costs a
                      dozen tensor operations.
``normalised_frames`` raw frames → the network's input: the normalisation of training, dead channels zero.
``FrameScorer``       frames (with the ``context`` - 1 frames before each) → logits over every class: the
                      normalisation of training, then the network, in a fixed order, so that a frame's scores do not
                      depend on how many frames were scored with it.
"""

from __future__ import annotations

import torch

from .dataset import Normalisation


class InferenceNetwork:
    """A trained network for scoring one frame at a time, fast: every batch-norm layer (eval statistics) folded
    into the convolution or linear layer before it, the class embeddings and temperature computed once, so that a
    frame costs a dozen tensor operations. Its scores equal the model's to float rounding (1e-5); the controller
    and the stream evaluation both use it, so their decisions are the same."""

    def __init__(self, model: torch.nn.Module):
        encoder = model.emg_encoder
        convolutions = [m for m in encoder.convolutions if isinstance(m, torch.nn.Conv1d)]
        conv_norms = [m for m in encoder.convolutions if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        linears = [m for m in encoder.layers if isinstance(m, torch.nn.Linear)]
        norms = [m for m in encoder.layers if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad():
            self.input = None if encoder.input_norm is None else _affine(encoder.input_norm)
            self.convolutions = [
                _folded(c.weight, c.bias, n, conv=True) for c, n in zip(convolutions, conv_norms, strict=True)
            ]
            folded = [_folded(linear.weight, linear.bias, norm) for linear, norm in zip(linears, norms, strict=False)]
            self.hidden = folded  # linear + batch norm + ReLU each
            self.projection = (linears[-1].weight.detach().clone(), linears[-1].bias.detach().clone())
            if hasattr(model, "encode_classes"):
                self.classes = (model.scale() * model.encode_classes()).T.contiguous()
                self.head = None
            else:
                self.classes = None
                self.head = (model.head.weight.detach().clone(), model.head.bias.detach().clone())

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1) if x.dim() == 2 else x
        if self.input is not None:  # per electrode: not foldable into a convolution shared by every electrode
            x = torch.addcmul(self.input[1], x, self.input[0])
        for weight, bias in self.convolutions:
            x = torch.relu(torch.nn.functional.conv1d(x, weight, bias, padding=1))
        x = x.flatten(1)
        for weight, bias in self.hidden:
            x = torch.relu(torch.nn.functional.linear(x, weight, bias))
        x = torch.nn.functional.linear(x, *self.projection)
        if self.head is not None:
            return torch.nn.functional.linear(x, *self.head)
        return torch.nn.functional.normalize(x, dim=-1) @ self.classes


def _folded(weight: torch.Tensor, bias: torch.Tensor, norm, conv: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a layer followed by batch norm in eval mode, as one layer."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1, 1, 1) if conv else (-1, 1)
    return (weight * scale.view(shape)).detach().clone(), (
        (bias - norm.running_mean) * scale + norm.bias
    ).detach().clone()


def _affine(norm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of a batch norm in eval mode: norm(x) = x * scale + shift."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale.detach().clone(), (norm.bias - norm.running_mean * scale).detach().clone()


def normalised_frames(frames: torch.Tensor, normalisation: Normalisation, live: torch.Tensor) -> torch.Tensor:
    """Raw frames ([..., channel]) as the network sees them: the normalisation of training, dead channels zero. The
    scorer applies it to every frame it scores, and a deployed AdaBN model to the frames it adapts on
    (:mod:`..realtime.adabn`), so that its statistics are those of the network's input at prediction time."""
    return torch.where(live, normalisation.apply(frames), 0.0)


class FrameScorer:
    """Raw frames with their context [n, context, channel] ([n, channel] for a context of 1) → logits over every
    class [n, class], frame by frame. ``network`` is a torch model (with ``normalisation`` applied first) or an
    exported network with the normalisation baked in (``normalisation`` None, see :mod:`..realtime.export`)."""

    def __init__(
        self,
        network,
        normalisation: Normalisation | None,
        live_channels: torch.Tensor,
        n_classes: int,
        fast: bool = True,
        bias: torch.Tensor | None = None,
    ):
        if isinstance(network, torch.nn.Module):  # a package model folds; an exported one runs as it is
            fold = fast and hasattr(network, "emg_encoder")
            network = InferenceNetwork(network.eval()) if fold else network.eval()
        self.network = network
        self.normalisation = normalisation
        self.live = torch.as_tensor(live_channels, dtype=torch.bool)
        self.n_classes = n_classes
        # The calibrated rest bias (model.pt's rest_bias on rest's logit), added to every frame's scores.
        self.bias = None if bias is None or not bias.any() else bias.float()

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, batch: int = 1) -> torch.Tensor:
        """Scores ``batch`` frames per network call: 1 as a controller does (each frame as it arrives); offline, a
        large batch is 30-100x faster. The arithmetic is the same, but a matrix product over many rows may round
        differently from one over a single row, so scores agree to float rounding (1e-6), not always bit for bit.
        """
        frames = torch.as_tensor(frames, dtype=torch.float32)
        out = []
        for start in range(0, len(frames), batch):
            x = frames[start : start + batch]
            x = x if self.normalisation is None else normalised_frames(x, self.normalisation, self.live)
            scores = torch.as_tensor(self.network(x)).float()
            out.append(scores if self.bias is None else scores + self.bias)
        return torch.cat(out) if out else torch.zeros((0, self.n_classes))
