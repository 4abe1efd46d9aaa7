"""Real int8 post-training quantization: accuracy kept, bytes counted, bad models refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from small_nets import separable, train_briefly

from edgeprune import measure, prune, quant
from edgeprune.models import available_models, create_model
from edgeprune.train import evaluate


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """A small conv net trained to ~100% on separable colour images."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    return train_briefly(model)


def test_int8_accuracy_within_tolerance_of_fp32(trained):
    model = trained
    calib, _ = separable(128, seed=2)
    int8 = quant.quantize_int8(model, calib)
    x, y = separable(600, seed=3)
    fp32_top1, int8_top1 = evaluate(model, x, y), evaluate(int8, x, y)
    assert fp32_top1 > 90
    assert abs(int8_top1 - fp32_top1) <= 2.0
    assert measure.is_quantized(int8) and not measure.is_quantized(model)
    assert any(p.requires_grad for p in model.parameters())  # the float model is untouched


def test_int8_bytes_match_hand_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    int8 = quant.quantize_int8(model, torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8))
    # input quantization: scale 4 B + zero point 1 B
    # conv+BN+ReLU fused: 108 int8 weights + 4 x (scale 4 B + zero point 1 B) + fp32 bias 4 x 4 B (BN folded)
    #                     + output scale / zero point 5 B
    # conv 1x1: 8 int8 weights + 2 x 5 B + fp32 bias 2 x 4 B + output 5 B
    expected = 5 + (108 + 20 + 16 + 5) + (8 + 10 + 8 + 5)
    assert measure.model_size(int8).total_bytes == expected


def test_masked_model_quantizes_with_zeros_kept(trained):
    masked, _ = prune.magnitude_unstructured(trained, 0.7, input_shape=(3, 8, 8))
    int8 = quant.quantize_int8(masked, separable(64, seed=2)[0])
    sizes = {t.name: t for t in measure.model_size(int8).tensors}
    conv = next(t for name, t in sizes.items() if name.endswith("weight") and t.numel == 8 * 8 * 9)
    assert conv.nnz <= 0.35 * conv.numel and conv.encoding in ("bitmask", "csr") and conv.index_bytes > 0
    assert hasattr(masked[0], "weight_orig")  # masks baked only in the copy


def test_untraceable_model_and_bad_backend_are_refused(trained):
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.conv(x).mean((2, 3))
            return self.conv(-x).mean((2, 3))

    calib = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="Branchy cannot be traced"):
        quant.quantize_int8(Branchy(), calib)
    with pytest.raises(ValueError, match="'tpu'"):
        quant.quantize_int8(trained, calib, backend="tpu")
    with pytest.raises(ValueError, match="uint8"):
        quant.quantize_int8(trained, calib.float())


def test_backend_follows_the_cpu(monkeypatch):
    from edgeprune import timing

    monkeypatch.setattr(timing.platform, "machine", lambda: "aarch64")
    assert timing.quantized_engine() == "qnnpack"
    monkeypatch.setattr(timing.platform, "machine", lambda: "x86_64")
    assert timing.quantized_engine() == "x86"


@pytest.mark.parametrize("name", available_models())
def test_registry_models_convert_to_int8(name):
    model = create_model(name).eval()
    int8 = quant.quantize_int8(model, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    assert int8(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert measure.model_size(int8).total_bytes < 0.3 * measure.model_size(model).total_bytes
