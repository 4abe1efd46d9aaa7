"""Model zoo: CIFAR-adapted torchvision / timm networks and CIFAR ResNets, by name.

ImageNet stems shrink a 32x32 image to 1x1 before the last stage, so every model here
gets a stride-1 stem (and a compact classifier where the ImageNet head assumes 7x7
features). BatchNorm momentum is reset to PyTorch's default 0.1: torchvision's
MobileNetV3 (and timm's EfficientNet-Lite) build BN with momentum 0.01 / eps 1e-3,
whose running statistics lag far behind the weights in a short schedule (measured:
20-30% test accuracy at ~60% train accuracy after 2 epochs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

ModelFactory = Callable[[int], nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory ``f(num_classes) -> nn.Module`` to the registry."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 10, bn_momentum: float | None = 0.1) -> nn.Module:
    """Build a freshly initialised CIFAR-adapted model by registry name."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    model = _REGISTRY[name](num_classes)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model


def _stride_one(conv: nn.Conv2d) -> None:
    conv.stride = (1, 1)


@register("mobilenet_v3_small")
def mobilenet_v3_small(num_classes: int) -> nn.Module:
    model = torchvision.models.mobilenet_v3_small(num_classes=num_classes)
    _stride_one(model.features[0][0])
    return model


@register("mobilenet_v2")
def mobilenet_v2(num_classes: int) -> nn.Module:
    model = torchvision.models.mobilenet_v2(num_classes=num_classes)
    _stride_one(model.features[0][0])
    return model


@register("squeezenet1_1")
def squeezenet1_1(num_classes: int) -> nn.Module:
    model = torchvision.models.squeezenet1_1(num_classes=num_classes)
    _stride_one(model.features[0])
    return model


class CifarVGG(nn.Module):
    """torchvision's VGG feature stack with the usual CIFAR head (512-d vector -> classes).

    Five max-pools take 32x32 to 1x1, so the ImageNet model's 7x7 adaptive pool and
    25088-wide classifier would be ~120M parameters of padding (and seconds of init).
    """

    def __init__(self, config: str, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        self.features = make_layers(cfgs[config], batch_norm=True)
        self.classifier = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register("vgg19_bn")
def vgg19_bn(num_classes: int) -> nn.Module:
    return CifarVGG("E", num_classes)


@register("efficientnet_lite0")
def efficientnet_lite0(num_classes: int) -> nn.Module:
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_classes)
    _stride_one(model.conv_stem)
    return model


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (He et al. 2016, CIFAR variant)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            # Option B (1x1 projection) rather than option A (zero padding): a real
            # layer that structured pruning can shrink together with the block.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of 16/32/64 channels.

    Written here because neither torchvision nor timm ships the CIFAR ResNets that
    the pruning literature (Li et al. 2017, DepGraph) benchmarks on.
    """

    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register("resnet20")
def resnet20(num_classes: int) -> nn.Module:
    return CifarResNet(20, num_classes)


@register("resnet56")
def resnet56(num_classes: int) -> nn.Module:
    return CifarResNet(56, num_classes)
