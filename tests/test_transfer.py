"""Transfer to a new user (learning/transfer.py): the recipes of the configuration, which weights a recipe moves,
the user's batch-norm statistics kept, and the recipe chosen on validation users."""

from __future__ import annotations

import pytest
import torch
from test_train import write_subject

from contrastive_prosthetics.core.errors import InputError
from contrastive_prosthetics.evaluation.calibration_curve import ValidationUsers
from contrastive_prosthetics.learning.dataset import DB23
from contrastive_prosthetics.learning.models import ModelConfig, adapt_batchnorm, batchnorm_statistics, build_model
from contrastive_prosthetics.learning.transfer import TransferRecipe, transfer_network, transfer_recipes


def test_the_recipes_are_every_combination_of_the_lists():
    recipes = transfer_recipes({"learning_rate_scale": [0.1, 0.3], "layers": ["all", "top"], "steps": 7, "anchor": 1})
    assert [(r.learning_rate_scale, r.layers) for r in recipes] == [
        (0.1, "all"),
        (0.1, "top"),
        (0.3, "all"),
        (0.3, "top"),
    ]
    assert {r.steps for r in recipes} == {7} and {r.anchor for r in recipes} == {1.0}
    assert len({r.name for r in recipes}) == 4  # each named apart in calibration.tsv


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"layers": ["middle"]}, "layers ['middle']"),
        ({"learning_rate_scale": []}, "learning_rate_scale []"),
        ({"learning_rate_scale": [0.0]}, "learning_rate_scale [0.0]"),
        ({"speed": 1}, "unknown key(s) ['speed']"),
    ],
)
def test_a_recipe_that_cannot_be_drawn_is_refused_naming_the_key(section, message):
    with pytest.raises(InputError, match=r"calibration\.transfer") as error:
        transfer_recipes(section)
    assert message in str(error.value)


def test_the_recipe_is_the_validation_users_best_the_first_of_ties_and_the_first_without_them():
    recipes = transfer_recipes({"learning_rate_scale": [0.1, 0.3, 1.0], "layers": ["all"]})
    scores = {
        ("transfer", recipes[0].name): 0.5,
        ("transfer", recipes[1].name): 0.7,
        ("transfer", recipes[2].name): 0.7,
    }
    assert ValidationUsers({}, scores | {("adabn", ""): 0.9}).recipe(recipes) == recipes[1]
    assert ValidationUsers({}, {}).recipe(recipes) == recipes[0]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A contrastive AdaBN network adapted to subject s1's first repetitions, and s1's data."""
    raw = DB23.load([write_subject(tmp_path_factory.mktemp("transfer") / "s1.pt", 1)], device="cpu", with_streams=True)
    normalisation = raw.normalisation(raw.select(repetitions=[1, 2]))
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="contrastive", n_channels=6, n_classes=13, width=32, conv_maps=8))
    adapt_batchnorm(model, normalisation.apply(raw.stream_frames(0, [1, 2])))
    return model, raw, normalisation


@pytest.mark.parametrize("layers", ["all", "top"])
def test_a_recipe_moves_its_layers_and_keeps_the_users_statistics(user, layers):
    model, raw, normalisation = user
    recipe = TransferRecipe(1.0, layers, steps=5)
    tuned = transfer_network(model, raw, normalisation, 0, [1, 2], recipe, 1e-3, 4, 3, seed=0)
    before, after = model.state_dict(), tuned.state_dict()
    moved = {name for name in before if "running" not in name and not torch.equal(before[name], after[name])}
    projection = f"emg_encoder.layers.{len(model.emg_encoder.layers) - 1}.weight"
    assert projection in moved and "class_encoder.weight" in moved
    below = {name for name in moved if name.startswith("emg_encoder.convolutions")}
    assert (below != set()) is (layers == "all")  # top: the encoder below the projection frozen
    for (mean, var, _), (kept_mean, kept_var, _) in zip(
        batchnorm_statistics(model), batchnorm_statistics(tuned), strict=True
    ):
        assert torch.equal(mean, kept_mean) and torch.equal(var, kept_var)
    assert all(parameter.requires_grad for parameter in tuned.parameters())


def test_the_anchor_holds_the_weights_nearer_the_pretrained_ones(user):
    model, raw, normalisation = user
    change = []
    for anchor in (0.0, 1e4):
        tuned = transfer_network(
            model, raw, normalisation, 0, [1, 2], TransferRecipe(3.0, "all", 10, anchor), 1e-2, 4, 3, 0
        )
        change.append(sum(((a - b) ** 2).sum() for a, b in zip(model.parameters(), tuned.parameters(), strict=True)))
    assert change[1] < change[0]


def test_one_seed_gives_the_same_network(user):
    model, raw, normalisation = user
    recipe = TransferRecipe(1.0, "all", 3)
    first, second = (transfer_network(model, raw, normalisation, 0, [1], recipe, 1e-3, 4, 3, 0) for _ in range(2))
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
