"""MS-ResNet (membrane-shortcut ResNet) with a GAC or direct encoder, time-major.

Block: ``out = BN2(Conv2(LIF(BN1(Conv1(LIF(x)))))) + shortcut(x)``; the shortcut is the identity or
``BN(Conv1x1(stride)(x))`` and carries the real-valued membrane input ``x``, not spikes.

Forward: images ``[B, 3, H, W]`` are repeated T times (direct input), then
stem Conv-BN -> encoder -> stages -> head (LIF -> global average pool -> Linear, per step),
giving logits ``[T, B, classes]``; the prediction is the mean over T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gac_analysis.models.gac import SCA_KERNEL, DirectEncoder, GACEncoder
from gac_analysis.models.layers import Add, ConvBN, declare, over_time
from gac_analysis.models.neurons import LIF


@dataclass(frozen=True)
class ArchSpec:
    """Topology of one registered architecture (widths are multiples of the stem width)."""

    name: str
    family: str  # "cifar" | "imagenet": layout, LIF variant, stem
    blocks: tuple[int, ...]  # residual blocks per stage
    width_mult: tuple[int, ...]  # stage width = width * mult
    strides: tuple[int, ...]  # stride of each stage's first block
    stem_kernel: int
    stem_stride: int
    stem_padding: int
    input_size: int  # nominal image side (pixels)
    default_T: int


class MSBlock(nn.Module):
    """One membrane-shortcut basic block, ``[T, B, C_in, H, W] -> [T, B, C_out, H/s, W/s]``."""

    def __init__(self, c_in: int, c_out: int, stride: int, lif_variant: str):
        super().__init__()
        self.lif1 = declare(LIF(lif_variant), "backbone", time="T")
        self.conv1 = declare(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), "backbone", input="binary")
        self.bn1 = declare(nn.BatchNorm2d(c_out), "backbone")
        self.lif2 = declare(LIF(lif_variant), "backbone", time="T")
        self.conv2 = declare(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), "backbone", input="binary")
        self.bn2 = declare(nn.BatchNorm2d(c_out), "backbone")
        self.shortcut = (
            ConvBN(c_in, c_out, 1, stride, 0, role="backbone", input="real") if stride != 1 or c_in != c_out else None
        )
        self.add = declare(Add(), "backbone", time="T")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = over_time(self.bn1, over_time(self.conv1, self.lif1(x)))
        out = over_time(self.bn2, over_time(self.conv2, self.lif2(out)))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.add(out, identity)


class Head(nn.Module):
    """LIF -> AdaptiveAvgPool(1) -> flatten -> Linear, per time step: ``[T, B, C, H, W] -> [T, B, classes]``."""

    def __init__(self, channels: int, num_classes: int, lif_variant: str):
        super().__init__()
        self.lif = declare(LIF(lif_variant), "head", time="T")
        self.pool = declare(nn.AdaptiveAvgPool2d(1), "head")
        self.fc = declare(nn.Linear(channels, num_classes), "head", input="real")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = over_time(self.pool, self.lif(x)).flatten(2)
        return over_time(self.fc, pooled)


class MSResNet(nn.Module):
    """GAC-MS-ResNet / MS-ResNet: images ``[B, 3, H, W]`` -> logits ``[T, B, classes]``."""

    def __init__(
        self,
        spec: ArchSpec,
        *,
        num_classes: int,
        T: int,
        coding: str = "gac",
        width: int = 64,
        sca_kernel: int = SCA_KERNEL,
    ):
        super().__init__()
        if coding not in ("gac", "direct"):
            raise ValueError(f"unknown coding {coding!r}; use 'gac' or 'direct'")
        if T < 1:
            raise ValueError(f"T must be >= 1 (got {T})")
        self.spec = spec
        self.arch = spec.name
        self.T = T
        self.num_classes = num_classes
        self.coding = coding
        self.width = width
        self.sca_kernel = sca_kernel
        variant = spec.family
        self.lif_variant = variant
        self.stem = ConvBN(
            3, width, spec.stem_kernel, spec.stem_stride, spec.stem_padding, role="encoder", input="real", static=True
        )
        self.encoder = GACEncoder(width, T, variant, sca_kernel) if coding == "gac" else DirectEncoder()
        c_in = width
        stages = []
        for n_blocks, mult, stride in zip(spec.blocks, spec.width_mult, spec.strides):
            c_out = width * mult
            blocks = []
            for j in range(n_blocks):
                blocks.append(MSBlock(c_in, c_out, stride if j == 0 else 1, variant))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.ModuleList(stages)
        self.head = Head(c_in, num_classes, variant)
        self._declare_spike_wiring()
        if spec.family == "imagenet":
            self._init_imagenet()

    def _declare_spike_wiring(self) -> None:
        """Tell the accounting which LIF site feeds each synaptic layer (``gac_rate_source``: its firing
        rate is the layer's ``fr_in`` in the paper convention) and which LIF holds its output neurons
        (``gac_output_neurons``: theta_out of the memory model). The 1x1 shortcut conv reads the same
        membrane input as the block's first LIF, so that LIF's rate stands for its input rate."""
        blocks = [(f"layers.{i}.{j}", b) for i, stage in enumerate(self.layers) for j, b in enumerate(stage)]
        first_lif = "encoder.lif" if self.coding == "gac" else blocks[0][0] + ".lif1"
        self.stem.conv.gac_output_neurons = first_lif
        for k, (prefix, block) in enumerate(blocks):
            nxt = blocks[k + 1][0] + ".lif1" if k + 1 < len(blocks) else "head.lif"
            block.conv1.gac_rate_source, block.conv1.gac_output_neurons = f"{prefix}.lif1", f"{prefix}.lif2"
            block.conv2.gac_rate_source, block.conv2.gac_output_neurons = f"{prefix}.lif2", nxt
            if block.shortcut is not None:
                block.shortcut.conv.gac_rate_source = f"{prefix}.lif1"
                block.shortcut.conv.gac_output_neurons = nxt
        self.head.fc.gac_rate_source = "head.lif"
        self.head.fc.gac_output_neurons = None

    def _init_imagenet(self) -> None:
        """Reference ImageNet init: Kaiming-normal (fan_out) convs; block BN1 weight 0.5, BN2 weight 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for stage in self.layers:
            for block in stage:
                nn.init.constant_(block.bn1.weight, 0.5)
                nn.init.constant_(block.bn2.weight, 0.0)

    def stem_output(self, images: torch.Tensor) -> torch.Tensor:
        """``I = BN(Conv(x))`` for the image repeated over T: ``[T, B, C, H', W']``."""
        x = images.unsqueeze(0).expand(self.T, *images.shape)
        return self.stem(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y = self.encoder(self.stem_output(images))
        for stage in self.layers:
            y = stage(y)
        return self.head(y)
