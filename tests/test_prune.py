"""Static pruning baselines: channels really go, shapes stay, bad requests are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune import masks, measure, prune
from edgeprune.models import available_models, create_model


def chain() -> nn.Sequential:
    """conv 3->8, BN, ReLU, conv 8->8, BN, ReLU, 1x1 classifier conv 8->3, pooled."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ).eval()  # fmt: skip


def channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_l1_filter_removes_the_smallest_l1_filters():
    model = chain()
    with torch.no_grad():
        w = model[0].weight
        for i in range(8):  # filter i has L1 norm proportional to (i * 5) % 8 + 1
            w[i] = torch.ones_like(w[i]) * (((i * 5) % 8) + 1)
    pruned, report = prune.l1_filter(model, 0.5, input_shape=(3, 8, 8))
    kept = pruned[0].weight[:, 0, 0, 0].tolist()
    assert sorted(kept) == [5.0, 6.0, 7.0, 8.0]  # the four largest survive, channels physically gone
    assert channels(pruned) == [4, 4, 3] and channels(model) == [8, 8, 3]  # original untouched
    assert pruned(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    assert report.realised == 0.5 and report.unit == "channels"
    assert report.params_after < report.params_before and report.macs_reduction > 2.5


def test_magnitude_structured_ranks_globally():
    model = chain()
    with torch.no_grad():
        model[0].weight[:4] *= 0.01  # four near-dead filters in the first layer only
        model[3].weight.copy_(torch.ones_like(model[3].weight))  # second layer: all filters alike
    pruned, report = prune.magnitude_structured(model, 0.25, input_shape=(3, 8, 8))
    assert channels(pruned) == [4, 8, 3]  # global ranking takes all four from layer 1
    uniform, _ = prune.l1_filter(model, 0.25, input_shape=(3, 8, 8))
    assert channels(uniform) == [6, 6, 3]
    assert report.realised == 0.25


def test_unstructured_zeroes_prunable_weights_and_masks_survive_training():
    model = chain()
    pruned, report = prune.magnitude_unstructured(model, 0.6, input_shape=(3, 8, 8))
    prunable = 8 * 3 * 9 + 8 * 8 * 9
    assert report.unit == "weights" and report.realised == pytest.approx(round(0.6 * prunable) / prunable)
    assert int((pruned[6].weight == 0).sum()) == 0  # classifier left alone
    assert report.macs_after == report.macs_before  # masked, not removed
    opt = torch.optim.SGD(pruned.parameters(), lr=0.1)
    pruned.train()
    pruned(torch.randn(4, 3, 8, 8)).sum().backward()
    opt.step()
    zeros = int((pruned[0].weight == 0).sum() + (pruned[3].weight == 0).sum())
    masks.bake_masks(pruned)
    assert not hasattr(pruned[0], "weight_orig")
    assert int((pruned[0].weight == 0).sum() + (pruned[3].weight == 0).sum()) == zeros == round(0.6 * prunable)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.5", float("nan")])
def test_sparsity_out_of_range_is_refused(bad):
    for method in ("l1_filter", "magnitude_structured", "magnitude_unstructured"):
        with pytest.raises(ValueError, match="sparsity"):
            prune.apply(chain(), method, bad, input_shape=(3, 8, 8))


def test_bad_names_and_impossible_ratios_are_refused():
    with pytest.raises(KeyError, match="features.99"):
        prune.l1_filter(chain(), 0.5, ignored_layers=["features.99"], input_shape=(3, 8, 8))
    with pytest.raises(KeyError, match="magic"):
        prune.apply(chain(), "magic", 0.5)
    narrow = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    narrow = nn.Sequential(narrow, nn.Linear(2, 3))
    with pytest.raises(ValueError, match="cannot be pruned to 90%"):
        prune.l1_filter(narrow, 0.9, input_shape=(3, 8, 8))


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("method", ["l1_filter", "magnitude_structured"])
def test_registry_models_prune_to_fewer_channels(name, method):
    """Residual adds, Fire concatenations, SE blocks with hardswish, depthwise convs, timm blocks."""
    model = create_model(name).eval()
    pruned, report = prune.apply(model, method, 0.5)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert report.realised == pytest.approx(0.5, abs=0.02)
    assert measure.count_params(pruned)[0] == report.params_after < 0.4 * report.params_before  # ~ 1 - (1 - p)^2
    assert measure.count_macs(pruned) == report.macs_after < 0.4 * report.macs_before


def test_every_pruning_entry_point_rounds_kept_channels_by_the_one_rule():
    """Baselines (local and global), AKPERL units, PPO plans and QSA masks on one network:
    kept counts are multiples of round_to, and the local methods keep exactly channels_to_keep."""
    from small_nets import separable

    from edgeprune.akperl.units import apply_levels, find_units
    from edgeprune.ppo.pruning import apply_plan, make_plan, taylor_groups
    from edgeprune.qsa.masks import prune_by_importance

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
        nn.Conv2d(24, 40, 3, padding=1), nn.BatchNorm2d(40), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 3),
    ).eval()  # fmt: skip
    shape, rate, r = (3, 8, 8), 0.25, 8
    expected = [prune.channels_to_keep(24, rate, r), prune.channels_to_keep(40, rate, r)]
    assert expected == [16, 32]  # 18 -> 16 and 30 -> 32: nearest multiples of 8, not down

    def widths(model: nn.Module) -> list[int]:
        return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]

    l1, _ = prune.apply(net, "l1_filter", rate, round_to=r, input_shape=shape)
    units = find_units(net, input_shape=shape, round_to=r)
    akperl = apply_levels(net, units, [1] * len(units), shape)  # level 1 = 25 %
    x, y = separable(64, seed=0)
    ppo = apply_plan(net, make_plan(taylor_groups(net, x, y, input_shape=shape), [rate, rate], round_to=r), shape)
    assert widths(l1) == widths(akperl) == widths(ppo) == expected
    magnitude, _ = prune.apply(net, "magnitude_structured", 0.5, round_to=r, input_shape=shape)
    scores = {"0": torch.rand(24), "3": torch.rand(40)}
    qsa, _ = prune_by_importance(net, scores, 0.5, ignored_layers=["8"], input_shape=shape, round_to=r)
    for model in (magnitude, qsa):
        assert all(w % r == 0 for w in widths(model)) and widths(model) != widths(net)


def test_l1_regularised_removes_the_smallest_batchnorm_scales_across_layers():
    """Network slimming ranks |gamma| globally and raw: the layer whose scales the L1 training drove down
    loses its channels first, and within a layer the smallest scales go."""
    from small_nets import chain

    net = chain(seed=0).eval()
    bn1, bn2 = net[1], net[4]
    with torch.no_grad():
        bn1.weight.copy_(torch.linspace(0.01, 0.16, 16))  # small scales: the first layer
        bn2.weight.copy_(torch.linspace(1.0, 2.5, 16))
    pruned, report = prune.apply(net, "l1_regularised", 0.25, round_to=1, input_shape=(3, 8, 8))
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [8, 16]  # 25 % of the 32 prunable channels, all from the small-scale layer
    torch.testing.assert_close(pruned[1].weight, torch.linspace(0.01, 0.16, 16)[8:])  # the smallest eight went
    assert report.method == "l1_regularised" and report.realised == pytest.approx(0.25)


def test_l1_regularised_on_a_network_without_batchnorm_is_unreachable_and_says_why():
    """SqueezeNet has no BatchNorm: network slimming has nothing to rank (make smoke's first failure:
    the baselines stage crashed in torch.cat on the empty list of scores)."""
    with pytest.raises(prune.UnreachableSparsity, match="no BatchNorm"):
        prune.apply(create_model("squeezenet1_1").eval(), "l1_regularised", 0.3, round_to=8)
