"""k-bit fake quantization and KL (entropy) calibration: grids, optimum thresholds, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import entropy
from torch import nn
from torch.nn.utils import parametrize

from small_nets import separable, train_briefly

from edgeprune import fakequant, measure
from edgeprune.data import normalize
from edgeprune.fields import SUPPORTED_BITS
from edgeprune.train import evaluate


def reference_divergences(hist: np.ndarray, bits: int, unsigned: bool = False) -> np.ndarray:
    """TensorRT's algorithm written as a plain loop with scipy's KL, to check the vectorised one."""
    levels = 2**bits if unsigned else 2 ** (bits - 1)
    out = []
    for kept in range(levels, len(hist) + 1):
        p = hist[:kept].astype(float).copy()
        p[-1] += hist[kept:].sum()
        level = np.arange(kept) * levels // kept
        q = np.zeros(kept)
        for k in range(levels):
            nonzero = (level == k) & (hist[:kept] > 0)
            if nonzero.any():
                q[nonzero] = hist[:kept][level == k].sum() / nonzero.sum()
        out.append(entropy(p, q))
    return np.array(out)


@pytest.mark.parametrize("bits, unsigned", [(2, False), (4, False), (4, True), (8, False)])
def test_kl_divergence_curve_matches_the_reference_algorithm(bits, unsigned):
    rng = np.random.default_rng(bits)
    values = np.append(np.abs(rng.laplace(size=5000)), [25.0, 40.0])  # two far outliers
    hist, edges = np.histogram(values, bins=512, range=(0, values.max()))
    result = fakequant.kl_threshold(hist, edges, bits, unsigned=unsigned)
    expected = reference_divergences(hist, bits, unsigned)
    assert np.array_equal(np.isinf(result.divergences), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result.divergences[finite], expected[finite], atol=1e-9)
    assert result.bins_kept == (2**bits if unsigned else 2 ** (bits - 1)) + int(np.argmin(expected))
    assert result.threshold == edges[result.bins_kept]


@pytest.mark.parametrize("bits, width", [(8, 2), (4, 3), (3, 5)])
def test_kl_picks_the_known_optimum(bits, width):
    """Counts constant over runs of ``width`` bins, decreasing run to run, nothing beyond
    levels * width bins: only that threshold quantizes without loss (KL = 0); a smaller
    one clips mass into the last bin, a larger one merges runs of different height."""
    levels = 2 ** (bits - 1)
    hist = np.zeros(2048)
    hist[: levels * width] = np.repeat(np.arange(levels, 0, -1) * 10.0, width)
    edges = np.linspace(0.0, 4.0, 2049)
    result = fakequant.kl_threshold(hist, edges, bits)
    assert result.bins_kept == levels * width
    assert result.threshold == pytest.approx(edges[levels * width])
    assert result.divergences.min() == pytest.approx(0.0, abs=1e-12)
    assert np.sort(result.divergences)[1] > 1e-9  # the optimum is unique


def test_kl_clips_rare_outliers_of_a_gaussian():
    values = np.append(np.abs(np.random.default_rng(0).normal(size=100_000)), np.full(5, 30.0))
    hist, edges = np.histogram(values, bins=2048, range=(0, values.max()))
    threshold = fakequant.kl_threshold(hist, edges, 8).threshold
    assert 2.0 < threshold < 10.0


def test_kl_threshold_refuses_bad_input():
    edges = np.linspace(0, 1, 65)
    with pytest.raises(ValueError, match="levels"):
        fakequant.kl_threshold(np.ones(64), edges, 8)  # 128 levels from 64 bins
    with pytest.raises(ValueError, match="positive total"):
        fakequant.kl_threshold(np.zeros(64), edges, 4)
    with pytest.raises(ValueError, match="edges"):
        fakequant.kl_threshold(np.ones(64), edges[:10], 4)


@pytest.mark.parametrize("bits", SUPPORTED_BITS)
def test_fake_quantized_weights_take_at_most_2_to_the_b_values_per_channel(bits):
    scales = torch.arange(1, 7).view(6, 1, 1, 1)  # channels of different ranges
    weight = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(bits)) * scales
    q = fakequant.fake_quantize_weight(weight, bits)
    qmax = 2 ** (bits - 1) - 1
    for w_c, q_c in zip(weight, q):
        assert len(torch.unique(q_c)) <= 2**bits
        scale = w_c.abs().max() / qmax
        assert q_c.abs().max() == pytest.approx(float(w_c.abs().max()), rel=1e-5)  # symmetric, max kept
        assert (q_c - w_c).abs().max() <= scale / 2 + 1e-6  # rounding to the nearest level
        assert torch.allclose(q_c / scale, torch.round(q_c / scale), atol=1e-3)  # on the grid


@pytest.mark.parametrize("bits, unsigned", [(3, False), (3, True), (8, True)])
def test_fake_quantized_activations_are_clipped_to_the_grid(bits, unsigned):
    x = torch.linspace(-3, 3, 10_001) if not unsigned else torch.linspace(0, 3, 10_001)
    q = fakequant.fake_quantize_activation(x, threshold=2.0, bits=bits, unsigned=unsigned)
    assert len(torch.unique(q)) <= 2**bits
    assert q.max() == pytest.approx(2.0) and q.min() == pytest.approx(0.0 if unsigned else -2.0)


@pytest.mark.parametrize("bad", [0, 1, 9, 16, 32, 4.0, True])
def test_a_bit_width_outside_the_set_is_refused(bad):
    with pytest.raises(ValueError, match="bits"):
        fakequant.check_bits(bad)
    with pytest.raises(ValueError, match="bits"):
        fakequant.fake_quantize_weight(torch.randn(2, 2), bad)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    return train_briefly(model)


def test_calibrated_8_bit_model_keeps_accuracy_and_leaves_the_float_model_alone(trained):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    x, y = separable(600, seed=3)
    bits = dict.fromkeys(fakequant.quantized_layers(trained), 8)
    acts = fakequant.calibrate(trained, normalize(separable(128, seed=2)[0]), bits)
    assert acts["0"].unsigned is False and acts["3"].unsigned is True  # normalized image vs post-ReLU
    simulated = fakequant.quantize_model(trained, bits, acts)
    assert abs(evaluate(simulated, x, y) - evaluate(trained, x, y)) <= 2.0
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    inputs = []
    simulated[3].register_forward_pre_hook(lambda m, a: inputs.append(a[0]))  # runs after the quantizer
    simulated(normalize(x[:16]))
    assert len(torch.unique(inputs[0])) <= 2**8


def test_simulated_context_restores_the_weights(trained):
    before = trained[0].weight.clone()
    bits = dict.fromkeys(fakequant.quantized_layers(trained), 2)
    with fakequant.simulated(trained, bits):
        assert len(torch.unique(trained[0].weight[0])) <= 3
    assert torch.equal(trained[0].weight, before)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model.eval()(normalize(x)), y))


def test_quantization_aware_training_fits_the_grid_better_than_float_fine_tuning(trained):
    bits = dict.fromkeys(fakequant.quantized_layers(trained), 2)
    acts = fakequant.calibrate(trained, normalize(separable(128, seed=2)[0]), bits)
    floating, aware = copy.deepcopy(trained), copy.deepcopy(trained)
    train_briefly(floating, steps=30)
    with fakequant.quantization_aware(aware, bits, acts) as model:
        assert len(torch.unique(model[0].weight[0])) <= 3  # it computes with 2-bit weights
        train_briefly(model, steps=30)
    assert not any(parametrize.is_parametrized(m) for m in aware.modules()) and not aware[3]._forward_pre_hooks
    assert isinstance(aware[0].weight, nn.Parameter) and len(torch.unique(aware[0].weight[0])) > 3  # latent floats
    x, y = separable(600, seed=3)
    qat = _loss(fakequant.quantize_model(aware, bits, acts), x, y)
    assert qat < 0.5 * _loss(fakequant.quantize_model(floating, bits, acts), x, y)  # same steps, same 2-bit grid


def test_unknown_layers_and_mismatched_quantizers_are_refused(trained):
    with pytest.raises(KeyError, match="not Conv2d / Linear"):
        fakequant.quantize_model(trained, {"1": 8})  # a BatchNorm
    with pytest.raises(ValueError, match="bits"):
        fakequant.calibrate(trained, torch.randn(4, 3, 8, 8), {"0": 9})
    with pytest.raises(ValueError, match="calibrated for 8 bits"):
        fakequant.quantize_model(trained, {"0": 4}, {"0": fakequant.ActivationQuant(1.0, 8, False)})


def test_stored_size_counts_k_bit_weights():
    layer = nn.Sequential(nn.Linear(16, 16, bias=False))
    nn.init.normal_(layer[0].weight)
    size = measure.model_size(layer, bits=fakequant.weight_bits({"0": 4}))
    assert size.total_bytes == 16 * 16 * 4 // 8 + 16 * measure.SCALE_BYTES


def test_relu_zeros_do_not_pull_the_threshold_down():
    """Half the inputs of the linear layer are exact zeros (ReLU): they are exact on any grid,
    so the threshold follows the non-zero values (uniform on (0, 1]: no clipping pays)."""
    model = nn.Sequential(nn.ReLU(), nn.Linear(64, 4))
    x = torch.rand(256, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spec = fakequant.calibrate(model, x, {"1": 8})["1"]
    assert spec.unsigned and spec.threshold > 0.9


def test_deploy_is_calibration_then_quantization_as_the_scheme_says(trained):
    from edgeprune.data import normalize

    x, _ = separable(64, seed=5)
    calib = normalize(x)
    bits = dict.fromkeys(fakequant.quantized_layers(trained), 4)
    full = fakequant.QuantScheme("mse", activations=True)
    acts = fakequant.calibrate(trained, calib, bits)
    want = fakequant.quantize_model(trained, bits, acts, weight_clip="mse")
    torch.testing.assert_close(fakequant.deploy(trained, bits, full, calib)(calib), want(calib))
    # weights only: no input quantizers, whatever the calibration images
    weights = fakequant.deploy(trained, bits, fakequant.QuantScheme("mse", activations=False), calib)
    torch.testing.assert_close(weights(calib), fakequant.quantize_model(trained, bits, weight_clip="mse")(calib))
    # given quantizers (a QAT run's) are used as they are, not re-calibrated
    coarse = {name: fakequant.ActivationQuant(a.threshold / 8, a.bits, a.unsigned) for name, a in acts.items()}
    torch.testing.assert_close(fakequant.deploy(trained, bits, full, calib, activations=coarse)(calib),
                               fakequant.quantize_model(trained, bits, coarse, weight_clip="mse")(calib))  # fmt: skip
