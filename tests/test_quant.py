"""Real int8 post-training quantization: accuracy kept, bytes counted, bad models refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune import measure, prune, quant
from edgeprune.data import normalize
from edgeprune.models import available_models, create_model
from edgeprune.train import evaluate


def separable_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 8x8 images whose class (0..2) is the colour channel that is brightest."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randint(40, 140, (n, 3, 8, 8), generator=gen)
    x[torch.arange(n), y] += torch.randint(60, 110, (n, 1, 1), generator=gen)
    return x.to(torch.uint8), y


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """A small conv net trained to ~100% on :func:`separable_data` (shared: tests copy it)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    x, y = separable_data(512, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(60):
        idx = torch.arange(step * 64, step * 64 + 64) % len(y)
        loss = nn.functional.cross_entropy(model(normalize(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_int8_accuracy_within_tolerance_of_fp32(trained):
    model = trained
    calib, _ = separable_data(128, seed=2)
    int8 = quant.quantize_int8(model, calib)
    x, y = separable_data(600, seed=3)
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
    int8 = quant.quantize_int8(masked, separable_data(64, seed=2)[0])
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
    monkeypatch.setattr(quant.platform, "machine", lambda: "aarch64")
    assert quant.default_backend() == "qnnpack"
    monkeypatch.setattr(quant.platform, "machine", lambda: "x86_64")
    assert quant.default_backend() == "x86"


@pytest.mark.parametrize("name", available_models())
def test_registry_models_convert_to_int8(name):
    model = create_model(name).eval()
    int8 = quant.quantize_int8(model, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    assert int8(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert measure.model_size(int8).total_bytes < 0.3 * measure.model_size(model).total_bytes
