"""edgeprune.models: every registry model is CIFAR-adapted and classifies 32x32 images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune.models import available_models, create_model

EXPECTED = {"mobilenet_v3_small", "mobilenet_v2", "squeezenet1_1", "vgg19_bn", "efficientnet_lite0", "resnet20", "resnet56"}


def test_registry_lists_the_papers_models() -> None:
    assert EXPECTED <= set(available_models())


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="mobilenet_v2"):
        create_model("alexnet")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_shape_stride_one_stem_and_bn_momentum(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.stride == (1, 1)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_last_feature_map_is_not_collapsed() -> None:
    """The stride-1 stem keeps a spatial map before global pooling (an ImageNet stem would give 1x1)."""
    model = create_model("mobilenet_v3_small").eval()
    with torch.no_grad():
        features = model.features(torch.randn(1, 3, 32, 32))
    assert features.shape[-1] == 2


def test_cifar_resnet_depths() -> None:
    def convs(name: str) -> int:
        return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in create_model(name).modules())

    assert convs("resnet20") == 19 and convs("resnet56") == 55  # + the fc layer = 20 / 56 weighted layers
    with pytest.raises(ValueError, match="6n\\+2"):
        from edgeprune.models import CifarResNet

        CifarResNet(21, 10)
