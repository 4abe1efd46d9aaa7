"""Per-channel weight clipping (max-abs, MSE, KL): known optima with outliers, in the model-level API, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from test_fakequant import reference_divergences

from edgeprune import fakequant
from edgeprune.clipping import (
    COARSE_RATIOS, FINE_STEPS, KL_SAMPLES_PER_BIN, WEIGHT_CLIPS, channel_amax, quantize_channels, round_to_grid,
    weight_clip_ratios,
)  # fmt: skip


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_round_to_grid_is_torchs_fake_quantize_bit_for_bit_with_and_without_gradients(layout):
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        x = (torch.randn(16, 8, 6, 6, generator=g) * (0.1 + 5 * torch.rand(1, generator=g))).contiguous(memory_format=layout)
        qmax = int(torch.randint(1, 256, (1,), generator=g))
        qmin = 0 if trial % 3 == 0 else -qmax
        scale = float(torch.rand(1, generator=g)) * 0.3 + 1e-4
        x[0, 0, 0, :3] = torch.tensor([0.5, 1.5, -2.5]) * scale  # ties round to even in both
        x[0, 0, 1, 0] = 3 * qmax * scale  # beyond the per-tensor range
        per_channel = x.abs().flatten(1).amax(1) * (0.2 + 0.7 * torch.rand(16, generator=g)) / qmax  # every max clipped
        for ours_scale, theirs in (
            (scale, lambda t: torch.fake_quantize_per_tensor_affine(t, scale, 0, qmin, qmax)),
            (per_channel, lambda t: torch.fake_quantize_per_channel_affine(
                t, per_channel.float(), torch.zeros(16, dtype=torch.int32), 0, qmin, qmax)),
        ):  # fmt: skip
            with torch.no_grad():  # the element-wise path
                got = round_to_grid(x, ours_scale, qmin, qmax)
            assert torch.equal(got, theirs(x)) and got.stride() == x.stride()
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            expected, got = theirs(a), round_to_grid(b, ours_scale, qmin, qmax)
            assert torch.equal(got, expected)
            upstream = torch.randn(expected.shape, generator=g)
            expected.backward(upstream)
            got.backward(upstream)
            assert torch.equal(b.grad, a.grad) and (b.grad == 0).any()  # straight through, zero where clipped


def test_round_to_grid_keeps_torchs_strides_for_a_1x1_channels_last_weight():
    # (8, 16, 1, 1) in channels_last is also contiguous; a broadcast per-channel scale made the element-wise
    # ops return other strides than torch's op, and the conv then took another kernel (float noise in QAT)
    w = torch.empty_strided((8, 16, 1, 1), (16, 1, 16, 16)).normal_().requires_grad_()
    scale = torch.rand(8) * 0.1 + 0.01
    expected = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(8, dtype=torch.int32), 0, -7, 7)
    got = round_to_grid(w, scale, -7, 7)
    assert torch.equal(got, expected) and got.stride() == expected.stride() == (16, 1, 16, 16)


def _error(weight: torch.Tensor, bits: int, clip: str) -> torch.Tensor:
    """Per-channel squared quantization error under ``clip``."""
    q = fakequant.fake_quantize_weight(weight, bits, clip)
    return (weight - q).square().flatten(1).sum(1)


def test_mse_picks_the_known_optimum_of_a_channel_with_an_outlier():
    """200 weights at +-1 and one at 10, 2 bits (grid {-a, 0, a}): error 200 (1 - a)^2 + (10 - a)^2
    for 2/3 <= a <= 2, least at a = 420 / 402 = 1.045; of the candidates a = 10 r, r = 0.10 wins
    (error 81 vs 81.21 at 0.11), where max-abs (a = 10) rounds every +-1 to 0 (error 200)."""
    row = torch.cat([torch.tensor([1.0, -1.0]).repeat(100), torch.tensor([10.0])])
    weight = torch.stack([row, 2.5 * row])  # the second channel: the same shape, scaled
    ratios = weight_clip_ratios(weight, 2, "mse")
    assert ratios.tolist() == pytest.approx([0.10, 0.10])  # the optimum does not depend on the channel's scale
    assert _error(weight, 2, "mse")[0] == pytest.approx(81.0, rel=1e-4)
    assert _error(weight, 2, "max")[0] == pytest.approx(200.0, rel=1e-4)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_beats_every_coarse_ratio_and_is_least_in_its_fine_window(bits):
    """The two-pass search: no coarse ratio (max-abs, 1.0, among them) has a smaller error, nor any ratio
    of the 0.01 grid within 0.04 of the best coarse one."""
    torch.manual_seed(bits)
    weight = torch.distributions.StudentT(3.0).sample((12, 40)).mul(0.1)  # heavy tails: outliers
    ratios = weight_clip_ratios(weight, bits, "mse")
    amax = channel_amax(weight)
    error = lambda r: (weight - quantize_channels(weight, r * amax, bits)).square().sum(1)  # noqa: E731
    chosen = error(ratios)
    for r in COARSE_RATIOS:
        assert (chosen <= error(torch.full_like(amax, float(r))) + 1e-9).all()
    coarse = torch.stack([error(torch.full_like(amax, float(r))) for r in COARSE_RATIOS])
    coarse_best = COARSE_RATIOS[len(COARSE_RATIOS) - 1 - coarse.flip(0).argmin(0)]
    for step in FINE_STEPS:
        assert (chosen <= error((coarse_best + step).clamp(0.01, 1.0)) + 1e-9).all()
    assert (_error(weight, bits, "mse") <= _error(weight, bits, "max") + 1e-9).all()


@pytest.mark.parametrize("bits", [3, 4])
def test_kl_caps_every_channel_at_the_reference_algorithms_threshold(bits):
    """A Laplace bulk with far outliers in one channel: the threshold of TensorRT's algorithm (the plain
    scipy loop of test_fakequant) on the layer's |w| histogram caps the outlier channel and leaves the
    channels whose range lies below it alone."""
    torch.manual_seed(bits)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((16, 256))
    weight[3, :4] = torch.tensor([2.0, -1.5, 1.8, -2.2])
    magnitudes = weight.abs().flatten().double().numpy()
    bins = min(fakequant.KL_BINS, max(2 ** bits, magnitudes.size // KL_SAMPLES_PER_BIN))
    hist, edges = np.histogram(magnitudes, bins=bins, range=(0.0, magnitudes.max()))
    divergences = reference_divergences(hist, bits)
    threshold = edges[2 ** (bits - 1) + int(np.argmin(divergences))]
    ratios = weight_clip_ratios(weight, bits, "kl")
    amax = channel_amax(weight)
    expected = torch.clamp(torch.tensor(threshold, dtype=torch.float64) / amax.double(), max=1.0).float()
    assert torch.allclose(ratios, expected, rtol=1e-5)
    assert ratios[3] < 0.5  # the outliers are clipped
    assert ratios[3] == ratios.min() and (ratios[amax <= threshold] == 1).all()  # the cap is one value


def test_max_abs_keeps_each_channels_range_and_zero_weights_are_exact():
    weight = torch.randn(4, 9, generator=torch.Generator().manual_seed(0))
    weight[2] = 0.0  # a pruned channel
    for clip in WEIGHT_CLIPS:
        ratios = weight_clip_ratios(weight, 4, clip)
        assert ((ratios > 0) & (ratios <= 1)).all()
        assert torch.equal(fakequant.fake_quantize_weight(weight, 4, clip)[2], torch.zeros(9))
    assert torch.equal(weight_clip_ratios(weight, 4, "max"), torch.ones(4))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


@pytest.mark.parametrize("clip", WEIGHT_CLIPS)
def test_the_model_level_api_uses_the_rule_everywhere(clip):
    """quantize_model, simulated and quantization_aware all compute with the rule's grid."""
    model, bits = _net(), {"0": 3, "3": 3}
    expected = {name: fakequant.fake_quantize_weight(model[int(name)].weight, 3, clip) for name in bits}
    quantized = fakequant.quantize_model(model, bits, weight_clip=clip)
    with fakequant.simulated(model, bits, weight_clip=clip) as simulated:
        for name in bits:
            assert torch.equal(simulated[int(name)].weight, expected[name])
            assert torch.equal(quantized[int(name)].weight, expected[name])
    with fakequant.quantization_aware(model, bits, weight_clip=clip) as aware:
        assert parametrize.is_parametrized(aware[0], "weight")
        for name in bits:
            assert torch.equal(aware[int(name)].weight, expected[name])


@pytest.mark.parametrize("bad", ["entropy", "MSE", ""])
def test_an_unknown_clipping_rule_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="weight clipping must be one of"):
        weight_clip_ratios(torch.randn(2, 3), 4, bad)
    with pytest.raises(ValueError, match=repr(bad)):
        fakequant.quantize_model(_net(), {"0": 4}, weight_clip=bad)


def test_quantization_aware_training_keeps_the_ratios_chosen_at_entry():
    """The grid of each step spans r_c max|w_c| of the current weights, r_c chosen once at entry."""
    model = _net()
    entry = weight_clip_ratios(model[3].weight, 3, "mse")
    with fakequant.quantization_aware(model, {"3": 3}, weight_clip="mse") as aware:
        with torch.no_grad():
            latent = aware[3].parametrizations.weight.original
            latent[:, :10] *= 3.0  # the weights move; the ratios stay
        expected = quantize_channels(latent.detach(), entry * channel_amax(latent), 3)
        assert torch.equal(aware[3].weight, expected)


def test_a_network_trained_quantization_aware_is_deployed_on_the_grid_it_was_trained_for():
    """The ratios chosen at QAT entry stay with the layer (outside its state dict) and quantize_model
    uses them at the same bits and rule; another bit-width or rule chooses afresh."""
    model = _net()
    keys = set(model.state_dict())
    entry = weight_clip_ratios(model[3].weight, 3, "mse")
    with fakequant.quantization_aware(model, {"3": 3}, weight_clip="mse") as aware:
        with torch.no_grad():
            aware[3].parametrizations.weight.original[:, :40] *= 4.0  # training moved the weights
    w = model[3].weight.detach()
    assert not torch.equal(weight_clip_ratios(w, 3, "mse"), entry)  # choosing again would differ
    deployed = fakequant.quantize_model(model, {"3": 3}, weight_clip="mse")
    assert torch.equal(deployed[3].weight, quantize_channels(w, entry * channel_amax(w), 3))
    assert torch.equal(fakequant.quantize_model(model, {"3": 4}, weight_clip="mse")[3].weight,
                       fakequant.fake_quantize_weight(w, 4, "mse"))  # fmt: skip
    assert set(model.state_dict()) == keys
