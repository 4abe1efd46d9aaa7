"""PPO prune + quantize: Taylor ranking, replayable plans (rewinding), the search, the env, the agent."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable

import pytest
import torch
from pydantic import ValidationError
from stable_baselines3.common.env_checker import check_env
from torch import nn

from small_nets import chain, separable, train_briefly

from edgeprune import fakequant
from edgeprune.config import load_params
from edgeprune.paths import ResultPaths, repo_root
from edgeprune.ppo.context import _fingerprint
from edgeprune.data import normalize
from edgeprune.envs.prune_quant import Episode, PruneQuantEnv
from edgeprune.models import create_model
from edgeprune.ppo.controls import greedy_search, random_search
from edgeprune.ppo.agent import greedy_episode, select_policy, train_agent, warm_start_logits
from edgeprune.ppo.params import PPOParams
from edgeprune.data import Split
from edgeprune.ppo import retrain as retrain_module
from edgeprune.ppo.pruning import apply_plan, make_plan, taylor_groups
from edgeprune.ppo.search import CompressionSearch, Outcome
from edgeprune.groups import channels_to_keep
from edgeprune.prune import recalibrate_bn
from edgeprune.recover import protocol
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover.protocol import Recovery
from edgeprune.train import evaluate

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return train_briefly(chain(), steps=40)


@pytest.fixture(scope="module")
def search(trained) -> CompressionSearch:
    x, y = separable(256, seed=2)
    groups = taylor_groups(trained, x[:64], y[:64], input_shape=SHAPE)
    return CompressionSearch(trained, groups, x[:64], x[64:], y[64:], input_shape=SHAPE)


def make_env(search: CompressionSearch, **kwargs) -> PruneQuantEnv:
    options = {"prune_rates": [0.0, 0.25, 0.5], "bits": [2, 4, 8], "accuracy_floor": search.reference.top1 - 5}
    return PruneQuantEnv(search, **{**options, **kwargs})


# --------------------------------------------------------------------------- Taylor pruning


def test_taylor_importance_ranks_a_zeroed_filter_last(trained):
    model = copy.deepcopy(trained)
    with torch.no_grad():  # filter 5 of the first conv produces nothing: weights, bias, BN affine all zero
        model[0].weight[5] = 0
        model[0].bias[5] = 0
        model[1].weight[5] = 0
        model[1].bias[5] = 0
    x, y = separable(128, seed=3)
    ordered = taylor_groups(model, x, y, input_shape=SHAPE)
    groups = {g.root: g for g in ordered}
    assert set(groups) == {"0", "3"}  # the classifier is not prunable
    assert groups["0"].members == ("0",)
    assert int(torch.argmin(groups["0"].importance)) == 5
    assert groups["0"].importance[5] < 1e-3 * groups["0"].importance.max()
    plan = make_plan(ordered, [1 / 16 if g.root == "0" else 0.0 for g in ordered])
    assert plan.to_json() == {"0": [5], "3": []}
    assert model[0].weight.grad is None  # gradients were taken on a copy


def test_pruning_plan_removes_channels_physically_and_keeps_the_output_shape():
    model = create_model("mobilenet_v3_small").eval()
    x = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    groups = taylor_groups(model, x, torch.randint(0, 10, (16,)))
    plan = make_plan(groups, [0.5] * len(groups), round_to=8)
    pruned = apply_plan(model, plan)
    assert sum(p.numel() for p in pruned.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for group in groups:  # every group kept exactly what the plan says, in every member layer
        kept = channels_to_keep(group.channels, 0.5, 8)
        for name in group.members:
            layer = pruned.get_submodule(name)
            assert (layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels) == kept


def test_rewinding_restores_the_saved_early_weights_of_surviving_channels(trained):
    early = chain(seed=7).eval()  # same architecture, other weights: the "rewind.pt" of the test
    x, y = separable(128, seed=3)
    groups = taylor_groups(trained, x, y, input_shape=SHAPE)
    plan = make_plan(groups, [0.5 if g.root == "0" else 0.25 for g in groups])
    final_pruned = apply_plan(trained, plan, SHAPE)
    rewound = apply_plan(early, plan, SHAPE)
    assert [t.shape for t in final_pruned.state_dict().values()] == [t.shape for t in rewound.state_dict().values()]
    kept0, kept1 = plan.kept("0", 16), plan.kept("3", 16)
    assert len(kept0) == 8 and len(kept1) == 12
    torch.testing.assert_close(rewound[0].weight, early[0].weight[kept0])
    torch.testing.assert_close(rewound[1].running_mean, early[1].running_mean[kept0])
    torch.testing.assert_close(rewound[3].weight, early[3].weight[kept1][:, kept0])
    torch.testing.assert_close(rewound[8].weight, early[8].weight[:, kept1])
    torch.testing.assert_close(final_pruned[3].weight, trained[3].weight[kept1][:, kept0])


def test_prune_rate_of_one_or_more_is_refused():
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="prune rate"):
            channels_to_keep(16, bad)
    assert channels_to_keep(16, 0.5) == 8 and channels_to_keep(16, 0.9) == 1
    assert channels_to_keep(20, 0.5, round_to=8) == 8 and channels_to_keep(6, 0.5, round_to=8) == 6
    # the nearest multiple of round_to, not the one below: 14 -> 16, 35 -> 32, 12 -> 16 (halves up), 21 -> 24
    assert channels_to_keep(16, 0.125, round_to=8) == 16 and channels_to_keep(40, 0.125, round_to=8) == 32
    assert channels_to_keep(16, 0.25, round_to=8) == 16 and channels_to_keep(24, 0.125, round_to=8) == 24
    assert channels_to_keep(16, 0.5, round_to=8) == 8 and channels_to_keep(1024, 0.9, round_to=8) == 104


def test_bn_recalibration_reestimates_running_statistics(trained):
    model = copy.deepcopy(trained)
    model[1].running_mean.fill_(100.0)
    x, _ = separable(64, seed=4)
    recalibrate_bn(model, x)
    with torch.no_grad():
        expected = model[0](normalize(x)).mean((0, 2, 3))
    torch.testing.assert_close(model[1].running_mean, expected, atol=1e-4, rtol=1e-4)
    assert model[1].momentum == trained[1].momentum and not model.training


@pytest.mark.parametrize("qat", [True, False])
def test_retrain_reestimates_bn_before_fine_tuning_only_when_channels_are_removed(trained, monkeypatch, qat):
    x, y = separable(128, seed=5)
    groups = taylor_groups(trained, x, y, input_shape=SHAPE)
    seen = []

    def record_start(model, *args, **kwargs):  # the fine-tune, replaced by a look at where it starts
        seen.append((model[1].running_mean.clone(), model[1].running_var.clone(), model[3].weight.shape[0]))

    monkeypatch.setattr(protocol, "fit", record_start)
    recovery = Recovery(FinetuneParams(budgets=[Budget(steps=1)], batch_size=32, calib_images=64), Split(x, y))
    bits = {"0": 4, "3": 4, "8": 4}
    pruning = [0.5 if g.root == "0" else 0.25 for g in groups]
    for rates in ([0.0] * len(groups), pruning):
        plan = make_plan(groups, rates)
        out = retrain_module.retrain(trained, plan, bits, recovery, seed=0, qat=qat, input_shape=SHAPE)
        assert not out.training and not any(m._forward_pre_hooks for m in out.modules())
    if not qat:  # unpruned and trained in float: nothing to recover, returned untouched (not trained)
        assert len(seen) == 1
        seen.insert(0, (trained[1].running_mean, trained[1].running_var, 16))
    (dense_mean, dense_var, width0), (pruned_mean, pruned_var, width1) = seen
    # unpruned: the dense statistics, untouched
    torch.testing.assert_close(dense_mean, trained[1].running_mean, rtol=0, atol=0)
    torch.testing.assert_close(dense_var, trained[1].running_var, rtol=0, atol=0)
    # pruned: re-estimated on the calibration images before the fine-tune starts
    reference = recalibrate_bn(apply_plan(trained, make_plan(groups, pruning), SHAPE), recovery.calib_x)
    assert (width0, width1) == (16, 12) and pruned_mean.shape == (8,)
    torch.testing.assert_close(pruned_mean, reference[1].running_mean)
    torch.testing.assert_close(pruned_var, reference[1].running_var)
    kept = make_plan(groups, pruning).kept("0", 16)
    assert not torch.allclose(pruned_var, trained[1].running_var[kept])


# --------------------------------------------------------------------------- search, env, agent


def test_search_keeps_dense_bn_statistics_unless_channels_are_removed(search):
    search.uniform(0.0, 8)
    search.uniform(0.5, 8)
    unpruned, _, _ = search._models[(0.0,) * len(search.groups)]
    pruned, _, _ = search._models[(0.5,) * len(search.groups)]
    dense_bn = search.model[1]
    torch.testing.assert_close(unpruned[1].running_var, dense_bn.running_var, rtol=0, atol=0)
    assert unpruned[1].num_batches_tracked == dense_bn.num_batches_tracked > 1
    # pruned: reset and re-estimated in one pass over the 64 calibration images
    assert pruned[1].running_var.shape == (8,) and pruned[1].num_batches_tracked == 1


def test_search_caches_by_action_and_counts_bits_in_the_size(search):
    dense8 = search.uniform(0.0, 8)
    before = search.evaluations
    assert search.uniform(0.0, 8) == dense8 and search.evaluations == before
    dense4 = search.uniform(0.0, 4)
    pruned8 = search.uniform(0.5, 8)
    assert dense4.size_bytes < dense8.size_bytes < search.reference.size_bytes
    assert pruned8.params < dense8.params and pruned8.size_bytes < dense8.size_bytes
    assert abs(dense8.top1 - search.reference.top1) <= 3.0
    with pytest.raises(ValueError, match="group prune rates"):
        search.evaluate([0.0], [8] * len(search.layers))


@pytest.mark.parametrize("clip", ["max", "mse"])
def test_search_quantizes_as_its_scheme_says(trained, clip):
    """Weight-only: no input quantizer, no activation histogram, and top-1 equal to the weight-only
    fake-quantized model's with the scheme's clipping; the clip ratios are chosen once per layer and bits."""
    x, y = separable(256, seed=2)
    groups = taylor_groups(trained, x[:64], y[:64], input_shape=SHAPE)
    scheme = fakequant.QuantScheme(clip, activations=False)
    weights_only = CompressionSearch(trained, groups, x[:64], x[64:], y[64:], input_shape=SHAPE, scheme=scheme)
    bits = (3,) * len(weights_only.layers)
    outcome = weights_only.evaluate((0.0,) * len(groups), bits)
    _, hists, memo = weights_only._models[(0.0,) * len(groups)]
    assert hists == {} and sorted(memo) == sorted((name, 3) for name in weights_only.layer_names)
    expected = fakequant.quantize_model(trained, weights_only.bits_map(bits), weight_clip=clip)
    assert outcome.top1 == evaluate(expected, x[64:], y[64:], batch_size=256)
    assert scheme.label == "weights" and fakequant.QuantScheme().label == "weights+activations"


def test_env_passes_check_env_and_rewards_performance_density(search):
    env = make_env(search)
    check_env(env)
    assert env.observation_space.shape == (15,)
    obs, _ = env.reset(seed=0)
    reward, done, steps = 0.0, False, 0
    while not done:  # no pruning, 8 bits everywhere
        obs, reward, done, truncated, info = env.step([0, 2])
        steps += 1
        assert env.observation_space.contains(obs) and not truncated
    assert steps == len(search.layers) == 3
    expected = search.uniform(0.0, 8)
    assert info["top1"] == expected.top1 and info["size_mb"] == expected.size_mb
    assert reward == pytest.approx(expected.density / search.reference.density)
    assert env.episodes[-1].feasible


def test_random_search_spends_exactly_its_budget_reproducibly_through_the_env(search):
    env, again, other = make_env(search), make_env(search), make_env(search)
    env.reset(seed=0)
    env.step([0, 2])  # an unfinished episode before the control runs is not counted
    episodes = random_search(env, episodes=5, seed=7)
    assert len(episodes) == 5 and episodes == env.episodes[-5:]
    actions = [(e.rates, e.bits) for e in episodes]
    assert actions == [(e.rates, e.bits) for e in random_search(again, episodes=5, seed=7)]
    assert actions != [(e.rates, e.bits) for e in random_search(other, episodes=5, seed=8)]
    assert all(set(e.bits) <= {2, 4, 8} and set(e.rates) <= {0.0, 0.25, 0.5} for e in episodes)
    assert all(e.reward == pytest.approx(env.reward(e.outcome)) for e in episodes)  # the agent's own reward
    with pytest.raises(ValueError, match="at least one episode"):
        random_search(env, episodes=0, seed=0)
    with pytest.raises(ValidationError, match="controls"):
        PPOParams(controls=["grid"])


def test_greedy_search_scores_the_largest_moves_first_and_allocates_above_the_floor(search):
    """Each move scored alone from the mildest configuration (no pruning, 8 bits), the largest possible
    saving first within the budget; the allocation last; the predicted top-1 above the floor; no randomness."""
    env = make_env(search)
    episodes = greedy_search(env, episodes=6, seed=0)
    assert len(episodes) == 6 and episodes == env.episodes[-6:]
    mild = ((0.0,) * len(search.groups), (8,) * len(search.layers))
    for probe in episodes[:-1]:  # one move each: one group's rate or one layer's bit-width
        changed = sum(r != m for r, m in zip(probe.rates, mild[0])) + sum(b != m for b, m in zip(probe.bits, mild[1]))
        assert changed == 1
    largest = max(search.layers, key=lambda la: la.params)
    assert any(p.bits[search.layers.index(largest)] == 2 for p in episodes[:-1])  # 2 bits on the largest layer
    base = search.evaluate(*mild)
    drops = {(p.rates, p.bits): base.top1 - p.outcome.top1 for p in episodes[:-1]}
    final = episodes[-1]
    taken = [p for p in episodes[:-1] if all(  # the moves the allocation contains
        fr == pr or pr == m for fr, pr, m in zip(final.rates, p.rates, mild[0])) and all(
        fb == pb or pb == m for fb, pb, m in zip(final.bits, p.bits, mild[1]))]  # fmt: skip
    assert base.top1 - sum(drops[(p.rates, p.bits)] for p in taken) >= env.accuracy_floor - 1e-9
    again = greedy_search(make_env(search), episodes=6, seed=5)
    assert [(e.rates, e.bits) for e in again] == [(e.rates, e.bits) for e in episodes]
    with pytest.raises(ValueError, match="at least two episodes"):
        greedy_search(env, episodes=1, seed=0)


def test_env_penalises_every_point_below_the_floor(search):
    env = make_env(search, accuracy_floor=search.reference.top1, penalty=2.0)
    below = Outcome(search.reference.top1 - 3.0, 1000, 10)
    assert env.reward(below) == pytest.approx(below.density / search.reference.density - 6.0)


def test_env_refuses_bad_bits_rates_and_floor(search):
    with pytest.raises(ValueError, match="bit-width"):
        make_env(search, bits=[4, 9])
    with pytest.raises(ValueError, match="bit-width"):
        make_env(search, bits=[1, 8])
    with pytest.raises(ValueError, match=r"prune rates must be in \[0, 1\)"):
        make_env(search, prune_rates=[0.0, 1.0])
    with pytest.raises(ValueError, match="above the dense model"):
        make_env(search, accuracy_floor=search.reference.top1 + 0.5)
    env = make_env(search)
    env.reset()
    with pytest.raises(ValueError, match="outside"):
        env.step([3, 0])


def test_params_refuse_bad_bits_rates_and_partial_updates():
    with pytest.raises(ValidationError, match="bit-width"):
        PPOParams(bits=[4, 8, 12])
    with pytest.raises(ValidationError, match="prune rates must be in"):
        PPOParams(prune_rates=[0.0, 1.0])
    with pytest.raises(ValidationError, match="multiple of episodes_per_update"):
        PPOParams(episodes=5, episodes_per_update=2)
    with pytest.raises(ValidationError, match="extra"):
        PPOParams(episode=4)
    with pytest.raises(ValidationError, match="weight_clip"):
        PPOParams(weight_clip="entropy")
    with pytest.raises(ValidationError, match="quantize"):
        PPOParams(quantize="activations")


def episode(top1: float, size: int, feasible: bool, bits: int = 8) -> Episode:
    return Episode((0.0,), (bits,), Outcome(top1, size, 1), 0.0, feasible)


def test_select_policy_takes_the_densest_finalist_confirmed_on_fresh_images():
    small_bad, big_good, small_good = episode(10, 100, False, 2), episode(90, 1000, True, 8), episode(85, 500, True, 4)
    fresh = {8: 89.0, 4: 84.0, 2: 9.0}  # top-1 on the selection images, by bit-width
    rescored = []

    def score(e: Episode) -> float:
        rescored.append(e)
        return fresh[e.bits[0]]

    chosen, finalists = select_policy([small_bad, big_good, small_good, small_good], score, 80.0, finalists=4)
    assert chosen is small_good and [f.episode for f in finalists] == [small_good, big_good]  # density order, no repeat
    assert rescored == [small_good, big_good] and all(f.confirmed for f in finalists)
    # the densest feasible one fails on fresh images: the next one is chosen
    chosen, finalists = select_policy([small_bad, big_good, small_good], score, 86.0, finalists=2)
    assert chosen is big_good and [f.confirmed for f in finalists] == [False, True]
    # one finalist only: the search's densest, kept as the most accurate even when unconfirmed
    chosen, finalists = select_policy([big_good, small_good], score, 95.0, finalists=1)
    assert chosen is small_good and len(finalists) == 1 and not finalists[0].confirmed
    # nothing feasible: the most accurate episode
    chosen, _ = select_policy([small_bad, episode(20, 900, False, 4)], score, 50.0, finalists=3)
    assert chosen.outcome.top1 == 20
    with pytest.raises(ValueError, match="finalists"):
        select_policy([big_good], score, 0.0, finalists=0)


def test_search_rescores_the_same_compressed_model_on_other_images(search):
    rates, bits = (0.25,) * len(search.groups), (4,) * len(search.layers)
    outcome = search.evaluate(rates, bits)
    assert search.top1_on(rates, bits, search.val_x, search.val_y) == outcome.top1
    x, y = separable(96, seed=9)
    assert search.dense_top1_on(search.val_x, search.val_y) == search.reference.top1
    assert 0.0 <= search.top1_on(rates, bits, x, y) <= 100.0 and search.evaluations == len(search._outcomes)


def test_ppo_trains_and_extracts_a_policy(search, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger makes a folder
    env = make_env(search)
    agent = train_agent(env, episodes=4, episodes_per_update=2, n_epochs=2, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []  # no stray SB3-* log folder
    greedy = greedy_episode(agent, env)
    chosen, finalists = select_policy(env.episodes, lambda e: e.outcome.top1, env.accuracy_floor, finalists=2)
    assert len(env.episodes) == 5 and env.episodes[-1] is greedy
    feasible = [e for e in env.episodes if e.feasible]
    if feasible:
        assert chosen.feasible and chosen.outcome.density == max(e.outcome.density for e in feasible)
        assert finalists[0].episode is chosen and finalists[0].confirmed


def test_warm_start_begins_at_the_mildest_compression(search):
    env = make_env(search, prune_rates=[0.5, 0.0, 0.25], bits=[4, 8, 2])
    logits = warm_start_logits(env, 2.0)
    assert logits.tolist() == [-4.0, 0.0, -2.0, -2.0, 0.0, -4.0]
    # a vanishing learning rate leaves the initial policy as it was
    agent = train_agent(
        env, episodes=1, episodes_per_update=1, n_epochs=1, learning_rate=1e-12, warm_start=2.0, progress=False
    )
    episode = greedy_episode(agent, env)
    assert set(episode.rates) == {0.0} and set(episode.bits) == {8}


def test_compare_judges_the_control_by_ppos_penalised_objective_not_density_alone():
    from edgeprune.stages import ppo as ppo_stage

    def row(method, setting, top1, mb, density, budget=0):
        return {"method": method, "setting": setting, "budget": budget, "recovery_steps": 8, "top1": top1,
                "size_bytes": mb * 1e6, "bits": 8.0, "sparsity_realised": 0.0,
                "extra": {"density_pct_per_mb": density, "prune_rate": 0.0, "top1_float": top1}}  # fmt: skip

    record = {
        "seed": 0, "dense_seed": 0, "accuracy_floor": 78.0, "dense_search": {"top1": 80.0},
        "dense_test": {"top1": 75.0, "size_bytes": 6e6},
        "rows": [row("ppo", "policy-ft", 74.0, 2.0, 37.0), row("static_pq", "uniform-8bit", 74.5, 1.5, 49.7),
                 row("ppo", "policy-lth", 70.0, 2.0, 35.0), row("random_search", "random-ft", 60.0, 0.5, 120.0)],
    }  # fmt: skip
    comp = ppo_stage.compare([record], penalty=1.0).iloc[0]
    dense_density = 75.0 / 6.0  # the test floor is 75 - (80 - 78) = 73: PPO meets it, the control is 13 points under
    assert comp.ppo_reward == pytest.approx(37.0 / dense_density)
    assert comp.random_reward == pytest.approx(120.0 / dense_density - 13.0)
    assert comp.density_gain_vs_random_pct < 0 < comp.reward_gain_vs_random  # denser, but far below the floor


def test_a_seed_checkpoint_is_not_resumed_after_any_module_the_stage_runs_changes(tmp_path):
    """The resume fingerprint hashes the stage's whole import closure: editing a module that only the
    stage's imports reach (edgeprune/clipping.py, through fakequant) changes it."""
    repo = tmp_path / "repo"
    shutil.copytree(repo_root() / "lib" / "edgeprune", repo / "lib" / "edgeprune",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    paths = ResultPaths.at(tmp_path / "results")
    dense = paths.dense("mobilenet_v3_small", 0)
    dense.mkdir(parents=True)
    for which in ("model", "rewind"):
        (dense / f"{which}.pt").write_bytes(b"weights")
    params = load_params(repo_root() / "lib/edgeprune/profiles/tiny.yaml")
    before = _fingerprint(params, paths, "mobilenet_v3_small", 0, repo=repo)
    assert _fingerprint(params, paths, "mobilenet_v3_small", 0, repo=repo) == before
    with open(repo / "lib/edgeprune/clipping.py", "a") as f:
        f.write("\n# changed\n")
    assert _fingerprint(params, paths, "mobilenet_v3_small", 0, repo=repo) != before


def _additive(search: CompressionSearch, costly: int) -> Callable:
    """A predictor losing 0.1 pt per bit below 8 on every layer, 40 pt per bit on layer ``costly``, 10 pt per unit of rate."""
    def predict(rates, bits):
        return 80.0 - sum((8 - b) * (40.0 if t == costly else 0.1) for t, b in enumerate(bits)) - 10.0 * sum(rates)
    return predict


def test_relax_regains_the_floor_with_the_cheapest_moves_first(search):
    from edgeprune.ppo.repair import relax

    layers, costly = search.layers, min(range(len(search.layers)), key=lambda t: search.layers[t].params)
    predict = _additive(search, costly)
    options = dict(prune_rates=[0.0, 0.25, 0.5], bit_options=[2, 4, 8])
    rates, bits = (0.5,) * len(search.groups), (2,) * len(layers)
    floor = predict((0.5,) * len(search.groups), tuple(8 if t == costly else 2 for t in range(len(layers)))) - 1e-9
    relaxed_rates, relaxed_bits = relax(predict, layers, rates, bits, floor=floor, **options)
    assert predict(relaxed_rates, relaxed_bits) >= floor
    assert relaxed_bits[costly] == 8 and relaxed_rates == rates  # the one layer that costs most per byte, nothing else
    assert sorted(b for t, b in enumerate(relaxed_bits) if t != costly) == [2] * (len(layers) - 1)
    assert relax(predict, layers, relaxed_rates, relaxed_bits, floor=floor, **options) == (relaxed_rates, relaxed_bits)
    mildest = relax(predict, layers, rates, bits, floor=1000.0, **options)  # unreachable: everything relaxed
    assert mildest == ((0.0,) * len(search.groups), (8,) * len(layers))


def test_env_with_repair_rewards_the_relaxed_configuration(trained):
    x, y = separable(256, seed=2)
    groups = taylor_groups(trained, x[:64], y[:64], input_shape=SHAPE)
    predicted = CompressionSearch(trained, groups, x[:64], x[64:], y[64:], input_shape=SHAPE)
    with pytest.raises(ValueError, match="ppo.signal: sensitivity"):
        make_env(predicted, repair=True)
    costly = min(range(len(predicted.layers)), key=lambda t: predicted.layers[t].params)
    predicted.use_predictor(_additive(predicted, costly))
    env = make_env(predicted, repair=True, accuracy_floor=60.0)
    env.reset()
    done = False
    while not done:
        _, reward, done, _, _ = env.step([2, 0])  # 50 % of channels, 2 bits everywhere: far below the floor
    episode = env.episodes[-1]
    assert episode.feasible and episode.outcome.top1 >= 60.0 and episode.bits[costly] > 2
    assert reward == pytest.approx(env.reward(episode.outcome))
    with pytest.raises(ValueError, match="repair needs signal: sensitivity"):
        PPOParams(signal="ptq", repair=True)
