"""The greedy budgeted allocation both agents' search controls use (edgeprune.allocation)."""

from __future__ import annotations

import pytest

from edgeprune.allocation import allocate

# two units, two options each: "a" loses 1 per gain unit, "b" loses 3
EFFECTS = {("a", 1): (1.0, 1.0), ("a", 2): (2.0, 2.0), ("b", 1): (3.0, 1.0), ("b", 2): (6.0, 2.0)}


def test_cheapest_moves_first_and_a_later_option_replaces_the_earlier():
    assert allocate(EFFECTS, target_gain=1.0) == {"a": 1}
    assert allocate(EFFECTS, target_gain=2.0) == {"a": 2}  # a: 1 -> 2 (adds 1 drop for 1 gain), not a + b
    assert allocate(EFFECTS, target_gain=3.0) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="no move reaches the target gain 5"):
        allocate(EFFECTS, target_gain=5.0)


def test_a_drop_budget_stops_the_moves():
    assert allocate(EFFECTS) == {"a": 2, "b": 2}  # no budget: everything that gains
    assert allocate(EFFECTS, max_drop=2.0) == {"a": 2}
    assert allocate(EFFECTS, max_drop=4.9) == {"a": 2}  # b's first move would bring the drop to 5
    assert allocate(EFFECTS, max_drop=0.5) == {}


def test_ties_go_to_the_move_met_first_and_moves_without_gain_are_never_taken():
    tied = {("x", 1): (1.0, 1.0), ("y", 1): (1.0, 1.0), ("z", 1): (-1.0, 0.0)}
    assert allocate(tied, target_gain=1.0) == {"x": 1}
    assert allocate(dict(reversed(list(tied.items()))), target_gain=1.0) == {"y": 1}
    assert "z" not in allocate(tied)  # a free move with no gain buys nothing
