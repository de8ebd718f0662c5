"""The contrastive loss, the encoders and AdaBN."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from contrastive_prosthetics.learning.models import (
    ClassifierModel,
    ContrastiveModel,
    ModelConfig,
    ReferenceBatchNorm1d,
    adapt_batchnorm,
    adapt_batchnorm_per_layer,
    batchnorm_layers,
    build_model,
    classifier_loss,
    contrastive_loss,
    parameter_groups,
    reference_norm,
    reference_norm_autograd,
)

CONFIG = ModelConfig(kind="contrastive", n_channels=6, n_classes=5, embedding_dim=8, conv_maps=4, width=32, depth=2)


def reference_loss(logits: torch.Tensor) -> torch.Tensor:
    """CLIP's loss written out group by group: mean of cross-entropy along rows and along columns."""
    losses = []
    for matrix in logits:
        target = torch.arange(len(matrix))
        losses.append((F.cross_entropy(matrix, target) + F.cross_entropy(matrix.T, target)) / 2)
    return torch.stack(losses).mean()


def test_contrastive_loss_equals_the_reference_computation():
    logits = torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(0))
    present = torch.ones(4, 5, dtype=torch.bool)
    torch.testing.assert_close(contrastive_loss(logits, present), reference_loss(logits))


def test_contrastive_loss_is_symmetric():
    logits = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(1))
    present = torch.ones(3, 6, dtype=torch.bool)
    torch.testing.assert_close(contrastive_loss(logits, present), contrastive_loss(logits.transpose(1, 2), present))


def test_absent_classes_take_no_part_in_the_loss():
    logits = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(2))
    present = torch.ones(2, 5, dtype=torch.bool)
    present[:, 3] = False
    keep = torch.tensor([0, 1, 2, 4])
    expected = reference_loss(logits[:, keep][:, :, keep])
    torch.testing.assert_close(contrastive_loss(logits, present), expected)
    changed = logits.clone()
    changed[:, 3, :] = 100.0
    changed[:, :, 3] = -100.0
    torch.testing.assert_close(contrastive_loss(changed, present), expected)


def separable_groups(groups: int = 64, seed: int = 0) -> torch.Tensor:
    """[group, class, channel]: class c lights up channel c (plus noise)."""
    noise = 0.1 * torch.randn(groups, 5, 6, generator=torch.Generator().manual_seed(seed))
    return noise + torch.eye(5, 6) * 3


def test_one_step_lowers_the_loss_on_a_separable_batch():
    torch.manual_seed(0)
    for model in (ContrastiveModel(CONFIG), ClassifierModel(ModelConfig(**{**CONFIG.as_dict(), "kind": "classifier"}))):
        x, classes, present = separable_groups(), torch.arange(5), torch.ones(64, 5, dtype=torch.bool)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)

        def loss_now(model=model, x=x, classes=classes, present=present):
            logits = model.group_logits(x, classes, present)
            if isinstance(model, ContrastiveModel):
                return contrastive_loss(logits, present)
            return F.cross_entropy(logits.transpose(1, 2), classes.expand(64, 5))

        model.train()
        before = loss_now()
        before.backward()
        optimiser.step()
        assert loss_now().item() < before.item()


def test_logit_scale_is_clamped_at_100():
    model = ContrastiveModel(CONFIG)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert abs(model.scale().item() - 100.0) < 1e-3


def frames_of_one_subject(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 2.0 + 3.0 * torch.randn(500, 6, generator=generator)


def test_adabn_statistics_equal_the_subjects_frame_statistics():
    torch.manual_seed(0)
    model = ContrastiveModel(CONFIG)
    frames = frames_of_one_subject(3)
    adapt_batchnorm(model, frames)
    first = batchnorm_layers(model)[0]
    with torch.no_grad():
        conv_out = model.emg_encoder.convolutions[0](frames.unsqueeze(1))  # the first batch norm's input
    torch.testing.assert_close(first.running_mean, conv_out.mean(dim=(0, 2)))
    torch.testing.assert_close(first.running_var, conv_out.var(dim=(0, 2), unbiased=True))
    # The deepest batch norm too: its input, computed with every earlier layer in its adapted eval state.
    last = batchnorm_layers(model)[-1]
    with torch.no_grad():
        hidden = model.emg_encoder.convolutions(frames.unsqueeze(1)).flatten(1)
        for layer in model.emg_encoder.layers:
            if layer is last:
                break
            hidden = layer(hidden)
    torch.testing.assert_close(last.running_mean, hidden.mean(0))
    torch.testing.assert_close(last.running_var, hidden.var(0))
    assert not model.training


def test_prediction_does_not_update_adapted_statistics():
    model = ContrastiveModel(CONFIG)
    adapt_batchnorm(model, frames_of_one_subject(4))
    saved = [layer.running_mean.clone() for layer in batchnorm_layers(model)]
    with torch.no_grad():
        model(frames_of_one_subject(5) * 10)
    for layer, mean in zip(batchnorm_layers(model), saved, strict=True):
        assert torch.equal(layer.running_mean, mean)


def test_without_adabn_the_training_statistics_stay():
    torch.manual_seed(0)
    model = ContrastiveModel(CONFIG)
    model.train()
    with torch.no_grad():
        model(frames_of_one_subject(6))  # training updates running statistics
    model.eval()
    trained = [layer.running_mean.clone() for layer in batchnorm_layers(model)]
    with torch.no_grad():
        model(frames_of_one_subject(7) + 50)  # a new subject, no adaptation
    assert all(
        torch.equal(layer.running_mean, mean) for layer, mean in zip(batchnorm_layers(model), trained, strict=True)
    )
    adapt_batchnorm(model, frames_of_one_subject(7) + 50)
    assert not torch.equal(batchnorm_layers(model)[0].running_mean, trained[0])


def test_absent_classes_do_not_change_a_subjects_batch_statistics():
    """Placeholder frames of classes a subject never recorded must not reach batch norm: its statistics after a
    training step equal those of the same subject's real frames alone, whatever the placeholders hold."""
    x = separable_groups(16)
    present = torch.ones(16, 5, dtype=torch.bool)
    present[:, [1, 3]] = False  # the subject lacks two classes
    means = []
    for placeholder in (-7.0, 0.0, 50.0):
        torch.manual_seed(0)
        model = ContrastiveModel(CONFIG)
        model.train()
        padded = x.clone()
        padded[:, [1, 3]] = placeholder
        model.group_logits(padded, torch.arange(5), present)
        means.append([layer.running_mean.clone() for layer in batchnorm_layers(model)])
    torch.manual_seed(0)
    alone = ContrastiveModel(CONFIG)
    alone.train()
    alone.emg_encoder(x[present])  # the subject's real frames, nothing else
    for statistics in means:
        for mean, expected in zip(statistics, batchnorm_layers(alone), strict=True):
            torch.testing.assert_close(mean, expected.running_mean)


def test_weight_decay_spares_norms_biases_temperature_and_class_embeddings():
    model = ContrastiveModel(CONFIG)
    decayed, kept = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    kept_names = {names[id(p)] for p in kept["params"]}
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert "logit_scale" in kept_names and "class_encoder.weight" in kept_names and "class_encoder.bias" in kept_names
    assert all(name.endswith("weight") and "emg_encoder" in name for name in decayed_names)
    for layer in batchnorm_layers(model):
        assert id(layer.weight) not in {id(p) for p in decayed["params"]}
    assert len(decayed_names) + len(kept_names) == len(list(model.parameters()))


def test_classifier_head_is_linear_on_the_embedding():
    model = ClassifierModel(ModelConfig(**{**CONFIG.as_dict(), "kind": "classifier"}))
    model.eval()
    x = separable_groups(4).reshape(-1, 6)
    embedding = model.emg_encoder(x)
    torch.testing.assert_close(model(x), embedding @ model.head.weight.T + model.head.bias)
    assert isinstance(model.head, torch.nn.Linear)


def test_context_of_one_frame_is_the_single_frame_encoder():
    torch.manual_seed(0)
    single = ContrastiveModel(CONFIG).eval()
    torch.manual_seed(0)
    with_context = ContrastiveModel(ModelConfig(**{**CONFIG.as_dict(), "context": 1})).eval()
    x = separable_groups(4).reshape(-1, 6)
    torch.testing.assert_close(single(x), with_context(x[:, None, :]))
    wide = ContrastiveModel(ModelConfig(**{**CONFIG.as_dict(), "context": 5})).eval()
    assert wide(torch.randn(7, 5, 6)).shape == (7, 5)


def test_reference_batch_norm_normalises_with_the_reference_rows_statistics():
    torch.manual_seed(0)
    layer, plain = ReferenceBatchNorm1d(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(40, 3) * 2 + 1
    layer.train()
    plain.train()
    torch.testing.assert_close(layer(x), plain(x))  # without reference rows: plain batch norm
    torch.testing.assert_close(layer.running_mean, plain.running_mean)
    reference, labelled = torch.randn(30, 3) * 5 - 2, torch.randn(10, 3)
    layer.reference_rows = 30
    out = layer(torch.cat((reference, labelled)))
    expected = (labelled - reference.mean(0)) / torch.sqrt(reference.var(0, unbiased=False) + layer.eps)
    torch.testing.assert_close(out[30:], expected)
    # Running statistics follow the reference rows (unbiased variance, as torch does).
    before = plain.running_var.clone()
    torch.testing.assert_close(layer.running_var, 0.9 * before + 0.1 * reference.var(0, unbiased=True))


def test_reference_frames_set_the_batch_statistics_of_a_group_forward():
    torch.manual_seed(0)
    model = ContrastiveModel(CONFIG)
    model.train()
    x, present = separable_groups(8), torch.ones(8, 5, dtype=torch.bool)
    reference = torch.randn(64, 6) * 3
    model.group_logits(x, torch.arange(5), present, reference)
    first = batchnorm_layers(model)[0]
    with torch.no_grad():
        conv = model.emg_encoder.convolutions[0](reference.unsqueeze(1))
    torch.testing.assert_close(first.running_mean, 0.1 * conv.mean(dim=(0, 2)))  # from zero, momentum 0.1
    assert all(layer.reference_rows == 0 for layer in batchnorm_layers(model))  # reset afterwards


def test_dropout_on_the_last_layers_only_and_a_fixed_logit_scale():
    config = ModelConfig(**{**CONFIG.as_dict(), "depth": 7, "dropout_layers": 4, "logit_scale": 1.0})
    model = ContrastiveModel(config)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 4
    assert sum(isinstance(m, torch.nn.Linear) for m in model.emg_encoder.layers) == 8  # seven hidden + projection
    assert model.scale().item() == 1.0 and "logit_scale" not in dict(model.named_parameters())
    x = torch.randn(5, 6)
    model.eval()
    cosine = model.encode_emg(x) @ model.encode_classes().T
    torch.testing.assert_close(model(x), cosine)  # logits are the cosines themselves


@pytest.mark.parametrize("context, batch_size", [(1, 1 << 16), (1, 8), (3, 16)])
def test_adabn_in_one_pass_gives_the_statistics_of_one_encoder_pass_per_layer_bit_for_bit(context, batch_size):
    import copy

    config = ModelConfig(**{**CONFIG.as_dict(), "context": context, "depth": 3, "dropout": 0.2})
    model = ContrastiveModel(config)
    shape = (50, CONFIG.n_channels) if context == 1 else (50, context, CONFIG.n_channels)
    frames = 3 * torch.randn(shape, generator=torch.Generator().manual_seed(context)) + 1
    fast, straightforward = copy.deepcopy(model), copy.deepcopy(model)
    adapt_batchnorm(fast, frames, batch_size)
    adapt_batchnorm_per_layer(straightforward, frames, batch_size)
    for ours, theirs in zip(batchnorm_layers(fast), batchnorm_layers(straightforward), strict=True):
        assert torch.equal(ours.running_mean, theirs.running_mean) and torch.equal(ours.running_var, theirs.running_var)
    assert not fast.training and torch.equal(fast(frames), straightforward(frames))


@pytest.mark.parametrize("shape, rows", [((40, 7), 30), ((40, 4, 6), 25), ((12, 3, 5), 12), ((9, 5), 1)])
def test_reference_batch_norm_equals_autograd_of_the_written_out_form_bit_for_bit(shape, rows):
    generator = torch.Generator().manual_seed(rows)
    x = 3 * torch.randn(shape, generator=generator) - 1
    weight, bias = torch.rand(shape[1], generator=generator) + 0.5, torch.randn(shape[1], generator=generator)
    upstream = torch.randn(shape, generator=generator)
    results = []
    for normalise in (reference_norm, reference_norm_autograd):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out, mean, var = normalise(*leaves, rows, 1e-5)
        (out * upstream).sum().backward()
        results.append([out, mean, var, *(leaf.grad for leaf in leaves)])
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kind, autocast", [("contrastive", False), ("classifier", False), ("contrastive", True)])
def test_training_with_reference_frames_takes_the_same_steps_as_autograd_of_the_written_out_form(
    kind, autocast, monkeypatch
):
    """A few AdamW steps with dropout and reference rows: the same losses, weights and running statistics bit for
    bit whether batch norm's backward is the hand-written one or autograd's of the written-out form; also under
    bfloat16 autocast (as on a GPU), whose batch statistics are bfloat16 and the running ones float32."""
    import copy

    config = ModelConfig(**{**CONFIG.as_dict(), "kind": kind, "context": 3, "dropout": 0.2})
    torch.manual_seed(0)
    initial = build_model(config)
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(8, 5, 3, 6, generator=generator), 2 * torch.randn(48, 3, 6, generator=generator) + 1)
        for _ in range(4)
    ]
    present = torch.ones(8, 5, dtype=torch.bool)
    present[1, 2] = False
    classes = torch.arange(5)
    runs = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(ReferenceBatchNorm1d, "normalise", staticmethod(reference_norm_autograd))
        model = copy.deepcopy(initial).train()
        optimiser = torch.optim.AdamW(parameter_groups(model, 1e-2), lr=1e-2)
        torch.manual_seed(2)  # dropout
        losses = []
        for x, reference in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model.group_logits(x, classes, present, reference).float()
                if kind == "contrastive":
                    loss = contrastive_loss(logits, present)
                else:
                    loss = classifier_loss(logits, present, classes)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.detach())
        runs.append((torch.stack(losses), model.state_dict()))
    (losses, state), (expected_losses, expected_state) = runs
    assert torch.equal(losses, expected_losses)
    assert all(torch.equal(state[name], expected_state[name]) for name in expected_state)
    assert not torch.equal(state["emg_encoder.layers.0.weight"], initial.state_dict()["emg_encoder.layers.0.weight"])


@pytest.mark.parametrize("kind", ["contrastive", "classifier"])
@pytest.mark.parametrize("context", [1, 3])
def test_the_input_norm_normalises_each_electrode_and_the_scorer_applies_it_per_electrode(kind, context):
    from contrastive_prosthetics.learning.inference import InferenceNetwork

    config = ModelConfig(**{**CONFIG.as_dict(), "kind": kind, "context": context, "input_norm": True})
    model = build_model(config)
    generator = torch.Generator().manual_seed(context)
    shape = (400, CONFIG.n_channels) if context == 1 else (400, context, CONFIG.n_channels)
    # Each electrode its own gain (a log-amplitude offset) and spread: what the input norm takes out per user.
    frames = torch.randn(shape, generator=generator) * torch.linspace(0.5, 3, 6) + torch.linspace(-4, 4, 6)
    adapt_batchnorm(model, frames)
    norm = model.emg_encoder.input_norm
    per_electrode = frames.reshape(-1, CONFIG.n_channels)
    torch.testing.assert_close(norm.running_mean, per_electrode.mean(0))
    torch.testing.assert_close(norm.running_var, per_electrode.var(0), rtol=1e-4, atol=1e-4)
    # The same frames with another arm's offsets: after AdaBN on them, the same embeddings.
    shifted = copy.deepcopy(model)
    adapt_batchnorm(shifted, frames + torch.linspace(2, -1, 6))
    with torch.no_grad():
        torch.testing.assert_close(shifted.emg_encoder(frames + torch.linspace(2, -1, 6)), model.emg_encoder(frames))
        torch.testing.assert_close(InferenceNetwork(model)(frames), model(frames), rtol=1e-4, atol=1e-4)
    assert batchnorm_layers(model)[0] is norm  # the first statistics AdaBN sets and model.pt stores


def test_without_the_input_norm_an_electrode_offset_survives_adabn():
    model = build_model(CONFIG)
    frames = torch.randn(400, CONFIG.n_channels, generator=torch.Generator().manual_seed(0))
    shifted = copy.deepcopy(model)
    adapt_batchnorm(model, frames)
    adapt_batchnorm(shifted, frames + torch.linspace(2, -1, 6))
    with torch.no_grad():
        assert not torch.allclose(shifted.emg_encoder(frames + torch.linspace(2, -1, 6)), model.emg_encoder(frames))
