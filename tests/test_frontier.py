"""The frontier benchmark's allocation: the cheapest moves of the sensitivity table until a size is met (issue 20)."""

from __future__ import annotations

import pytest

from small_nets import chain, separable

from edgeprune.bench.frontier import allocate_size
from edgeprune.ppo.pruning import taylor_groups
from edgeprune.ppo.search import CompressionSearch
from edgeprune.ppo.sensitivity import Predictor, Score, SensitivityTable

SHAPE = (3, 8, 8)
RATES, BITS = [0.0, 0.5], [8, 4, 2]


def table_for(search: CompressionSearch, layer_inc: list[list[float]], group_inc: list[list[float]]) -> SensitivityTable:
    score = lambda inc: Score(90 - 20 * (0.3 + inc), 0.3 + inc)  # noqa: E731
    return SensitivityTable(
        "0" * 16, {}, search.layer_names, [g.root for g in search.groups], RATES, BITS, score(0.0),
        [[score(v) for v in row] for row in layer_inc], [[score(v) for v in row] for row in group_inc],
    )  # fmt: skip


@pytest.fixture(scope="module")
def search() -> CompressionSearch:
    model = chain().eval()
    x, y = separable(128, seed=2)
    groups = taylor_groups(model, x[:64], y[:64], input_shape=SHAPE)
    return CompressionSearch(model, groups, x[:64], x[64:], y[64:], input_shape=SHAPE)


def fresh(search: CompressionSearch, table: SensitivityTable) -> tuple[CompressionSearch, Predictor]:
    s = CompressionSearch(search.model, search.groups, search.calib_x, search.val_x, search.val_y, input_shape=SHAPE)
    predictor = Predictor.fit(table, [])
    s.use_predictor(predictor.top1)
    return s, predictor


def test_each_size_is_met_and_a_smaller_size_never_costs_less_loss(search):
    layers, groups = len(search.layers), len(search.groups)
    table = table_for(search, [[0.0, 0.02 * (t + 1), 0.5] for t in range(layers)], [[0.0, 0.3]] * groups)
    s, predictor = fresh(search, table)
    losses = []
    for reduction in (4.5, 6.0, 8.0):
        rates, bits = allocate_size(s, table, reduction)
        assert s.evaluate(rates, bits).size_bytes <= s.reference.size_bytes / reduction
        losses.append(predictor.loss(rates, bits))
    assert losses == sorted(losses)


def test_the_cheapest_move_per_byte_is_taken_first(search):
    layers, groups = len(search.layers), len(search.groups)
    free = max(range(layers), key=lambda t: search.layers[t].params)  # the largest layer's 4 bits cost nothing
    layer_inc = [[0.0, 0.0 if t == free else 1.0, 2.0] for t in range(layers)]
    table = table_for(search, layer_inc, [[0.0, 3.0]] * groups)
    s, predictor = fresh(search, table)
    rates, bits = allocate_size(s, table, 4.1)  # 8 bits everywhere is 4x below fp32, plus scales
    assert rates == (0.0,) * groups
    assert [b for t, b in enumerate(bits) if b != 8] == [4] and bits[free] == 4


def test_a_size_the_tables_moves_cannot_reach_is_an_error(search):
    layers, groups = len(search.layers), len(search.groups)
    table = table_for(search, [[0.0, 0.1, 0.2]] * layers, [[0.0, 0.1]] * groups)
    s, predictor = fresh(search, table)
    with pytest.raises(ValueError, match="no move reaches the target gain"):
        allocate_size(s, table, 1000.0)


def test_min_bits_keeps_every_layer_at_or_above_it_and_still_meets_the_size(search):
    layers, groups = len(search.layers), len(search.groups)
    table = table_for(search, [[0.0, 0.2, 0.0]] * layers, [[0.0, 3.0]] * groups)  # 2 bits looks free, 4 bits does not
    s, _ = fresh(search, table)
    assert min(allocate_size(s, table, 6.0)[1]) == 2
    rates, bits = allocate_size(s, table, 6.0, min_bits=4)
    assert min(bits) == 4 and s.evaluate(rates, bits).size_bytes <= s.reference.size_bytes / 6.0
    with pytest.raises(ValueError, match="min_bits 9 is above every bit-width"):
        allocate_size(s, table, 6.0, min_bits=9)
