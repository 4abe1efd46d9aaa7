"""The PPO search signal that sees recovery: sensitivity table, additive predictor, calibration, held-out check."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from small_nets import chain, fake_quantized, separable, train_briefly

from edgeprune.data import Split
from edgeprune.ppo import sensitivity
from edgeprune.ppo.params import PPOParams
from edgeprune.ppo.pruning import taylor_groups
from edgeprune.ppo.search import CompressionSearch
from edgeprune.ppo.sensitivity import Predictor, Score, SensitivityTable, sample_configs, validate, weights_hash
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover import protocol
from edgeprune.recover.protocol import Recovery

SHAPE = (3, 8, 8)
RATES, BITS = [0.0, 0.25, 0.5], [8, 4, 2]
LAYER_INC = np.array([[0.0, 0.05, 0.40], [0.0, 0.01, 0.10], [0.0, 0.20, 1.50]])  # layers x bits (8, 4, 2)
GROUP_INC = np.array([[0.0, 0.07, 0.30], [0.0, 0.02, 0.90]])  # groups x rates (0, .25, .5)
BASE_LOSS = 0.3


def synthetic_table(dense_hash: str = "0" * 16) -> SensitivityTable:
    """A table whose entries follow the truth top-1 = 90 - 20 x loss (so they fit a line exactly)."""
    score = lambda inc: Score(90 - 20 * (BASE_LOSS + inc), BASE_LOSS + inc)  # noqa: E731
    return SensitivityTable(
        dense_hash, {"steps": 1}, ["a", "b", "c"], ["a", "b"], RATES, BITS, score(0.0),
        [[score(v) for v in row] for row in LAYER_INC], [[score(v) for v in row] for row in GROUP_INC],
    )  # fmt: skip


def truth(rates, bits) -> float:
    """The synthetic network's recovered top-1: the line through the additive loss, with another slope."""
    loss = BASE_LOSS + sum(GROUP_INC[g, RATES.index(r)] for g, r in enumerate(rates))
    loss += sum(LAYER_INC[t, BITS.index(b)] for t, b in enumerate(bits))
    return 95.0 - 12.0 * loss


def test_predictor_is_exact_on_an_additive_table_after_calibration():
    table = synthetic_table()
    configs = [((0.0, 0.5), (4, 8, 2)), ((0.25, 0.0), (8, 2, 8)), ((0.5, 0.25), (2, 4, 4))]
    predictor = Predictor.fit(table, [(c, truth(*c)) for c in configs])
    assert predictor.fitted_on == "3 recovered configurations"
    assert predictor.slope == pytest.approx(-12.0) and predictor.intercept == pytest.approx(95.0)
    for config in sample_configs(table, 20, np.random.default_rng(3)):  # configurations it never saw
        assert predictor.top1(*config) == pytest.approx(truth(*config))
    assert predictor.loss((0.0, 0.0), (8, 8, 8)) == pytest.approx(BASE_LOSS)
    assert predictor.loss((0.5, 0.0), (8, 8, 2)) == pytest.approx(BASE_LOSS + 0.30 + 1.50)


def test_predictor_falls_back_to_the_tables_line_when_calibration_cannot_fit_a_falling_one():
    table = synthetic_table()
    rising = [(((0.0, 0.0), (8, 8, 8)), 50.0), (((0.5, 0.5), (2, 2, 2)), 60.0)]
    for points in ([], rising[:1], rising):
        predictor = Predictor.fit(table, points)
        assert predictor.fitted_on == "table entries"
        assert (predictor.slope, predictor.intercept) == pytest.approx((-20.0, 90.0))


def test_predictor_refuses_options_and_shapes_outside_its_table():
    predictor = Predictor.fit(synthetic_table(), [])
    with pytest.raises(ValueError, match="outside the sensitivity table's options"):
        predictor.loss((0.0, 0.0), (8, 3, 8))
    with pytest.raises(ValueError, match="covers 2 groups and 3 layers"):
        predictor.loss((0.0,), (8, 8, 8))


def test_a_table_from_another_dense_model_is_refused_naming_both_hashes():
    model, other = chain(seed=0), chain(seed=1)
    predictor = Predictor.fit(synthetic_table(weights_hash(other)), [])
    with pytest.raises(ValueError, match=f"measured on dense weights {weights_hash(other)}, this model's are "
                                         f"{weights_hash(model)}"):  # fmt: skip
        predictor.check(model, ["a", "b", "c"], ["a", "b"])
    Predictor.fit(synthetic_table(weights_hash(model)), []).check(model, ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="layers or channel groups differ"):
        Predictor.fit(synthetic_table(weights_hash(model)), []).check(model, ["a", "b"], ["a", "b"])
    assert weights_hash(copy.deepcopy(model)) == weights_hash(model)


def test_validate_fits_on_calibration_and_ranks_held_out_configurations():
    table = synthetic_table()
    seen = []

    def score(rates, bits):
        seen.append((rates, bits))
        return truth(rates, bits)

    held = []
    predictor, record = validate(table, score, calibration=3, holdout=6, seed=1,
                                 holdout_score=lambda r, b: held.append((r, b)) or truth(r, b))  # fmt: skip
    assert len(seen) == 3 and len(held) == 6 and [c["role"] for c in record["configurations"]] == ["calibration"] * 3 + ["holdout"] * 6
    first = record["configurations"][0]
    assert (tuple(first["rates"]), tuple(first["bits"])) == table.mildest()  # the anchor of the line
    assert record["spearman_holdout"] == pytest.approx(1.0) and record["mae_holdout"] == pytest.approx(0.0, abs=1e-9)
    assert predictor.slope == pytest.approx(-12.0)
    _, again = validate(table, truth, calibration=3, holdout=6, seed=1)
    assert again["configurations"] == record["configurations"]  # reproducible in the seed
    assert math.isnan(sensitivity.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_sampled_configurations_use_only_the_tables_options_and_vary_in_severity():
    table = synthetic_table()
    configs = sample_configs(table, 200, np.random.default_rng(0))
    assert all(set(r) <= set(RATES) and set(b) <= set(BITS) for r, b in configs)
    changed = [sum(x != RATES[0] for x in r) + sum(x != BITS[0] for x in b) for r, b in configs]
    assert min(changed) == 0 and max(changed) >= 3


@pytest.fixture(scope="module")
def small():
    trained = train_briefly(chain(), steps=40)
    x, y = separable(256, seed=2)
    groups = taylor_groups(trained, x[:64], y[:64], input_shape=SHAPE)
    search = CompressionSearch(trained, groups, x[:64], x[64:], y[64:], input_shape=SHAPE)
    recovery = Recovery(FinetuneParams(budgets=[Budget(steps=2)], batch_size=32, calib_images=64), Split(*separable(512, 4)))
    return search, recovery


def test_the_table_recovers_every_single_change_from_the_mildest_configuration(small, monkeypatch):
    search, recovery = small
    calls = []
    real = sensitivity.RecoveredScorer.__call__

    def recording(self, rates, bits, budget, x, y, **kwargs):
        calls.append((tuple(rates), tuple(bits), budget))
        return real(self, rates, bits, budget, x, y, **kwargs)

    qat = []
    real_fit = protocol.fit

    def fit_recording(model, *args, **kwargs):
        qat.append(fake_quantized(model))
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(sensitivity.RecoveredScorer, "__call__", recording)
    monkeypatch.setattr(protocol, "fit", fit_recording)
    table = sensitivity.measure_table(search, recovery, prune_rates=[0.5, 0.0], bits=[4, 8], steps=2)
    layers, groups = len(search.layers), len(search.groups)
    assert len(calls) == 1 + layers + groups  # the base, one lower bit-width per layer, one rate per group
    assert qat == [True] * len(calls)  # every entry under QAT, the 8-bit base and prune entries too: alike but for the change
    mild = ((0.0,) * groups, (8,) * layers)
    for rates, bits, budget in calls[1:]:
        assert budget == Budget(steps=2)
        assert sum(r != 0.0 for r in rates) + sum(b != 8 for b in bits) == 1
    assert calls[0][:2] == mild and table.mildest() == mild
    assert (table.rates, table.bits, table.dense_hash) == ([0.0, 0.5], [8, 4], weights_hash(search.model))
    assert all(row[0] == table.base for row in table.bits_scores + table.rate_scores)
    again = SensitivityTable.from_json(table.to_json())
    assert again == table


def test_the_search_scores_with_the_predictor_and_counts_sizes_as_before(small):
    search, _ = small
    measured = search  # measures top-1 (no predictor)
    predicted = CompressionSearch(search.model, search.groups, search.calib_x, search.val_x, search.val_y,
                                  input_shape=SHAPE)  # fmt: skip
    predicted.use_predictor(lambda rates, bits: 42.0 + rates[0])
    rates, bits = (0.5,) + (0.0,) * (len(search.groups) - 1), (4,) * len(search.layers)
    outcome = predicted.evaluate(rates, bits)
    assert outcome.top1 == 42.5
    assert (outcome.size_bytes, outcome.params) == (measured.evaluate(rates, bits).size_bytes, measured.evaluate(rates, bits).params)
    with pytest.raises(RuntimeError, match="before any evaluation"):
        predicted.use_predictor(lambda rates, bits: 0.0)


def test_params_refuse_an_unknown_signal_and_empty_recoveries():
    with pytest.raises(ValidationError, match="signal"):
        PPOParams(signal="oracle")
    with pytest.raises(ValidationError, match="steps"):
        PPOParams(sensitivity={"steps": 0})
    assert PPOParams().signal == "sensitivity"


def test_the_recovered_scorer_goes_through_the_protocol_with_the_searchs_scheme(small, monkeypatch):
    search, recovery = small
    seen = {}
    real = Recovery.recover

    def spy(self, model: nn.Module, **kwargs):
        seen.update(kwargs)
        return real(self, model, **kwargs)

    monkeypatch.setattr(Recovery, "recover", spy)
    score = sensitivity.RecoveredScorer(search, recovery)((0.0,) * len(search.groups), (4,) * len(search.layers), 0,
                                                          search.val_x, search.val_y)  # fmt: skip
    assert seen["budget"] == 0 and seen["scheme"] == search.scheme and seen["bits"] == search.bits_map((4,) * len(search.layers))
    assert 0.0 <= score.top1 <= 100.0 and score.loss > 0
    assert isinstance(score.loss, float) and torch.isfinite(torch.tensor(score.loss))
