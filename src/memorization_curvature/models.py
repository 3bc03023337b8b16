"""Classifiers, built by name so that a checkpoint can say how to rebuild its network."""

from __future__ import annotations

import torch
from torch import nn

from .choices import MODELS


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks with BatchNorm for small images (8x8 digits), then a linear head.

    BatchNorm matters for the method: scoring runs in eval mode, where it uses running statistics
    and every sample's score is independent of the others in its batch.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def resnet18_cifar(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet18 in the CIFAR form: a 3x3 stride-1 stem and no max-pool, for 32x32 inputs."""
    from torchvision.models import resnet18  # imported here: torchvision.models costs ~1.4 s per job

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def resnet18_imagenet(in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet18 as it is (7x7 stride-2 stem and max-pool), for ImageNet-size images."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Return an untrained network; ``image_size`` is the side of the square input."""
    if name == "small_cnn":
        return SmallCNN(in_channels=in_channels, num_classes=num_classes)
    if name == "resnet18_cifar":
        return resnet18_cifar(in_channels=in_channels, num_classes=num_classes)
    if name == "resnet18":
        return resnet18_imagenet(in_channels=in_channels, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def for_data(name: str, prepared) -> tuple[nn.Module, dict]:
    """An untrained network for a prepared dataset's images and classes, and the keyword arguments
    that rebuild it (what a checkpoint stores). Seed torch's global generator first: it draws the
    initial weights."""
    c, side, _ = prepared.image_shape
    kwargs = {"in_channels": c, "num_classes": prepared.num_classes, "image_size": side}
    return build_model(name, **kwargs), kwargs


class Flipped(nn.Module):
    """``network`` shown its input mirrored left to right: the flipped query of an image (the privacy
    audit's second query where the recipe trains on flips)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(torch.flip(x, dims=(-1,)))
