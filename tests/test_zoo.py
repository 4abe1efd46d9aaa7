"""Every registry model through each method's per-model path, with the paper profile's settings.

The reduced form of the smoke profile (issue 18): ``make smoke`` runs the paper profile's
whole shape stage by stage, which is too long for the test suite; these tests take each
registry model (random weights, 32x32 inputs) through what a method stage does to one
model: the baselines' pruning methods at every sparsity; AKPERL's units, sparsity floor, episode and recovery; QSA's λ path, KL threshold
search, masks and recovery; PPO's Taylor groups, plan and quantization-aware recovery;
and the int8 conversion each of them ends with. Settings that decide whether a path can
fail on a model (round_to, the floor, min_mac_share, positions, bit-widths) come from
``paper.yaml``, budgets are one SGD step.
"""

from __future__ import annotations

import pytest
import torch

from edgeprune import prune, quant
from edgeprune.akperl.budget import SparsityFloor
from edgeprune.akperl.networks import static_methods
from edgeprune.akperl.units import LEVELS, LayerwisePruner, find_units
from edgeprune.config import load_params, profile_path
from edgeprune.data import Split, normalize
from edgeprune.measure import model_size
from edgeprune.models import available_models, create_model
from edgeprune.placement import check_placed
from edgeprune.ppo.pruning import make_plan, taylor_groups
from edgeprune.ppo.retrain import retrain
from edgeprune.ppo.search import describe_layers
from edgeprune.prune import classifier_name
from edgeprune.qsa.cycle import QSAPruner, QSASettings
from edgeprune.qsa.masks import Compression, int8_size_estimate
from edgeprune.qsa.threshold import ThresholdSearch
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover.protocol import Recovery

SHAPE = (3, 32, 32)
PAPER = load_params(profile_path("paper"))


@pytest.fixture(scope="module")
def split() -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(torch.randint(0, 256, (64, *SHAPE), generator=g, dtype=torch.uint8), torch.arange(64) % 10)


@pytest.fixture(scope="module")
def recovery(split: Split) -> Recovery:
    """The shared protocol at one SGD step of 8 images (channels-last, as every stage trains), device set explicitly."""
    return Recovery(FinetuneParams(budgets=[Budget(steps=1)], batch_size=8, calib_images=16), split, device="cpu")


def _runs_in_int8(model: torch.nn.Module, split: Split) -> None:
    check_placed(model, "cpu")  # recovery returns its network on the CPU, whatever device it trained on
    int8 = quant.quantize_int8(model, split.x[:8])
    assert int8(normalize(split.x[:2])).shape == (2, 10)


@pytest.mark.parametrize("name", available_models())
def test_akperl_episode_meets_the_floor_recovers_and_converts(name, split, recovery):
    p = PAPER.akperl
    model = create_model(name).eval()
    ignored = [classifier_name(model, SHAPE)]
    units = find_units(model, ignored_layers=ignored, min_mac_share=p.min_mac_share, round_to=p.round_to)
    floor = SparsityFloor(model, units, ignored, p.target_sparsity)  # unreachable floors raise here
    pruner = LayerwisePruner(model)
    requested = torch.randint(0, len(LEVELS), (len(units),), generator=torch.Generator().manual_seed(0)).tolist()
    for t, unit in enumerate(units):  # as the environment does: the agent's level, raised to keep the floor
        if not pruner.skipped(unit):
            pruner.apply(unit, max(requested[t], floor.minimum_level(t, pruner.model, pruner.removed)))
    assert floor.sparsity(pruner.model) >= p.target_sparsity
    recovered = recovery.recover(pruner.model, seed=0, budget=0, teacher=model)
    assert torch.isfinite(recovered(normalize(split.x[:2]))).all()
    _runs_in_int8(recovered, split)


@pytest.mark.parametrize("name", available_models())
def test_qsa_search_masks_recover_and_convert(name, split, recovery):
    q = PAPER.qsa
    model = create_model(name).eval()
    settings = QSASettings(q.hidden_fraction, q.max_hidden, q.positions, steps=2, lr=q.lr, round_to=q.round_to)
    pruner = QSAPruner(model, q.layers, settings, input_shape=SHAPE)
    path = pruner.lambda_path(split.x[:16], q.lambdas[:1])
    scores = {lam: qsas.importance() for lam, qsas in path.items()}
    compression = Compression(model_size(model).total_bytes, 1.0)
    search = ThresholdSearch(
        model, split.x[:16], compression, ignored_layers=pruner.ignored, kl_layer=q.kl_layer, round_to=q.round_to,
        input_shape=SHAPE,
    )  # fmt: skip
    target = min(q.compressions)
    chosen, _ = search.search(scores, target, candidates=1, step=q.candidate_step)
    pruned, report = search.curve(chosen.lam, scores[chosen.lam]).model(chosen.fraction)
    assert report.realised > 0 and chosen.compression >= target
    kept = [getattr(m, "out_channels", getattr(m, "out_features", None)) for n, m in pruned.named_modules() if n in pruner.layers]
    assert all(c % q.round_to == 0 or c <= q.round_to for c in kept)  # the int8 kernels' multiple
    _runs_in_int8(recovery.recover(pruned, seed=0, budget=0, teacher=model), split)
    assert int8_size_estimate(pruned) < int8_size_estimate(model)


@pytest.mark.parametrize("name", available_models())
def test_ppo_plan_recovers_at_mixed_bits_and_converts(name, split, recovery):
    p = PAPER.ppo
    model = create_model(name).eval()
    groups = taylor_groups(model, split.x[:16], split.y[:16], batch_size=8)
    rates = [p.prune_rates[i % len(p.prune_rates)] for i in range(len(groups))]
    plan = make_plan(groups, rates, p.round_to)
    layers = describe_layers(model, groups, SHAPE)
    bits = {layer.name: p.bits[i % len(p.bits)] for i, layer in enumerate(layers)}  # every bit-width, below 8 too
    recovered = retrain(model, plan, bits, recovery, seed=0, teacher=model, qat=p.qat)
    assert plan.removes_channels and torch.isfinite(recovered(normalize(split.x[:2]))).all()
    _runs_in_int8(recovered, split)


@pytest.mark.parametrize("name", available_models())
def test_every_baseline_method_prunes_or_says_why(name, split):
    """Each method of the paper's baselines at its lowest and highest sparsity gives a working network, or a
    structured method's :class:`~edgeprune.prune.UnreachableSparsity` with its reason (the stage then
    writes no row and says why in its summary); any other error is a failure."""
    b = PAPER.baselines
    model = create_model(name).eval()
    for method in b.methods:
        for sparsity in (min(b.sparsities), max(b.sparsities)):
            options = {"round_to": b.round_to} if method in prune.STRUCTURED else {}
            try:
                pruned, report = prune.apply(model, method, sparsity, **options)
            except prune.UnreachableSparsity as err:
                assert method in prune.STRUCTURED and str(err)
                continue
            assert report.method == method and report.realised > 0
            assert torch.isfinite(pruned(normalize(split.x[:2]))).all()


def test_akperl_compares_with_network_slimming_only_where_there_are_batchnorm_scales():
    """Table 1's statics (make smoke's second find: AKPERL on squeezenet1_1 asked slimming for a network
    without BatchNorm); the paper profile runs slimming among its baselines."""
    assert "l1_regularised" in PAPER.baselines.methods
    assert static_methods(PAPER, create_model("mobilenet_v3_small")) == ("l1_filter", "l1_regularised", "magnitude_structured")
    assert static_methods(PAPER, create_model("squeezenet1_1")) == ("l1_filter", "magnitude_structured")
