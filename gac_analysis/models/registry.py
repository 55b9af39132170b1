"""The model registry: ``build_model(arch, *, num_classes, T, coding)``."""

from __future__ import annotations

from gac_analysis.models.gac import SCA_KERNEL
from gac_analysis.models.msresnet import ArchSpec, MSResNet


def _imagenet(name: str, blocks: tuple[int, ...]) -> ArchSpec:
    """The ImageNet MS-ResNet family: 7x7/2 stem, four stages of widths 1, 2, 4, 8 x the stem's, 224 px, T=4."""
    return ArchSpec(
        name,
        "imagenet",
        blocks=blocks,
        width_mult=(1, 2, 4, 8),
        strides=(2, 2, 2, 2),
        stem_kernel=7,
        stem_stride=2,
        stem_padding=3,
        input_size=224,
        default_T=4,
    )


ARCHS: dict[str, ArchSpec] = {
    "msresnet18-cifar": ArchSpec(
        "msresnet18-cifar",
        "cifar",
        blocks=(3, 3, 2),
        width_mult=(2, 4, 8),
        strides=(1, 2, 2),
        stem_kernel=3,
        stem_stride=1,
        stem_padding=1,
        input_size=32,
        default_T=6,
    ),
    **{
        name: _imagenet(name, blocks)
        for name, blocks in (("msresnet18-imagenet", (2, 2, 2, 2)), ("msresnet34-imagenet", (3, 4, 6, 3)))
    },
}


def build_model(
    arch: str, *, num_classes: int, T: int, coding: str = "gac", width: int = 64, sca_kernel: int = SCA_KERNEL
) -> MSResNet:
    """Build a fresh model. ``width`` is the stem width (64 in the paper; stages scale with it)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; use one of {sorted(ARCHS)}")
    return MSResNet(ARCHS[arch], num_classes=num_classes, T=T, coding=coding, width=width, sca_kernel=sca_kernel)


def count_parameters(model) -> int:
    """Number of distinct parameters (elements)."""
    return sum(p.numel() for p in model.parameters())
