"""The AKPERL gymnasium environment: API conformity, physical pruning, reward, observation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

from edgeprune.akperl.reward import RewardCoefficients, layer_weights
from edgeprune.akperl.task import PruningTask, batch_stats, canonical_key
from edgeprune.akperl.units import LEVELS, apply_levels, channel_sparsity
from edgeprune.data import Split
from edgeprune.envs.akperl import OBS_SIZE, AkperlEnv
from edgeprune.power.model import estimate

from akperl_helpers import SHAPE, images, tiny_resnet


def coefficients(task: PruningTask, **kw) -> RewardCoefficients:
    values = {"alpha": 1.0, "beta": 0.5, "gamma": 0.3, "lam": 0.02} | kw
    return RewardCoefficients(**values, weights=layer_weights(task.units))


def make_env(task: PruningTask, **kw) -> AkperlEnv:
    return AkperlEnv(task, coefficients(task), stats_batch=8, **kw)


def test_units_of_the_tiny_model(task):
    names = [u.name for u in task.units]
    # stem (coupled to the block's second conv and the next conv's input), the block's first conv, the stride-2 conv, the hidden linear
    assert names == ["0", "3.conv1", "4", "9"]
    assert [u.block for u in task.units] == [None, "3", None, None]
    assert task.units[0].layers == ("0", "3.conv1", "3.conv2", "4")
    assert task.units[0].producers == ("0", "3.conv2")  # the block's second conv adds into the stem's channels
    assert [u.producers for u in task.units[1:]] == [("3.conv1",), ("4",), ("9",)]


def test_env_passes_gymnasium_checker(task):
    check_env(make_env(task), skip_render_check=True)
    check_env(make_env(task, input_stats=False, accuracy_every=2), skip_render_check=True)


def test_a_step_physically_prunes_the_chosen_layer(task):
    env = make_env(task)
    env.reset(seed=0)
    x = torch.randn(2, *SHAPE)
    _, _, done, _, info = env.step(2)  # 50 % of the stem's 8 filters, with every layer coupled to them
    assert not done and info["unit"] == "0" and info["level"] == 0.5
    pruned = env.model
    assert pruned[0].out_channels == 4 and pruned[3].conv1.in_channels == 4 and pruned[3].conv2.out_channels == 4
    assert pruned[4].in_channels == 4 and pruned[4].out_channels == 12  # the next unit is untouched so far
    assert pruned(x).shape == task.model(x).shape == (2, 4)
    assert task.model[0].out_channels == 8  # the shared dense model is never pruned
    env.step(1)  # 25 % of the block's first conv: 8 -> 6 channels
    assert env.model[3].conv1.out_channels == 6 and env.model[3].conv2.in_channels == 6


def test_full_level_removes_a_residual_block_and_is_75_percent_elsewhere(task):
    env = make_env(task)
    env.reset(seed=0)
    _, _, _, _, info = env.step(4)  # the stem cannot be removed: 100 % is applied as 75 %
    assert (info["requested"], info["level"], info["removed_block"]) == (1.0, 0.75, None)
    assert env.model[0].out_channels == 2
    _, _, _, _, info = env.step(4)  # the BasicBlock has an identity skip: it goes
    assert (info["level"], info["removed_block"]) == (1.0, "3")
    assert isinstance(env.model[3], nn.Identity)
    assert env.model(torch.randn(2, *SHAPE)).shape == (2, 4)


def test_reward_matches_a_hand_computation(task):
    """Every step's reward and the episode's R recomputed from independently pruned, measured networks."""
    coef = coefficients(task)
    env = AkperlEnv(task, coef, stats_batch=8)
    env.reset(seed=3, options={"condition": "low_light"})
    actions = [1, 3, 2, 3]
    dense_acc = task.evaluator.measure(apply_levels(task.model, task.units, [0] * 4, SHAPE), "low_light")
    dense_energy = estimate(task.model, task.power.profile, input_shape=(1, *SHAPE)).above_idle_energy_j
    acc_prev, power_prev, total, w = dense_acc, 1.0, 0.0, coef.weights
    for t, action in enumerate(actions):
        _, reward, done, _, info = env.step(action)
        levels = actions[: t + 1] + [0] * (3 - t)
        net = apply_levels(task.model, task.units, levels, SHAPE)
        acc = task.evaluator.measure(net, "low_light")
        power = estimate(net, task.power.profile, input_shape=(1, *SHAPE)).above_idle_energy_j / dense_energy
        a = LEVELS[action]
        expected = 1.0 * (acc - acc_prev) - 0.5 * (power - power_prev) - (0.3 * w[t] + 0.02) * a
        assert reward == pytest.approx(expected, abs=1e-9)
        acc_prev, power_prev, total = acc, power, total + reward
    assert done
    # R = sum_i [alpha_i Acc - beta_i Power - gamma_i a_i] - lambda |a|, with sum_i w_i = 1
    levels = [LEVELS[a] for a in actions]
    hand_r = acc - 0.5 * power - sum(0.3 * wi * ai for wi, ai in zip(w, levels)) - 0.02 * sum(levels)
    assert info["R"] == pytest.approx(hand_r, abs=1e-9)
    assert total + info["return_offset"] == pytest.approx(hand_r, abs=1e-9)  # the shaped return telescopes to R


def test_accuracy_is_cached_by_configuration(task):
    env = make_env(task)
    for _ in range(2):
        env.reset(seed=1, options={"condition": "clean"})
        done = False
        while not done:
            _, _, done, _, info = env.step(1)
        evaluations = task.evaluator.evaluations
    assert task.evaluator.evaluations == evaluations  # the second identical episode measured nothing
    assert ("clean", canonical_key([1, 1, 1, 1])) in task.evaluator.cache


def test_accuracy_every_k_steps_keeps_the_estimate_in_between(task):
    env = make_env(task, accuracy_every=3)
    env.reset(seed=0, options={"condition": "clean"})
    measured = [env.step(2)[4]["acc_measured"] for _ in range(4)]
    assert measured == [False, False, True, True]  # every third step, and the last


def test_observation_holds_unit_features_and_input_statistics(task):
    env = make_env(task)
    obs, _ = env.reset(options={"condition": "low_light", "reference": True})
    assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
    assert obs[0] == 0.0 and obs[1] == 1.0  # first unit, a plain conv
    assert obs[9] == pytest.approx(task.dense_accuracy("low_light")) and obs[10] == 1.0
    np.testing.assert_allclose(obs[11:17], task.reference_stats["low_light"], rtol=1e-6)
    assert obs[17] == 0.0 and obs[18] == 0.0  # nothing pruned yet, no sparsity floor
    assert (obs[11:14] < -0.5).all()  # darker images: per-channel means well below the clean ones
    blind, _ = make_env(task, input_stats=False).reset(options={"condition": "low_light"})
    assert not blind[11:].any()


def test_batch_stats_of_normalised_and_uint8_inputs_agree():
    x, _ = images(8, 5)
    from edgeprune.data import normalize

    np.testing.assert_allclose(batch_stats(x), batch_stats(normalize(x)), rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_refused(task):
    x, y = images(48, 0)
    common = dict(val=Split(x[:16], y[:16]), calib_x=x[16:32], stats_x=x[32:], input_shape=SHAPE)
    with pytest.raises(ValueError, match="conditions is empty"):
        PruningTask.build(tiny_resnet(), conditions=[], **common)
    with pytest.raises(KeyError, match="fog"):
        PruningTask.build(tiny_resnet(), conditions=["clean", "fog"], **common)
    classifier_only = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    with pytest.raises(ValueError, match="no prunable layer"):
        PruningTask.build(classifier_only, conditions=["clean"], **common)
    with pytest.raises(ValueError, match="layer weights"):
        AkperlEnv(task, RewardCoefficients(1.0, 0.5, 0.1, 0.0, (0.5, 0.5)))
    env = make_env(task)
    with pytest.raises(KeyError, match="noise"):
        env.reset(options={"condition": "noise"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)


def run_episode(env: AkperlEnv, actions: list[int]) -> tuple[np.ndarray, list[dict]]:
    env.reset(seed=0, options={"condition": "clean"})
    infos = []
    for action in actions:
        obs, _, done, _, info = env.step(action)
        infos.append(info)
    assert done
    return obs, infos


def test_sparsity_floor_raises_actions_as_late_as_possible(task):
    """Floor 45 % of the 52 prunable channels (>= 23.4 removed), agent asking for nothing.

    At 75 % the units remove 6x2 (stem + block conv2), 6, 9 and 12 channels. Step 0: the
    rest can still remove 27, so 0 %; step 1: 25 % gives 2 + 21 < 23.4, 50 % gives 4 + 21;
    step 2: 4 + 9 + 12 (75 %); step 3: 13 + 12 (75 %): 25 channels removed in all.
    """
    env = make_env(task, min_sparsity=0.45)
    obs, infos = run_episode(env, [0, 0, 0, 0])
    assert [i["requested"] for i in infos] == [0.0] * 4
    assert [i["level"] for i in infos] == [0.0, 0.5, 0.75, 0.75]
    assert [i["floor"] for i in infos] == [0.0, 0.5, 0.75, 0.75]
    assert infos[-1]["sparsity"] == pytest.approx(25 / 52)
    assert channel_sparsity(task.model, env.model, task.ignored_layers, SHAPE) == pytest.approx(25 / 52)
    assert obs[17] == pytest.approx(25 / 52)


def test_sparsity_floor_leaves_sufficient_actions_alone(task):
    env = make_env(task, min_sparsity=0.45)
    _, infos = run_episode(env, [3, 4, 1, 0])  # 75 % of the stem (2 x 6 channels), then the block (8 + the 2 left)
    assert [i["level"] for i in infos] == [0.75, 1.0, 0.25, 0.0] == [i["requested"] for i in infos]
    assert infos[-1]["sparsity"] == pytest.approx(25 / 52)
    _, infos = run_episode(make_env(task), [0, 0, 0, 0])  # no floor: nothing is raised
    assert [i["level"] for i in infos] == [0.0] * 4 and infos[-1]["sparsity"] == 0.0


def test_unreachable_sparsity_floor_is_an_error(task):
    with pytest.raises(ValueError, match="sparsity floor 80% is unreachable.*75.0%"):
        make_env(task, min_sparsity=0.8)


def test_power_term_is_the_board_model_with_the_dynamic_only_ablation(task):
    from edgeprune.akperl.task import PowerModel

    levels = [3, 3, 3, 3]
    net = apply_levels(task.model, task.units, levels, SHAPE)
    board, ablation = (PowerModel(task.model, "rpi4", input_shape=SHAPE, energy=e) for e in ("board", "dynamic_only"))
    dense, pruned = (estimate(m, "rpi4", input_shape=(1, *SHAPE)) for m in (task.model, net))
    assert board.relative(net, levels) == pytest.approx(pruned.latency_s / dense.latency_s)  # energy falls as time does
    assert ablation.relative(net, levels) == pytest.approx(pruned.dynamic_only_energy_j / dense.dynamic_only_energy_j)
    assert ablation.relative(net, levels) < board.relative(net, levels) < 1  # overhead keeps the board's share up
    figures = board.summary(net)
    assert figures["power_mw_modelled"] == pytest.approx(pruned.above_idle_power_w(30.0) * 1e3)
    assert figures["power_mw_dynamic_only"] == pytest.approx(pruned.dynamic_only_energy_j * 30.0 * 1e3)
    with pytest.raises(ValueError, match="energy must be one of"):
        PowerModel(task.model, "rpi4", input_shape=SHAPE, energy="horowitz")
