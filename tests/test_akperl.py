"""AKPERL: pruning units, layer weights and coefficient grids, convergence, the agent, the switching controller."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from edgeprune.akperl.controls import allocate, greedy_search, random_search
from edgeprune.akperl.agent import grid_search, select_coefficients, steps_to_fraction, train_agent
from edgeprune import streams
from edgeprune.akperl.dynamic import SwitchingNetwork, make_index_stream, run_stream
from edgeprune.akperl.params import LEVELS, AkperlParams, DQNParams
from edgeprune.akperl.reward import RewardCoefficients, coefficient_grid, layer_weights
from edgeprune.akperl.task import batch_stats
from edgeprune.akperl.units import apply_levels, channel_sparsity, find_units, legal_level
from edgeprune.data import apply_condition, normalize
from edgeprune.models import create_model
from edgeprune.stages import akperl as akperl_stage

from akperl_helpers import SHAPE, images


# --------------------------------------------------------------------------- units


def test_mobilenet_units_follow_the_forward_order_and_only_skip_blocks_can_go():
    model = create_model("mobilenet_v3_small").eval()
    units = find_units(model, min_mac_share=0.01)
    assert [u.position for u in units] == sorted(u.position for u in units)
    assert all(u.mac_share >= 0.01 for u in units)
    skip_blocks = {f"features.{i}" for i in (3, 5, 6, 8, 10, 11)}  # inverted residuals with identity skips
    assert {u.block for u in units if u.block} == skip_blocks
    assert sum(u.block is not None for u in units) == len(skip_blocks)  # one removing unit per block
    se = next(u for u in units if u.name == "features.10.block.2.fc1")
    assert se.block is None and legal_level(se, 4) == 3  # a squeeze-excitation conv cannot remove its block
    pruned = apply_levels(model, units, [2] * len(units))
    assert 0.4 < channel_sparsity(model, pruned) < 0.6
    assert pruned(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_apply_levels_refuses_a_wrong_number_of_levels(task):
    with pytest.raises(ValueError, match="3 levels for 4 units"):
        apply_levels(task.model, task.units, [1, 1, 1], SHAPE)


def test_channel_sparsity_counts_a_removed_block_as_removed(task):
    pruned = apply_levels(task.model, task.units, [0, 4, 0, 0], SHAPE)
    assert isinstance(pruned[3], nn.Identity)
    # prunable output channels: stem 8 + block 8 + 8 + conv 12 + linear 16 = 52; the block's 16 are gone
    assert channel_sparsity(task.model, pruned, input_shape=SHAPE) == pytest.approx(16 / 52)


# --------------------------------------------------------------------------- reward coefficients


def test_layer_weights_by_mac_share_uniform_and_by_name(task):
    w = layer_weights(task.units)
    shares = np.array([u.mac_share for u in task.units])
    np.testing.assert_allclose(w, shares / shares.sum())
    assert layer_weights(task.units, "uniform") == (0.25,) * 4
    named = layer_weights(task.units, {"0": 2, "3.conv1": 1, "4": 1, "9": 0})
    assert named == (0.5, 0.25, 0.25, 0.0)
    with pytest.raises(KeyError, match=r"unknown layer\(s\) \['fc'\]"):
        layer_weights(task.units, {"0": 1, "3.conv1": 1, "4": 1, "9": 1, "fc": 1})
    with pytest.raises(KeyError, match=r"missing layer\(s\) \['9'\]"):
        layer_weights(task.units, {"0": 1, "3.conv1": 1, "4": 1})


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (([], [0.5], [0.1]), "alpha is empty"),
        (([1.0], [0.5, 0.5], [0.1]), "beta has duplicates"),
        (([0.0], [0.5], [0.1]), "alpha values must be > 0"),
        (([1.0], [0.5], [-0.1]), "gamma values must be >= 0"),
    ],
)
def test_invalid_coefficient_grids_are_refused(grid, message, task):
    with pytest.raises(ValueError, match=message):
        coefficient_grid(*grid)
    with pytest.raises(ValueError, match=message):  # before any agent is trained
        grid_search(task, grid, weights=layer_weights(task.units), lam=0.0, target_sparsity=0.5, dqn=DQNParams(), steps=10, seed=0)


def test_coefficient_grid_and_params_validation():
    assert coefficient_grid([1.0], [0.0, 0.5], [0.1]) == [(1.0, 0.0, 0.1), (1.0, 0.5, 0.1)]
    with pytest.raises(ValueError, match="alpha"):
        RewardCoefficients(0.0, 0.5, 0.1, 0.0, (1.0,))
    with pytest.raises(ValueError, match="sum to 1"):
        RewardCoefficients(1.0, 0.5, 0.1, 0.0, (0.5, 0.2))
    for bad in ({"alpha": [0.0]}, {"beta": [-1.0]}, {"gamma": [0.1, 0.1]}, {"conditions": []}, {"conditions": ["fog"]}):
        with pytest.raises(ValidationError):
            AkperlParams(**bad)
    with pytest.raises(ValidationError, match="unknown device profile"):
        AkperlParams(power_profile="pdp11")


# --------------------------------------------------------------------------- convergence and selection


def test_steps_to_fraction_on_a_known_curve():
    steps = np.arange(1, 21) * 10
    rewards = np.r_[np.linspace(0.0, 1.0, 10), np.ones(10)]  # rises for 10 episodes, then flat at 1
    # window 1: the first reward >= 0.99 is the 10th (exactly 1.0)
    assert steps_to_fraction(steps, rewards, window=1) == 100
    assert steps_to_fraction(steps, -2 + rewards, window=1) == 100  # final -1: reaching means >= -1.01
    assert steps_to_fraction([], []) is None
    with pytest.raises(ValueError, match="length"):
        steps_to_fraction([1, 2], [0.5])


def test_select_coefficients_prefers_accuracy_among_sparse_enough():
    table = pd.DataFrame({"val_acc": [0.9, 0.8, 0.7], "sparsity": [0.2, 0.5, 0.6]})
    assert select_coefficients(table, 0.45) == 1
    assert select_coefficients(table, 0.9) == 2  # none reaches it: the sparsest


def test_train_agent_logs_episodes_and_reads_a_policy_per_condition(task, tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where SB3's default logger makes a folder
    coef = RewardCoefficients(1.0, 0.5, 0.1, 0.01, layer_weights(task.units))
    dqn = DQNParams(steps=40, learning_starts=10, batch_size=8, target_update_interval=10)
    run = train_agent(task, coef, dqn=dqn, steps=40, seed=0, stats_batch=8, live_dir=tmp_path / "live")
    assert len(run.episodes) == 10 and run.episodes.step.iloc[-1] == 40  # 4 units: a removed block skips no other unit
    assert np.isfinite(run.episodes[["R", "return", "q_max"]].to_numpy()).all()
    assert list(run.policy.condition) == ["clean", "low_light"]
    assert all(len(levels) == 4 for levels in run.policy.levels)
    assert (tmp_path / "live" / "metrics.json").is_file()
    assert run.steps_to_99 is not None and run.steps_to_99 <= 40
    assert list((tmp_path / "tmp").iterdir()) == []  # no stray SB3-* log folder


def test_random_search_is_reproducible_spends_its_budget_and_keeps_the_best_reward(task):
    coef = RewardCoefficients(1.0, 0.5, 0.1, 0.01, layer_weights(task.units))
    run = random_search(task, coef, episodes=6, seed=3, min_sparsity=0.3, stats_batch=8)
    again = random_search(task, coef, episodes=6, seed=3, min_sparsity=0.3, stats_batch=8)
    other = random_search(task, coef, episodes=6, seed=4, min_sparsity=0.3, stats_batch=8)
    assert len(run.episodes) == 6 and list(run.episodes.episode) == list(range(1, 7))  # exactly the budget
    assert list(run.episodes.levels) == list(again.episodes.levels) != list(other.episodes.levels)
    assert (run.episodes.sparsity >= 0.3).all()  # the agent's floor holds for the control too
    assert run.best.R == run.episodes.R.max() and len(run.levels) == len(task.units)
    assert run.summary()["episodes"] == 6 and run.condition == "clean"


def test_random_search_scores_configurations_that_remove_a_block():
    """A draw of 100 % on a block's first unit removes the block; the env then skips the block's later
    units (here its squeeze-excitation conv), and the control must not ask for their levels (it did, and
    failed at the quick profile's AKPERL stage, once the board energy model changed the agent's budget)."""
    from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig

    from edgeprune.akperl.task import PruningTask
    from edgeprune.akperl.units import REMOVE_BLOCK
    from edgeprune.data import Split

    torch.manual_seed(0)
    block = InvertedResidual(InvertedResidualConfig(8, 3, 16, 8, True, "RE", 1, 1, 1.0), nn.BatchNorm2d)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), block,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()  # fmt: skip
    x, y = images(40, 0)
    task = PruningTask.build(model, val=Split(x[:16], y[:16]), calib_x=x[16:32], stats_x=x[32:], conditions=["clean"],
                             input_shape=SHAPE)  # fmt: skip
    assert [u.block for u in task.units][:2] == [None, "3"] and len(task.units) == 3  # the SE conv sits inside "3"
    coef = RewardCoefficients(1.0, 0.5, 0.1, 0.01, layer_weights(task.units))
    run = random_search(task, coef, episodes=12, seed=0, stats_batch=8)
    removed = [levels for levels in run.episodes.levels if levels[1] == REMOVE_BLOCK]
    assert removed and all(len(levels) == len(task.units) for levels in run.episodes.levels)


def test_greedy_allocation_takes_the_cheapest_moves_to_the_target():
    """Unit 0 loses 1 pt per 10 % of sparsity, unit 1 loses 4: unit 0 goes as far as it can first."""
    gains = np.array([[0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.3]])
    drops = np.array([[0.0, 0.01, 0.02, 0.03], [0.0, 0.04, 0.08, 0.12]])
    assert allocate(drops, gains, 0.2) == [2, 0]
    assert allocate(drops, gains, 0.4) == [3, 1]
    with pytest.raises(ValueError, match="unreachable"):
        allocate(drops, gains, 0.7)


def test_greedy_search_meets_the_agents_sparsity_target_on_the_tiny_resnet(task):
    coef = RewardCoefficients(1.0, 0.5, 0.1, 0.01, layer_weights(task.units))
    run = greedy_search(task, coef, seed=0, min_sparsity=0.3, stats_batch=8)
    assert len(run.episodes) == len(task.units) * 3 + 1  # 25 / 50 / 75 % of every unit alone, then the allocation
    assert run.best.equals(run.episodes.iloc[-1]) and run.summary()["episodes"] == len(run.episodes)
    assert run.best.sparsity >= 0.3 - 1e-9 and len(run.levels) == len(task.units)
    assert max(run.levels) < len(LEVELS) - 1  # no block removal among its moves
    again = greedy_search(task, coef, seed=0, min_sparsity=0.3, stats_batch=8)
    assert again.levels == run.levels  # deterministic
    with pytest.raises(ValueError, match="sparsity target"):
        greedy_search(task, coef, seed=0, min_sparsity=None, stats_batch=8)
    with pytest.raises(ValidationError, match="enforce_target_sparsity"):
        AkperlParams(controls=["greedy"], enforce_target_sparsity=False)


def test_controls_refuse_a_zero_budget_an_unknown_condition_and_an_unknown_name(task):
    coef = RewardCoefficients(1.0, 0.5, 0.1, 0.01, layer_weights(task.units))
    with pytest.raises(ValueError, match="budget of at least one episode"):
        random_search(task, coef, episodes=0, seed=0)
    with pytest.raises(KeyError, match="fog"):
        random_search(task, coef, episodes=1, seed=0, condition="fog")
    with pytest.raises(ValidationError, match="controls"):
        AkperlParams(controls=["greedy_oracle"])


def test_control_gap_differences_top1_and_sparsity_per_seed_and_budget():
    rows = pd.DataFrame([
        {"method": m, "seed": seed, "recovery_steps": steps, "top1": top1 + seed + (steps == 64), "sparsity_realised": sp}
        for seed in range(3) for steps in (8, 64)
        for m, top1, sp in (("akperl", 70.0, 0.50), ("random_search", 69.0, 0.46), ("l1_filter", 60.0, 0.50))
    ])  # fmt: skip
    gap = akperl_stage.control_gap(rows)
    assert list(gap["recovery steps"]) == [8, 64] and set(gap["control"]) == {"random_search"}
    assert gap["AKPERL − control top-1 (pt)"].str.startswith("1.00 ± 0.00").all()
    assert gap["AKPERL − control sparsity (pt)"].str.startswith("4.00 ± 0.00").all() and (gap["seeds"] == 3).all()


def _stream_rows(accuracy: dict[str, dict[str, float]], conditions: list[str]) -> pd.DataFrame:
    """One row per (method, batch): ``accuracy[method][condition]`` on every batch of that condition."""
    return pd.DataFrame([
        {"method": m, "batch": i, "condition": c, "network": m, "top1": acc[c], "latency_ms": 1.0 + i}
        for m, acc in accuracy.items() for i, c in enumerate(conditions)
    ])  # fmt: skip


def test_oracle_picks_each_conditions_best_bank_network_and_bounds_every_arm():
    conditions = ["clean", "clean", "fog", "fog", "fog", "clean"]
    frame = _stream_rows({"bank:a": {"clean": 80.0, "fog": 40.0}, "bank:b": {"clean": 70.0, "fog": 60.0},
                          "akperl_dynamic": {"clean": 75.0, "fog": 55.0}}, conditions)  # fmt: skip
    out = streams.hindsight_arms(frame, ["bank:a", "bank:b"])
    oracle = out[out.method == "oracle"].sort_values("batch")
    assert list(oracle.network) == ["bank:a" if c == "clean" else "bank:b" for c in conditions]
    assert list(oracle.latency_ms) == [1.0 + i for i in range(6)]  # the chosen arm's rows, latency included
    best = out[out.method == "best_static"]
    assert set(best.network) == {"bank:b"} and best.top1.mean() == 65.0  # b: 65 over the stream, a: 60
    means = out.groupby("method").top1.mean()
    assert means["oracle"] == 70.0 and means["oracle"] >= means.drop("oracle").max()
    gaps = streams.switching_gaps(out.assign(seed=0), "akperl_dynamic").iloc[0]
    assert gaps["controller − best static (pt)"].startswith("0.00") and gaps["oracle − best static (pt)"].startswith("5.00")


def test_hindsight_arms_refuse_one_condition_and_a_missing_bank():
    frame = _stream_rows({"bank:a": {"clean": 80.0}}, ["clean", "clean"])
    with pytest.raises(ValueError, match="at least two conditions"):
        streams.hindsight_arms(frame, ["bank:a"])
    with pytest.raises(ValueError, match="missing"):
        streams.hindsight_arms(frame, ["bank:z"])


# --------------------------------------------------------------------------- the switching controller


class Constant(nn.Module):
    """Predicts one class whatever the input: which network ran is visible in the output."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(x),), self.label), 4).float()


def test_controller_switches_networks_when_the_stream_condition_changes():
    x, _ = images(64, 1)
    reference = {c: batch_stats(apply_condition(x, c)) for c in ("clean", "low_light")}
    net = SwitchingNetwork({"full": Constant(0), "slim": Constant(1)}, {"clean": "full", "low_light": "slim"}, reference)
    stream = make_index_stream(["clean", "low_light"], 64, segments=4, batches_per_segment=3, batch_size=16, seed=0)
    conditions = [b.condition for b in stream]
    assert conditions[::3] in (["clean", "low_light"] * 2, ["low_light", "clean"] * 2)
    outputs = [net(normalize(apply_condition(x[b.idx], b.condition, seed=b.index))).argmax(1) for b in stream]
    expected = [0 if c == "clean" else 1 for c in conditions]
    assert [int(o[0]) for o in outputs] == expected and all((o == o[0]).all() for o in outputs)
    assert [h[0] for h in net.history] == conditions
    assert net.switches == 3  # one switch at each of the three segment boundaries


def test_run_stream_reports_each_batch_of_each_method():
    x, y = images(64, 2)
    reference = {c: batch_stats(apply_condition(x, c)) for c in ("clean", "low_light")}
    switching = SwitchingNetwork({"a": Constant(0), "b": Constant(1)}, {"clean": "a", "low_light": "b"}, reference)
    stream = make_index_stream(["clean", "low_light"], 64, segments=2, batches_per_segment=2, batch_size=8, seed=1)
    frame = run_stream({"dyn": switching, "static": Constant(0)}, stream, x, y, describe=lambda m: {"label": m.label})
    assert len(frame) == 8 and set(frame.method) == {"dyn", "static"}
    dyn = frame[frame.method == "dyn"]
    assert list(dyn.network) == ["a" if c == "clean" else "b" for c in dyn.condition]
    assert list(dyn.label) == [0 if c == "clean" else 1 for c in dyn.condition]
    np.testing.assert_allclose(dyn.top1, [100 * float((y[b.idx] == lab).float().mean()) for b, lab in zip(stream, dyn.label)])
    assert (frame.latency_ms > 0).all()


def test_controller_and_stream_refuse_bad_input():
    reference = {"clean": np.zeros(6, dtype=np.float32)}
    with pytest.raises(KeyError, match="missing_net"):
        SwitchingNetwork({"a": Constant(0)}, {"clean": "missing_net"}, reference)
    with pytest.raises(KeyError, match="low_light"):
        SwitchingNetwork({"a": Constant(0)}, {"clean": "a", "low_light": "a"}, reference)
    with pytest.raises(ValueError, match="conditions is empty"):
        make_index_stream([], 10, segments=1, batches_per_segment=1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        make_index_stream(["clean"], 4, segments=1, batches_per_segment=1, batch_size=8)
