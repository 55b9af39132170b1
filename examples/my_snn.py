"""A small user-defined spiking network, to profile with gac-analysis (docs/profile_your_snn.md).

    gac-analyze info   --model examples/my_snn.py:build --model-kwargs '{"T": 4, "channels": 16}'
    gac-analyze energy --model examples/my_snn.py:build --data digits --num-images 32 --out reports/my_snn

The network: a convolutional stem on the image repeated over T steps (direct coding), two spiking conv
stages with a residual add between spike maps (whose sums are integer-valued, not binary), spatial
average pooling, and a linear classifier whose logits are averaged over time. SpikingJelly 2.0 neurons
(LIFNode) in multi-step mode; every tensor is laid out [T, B, ...].
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn


class MySNN(nn.Module):
    """Conv-BN-LIF stem, two Conv-BN-LIF stages with a residual add, pooling, linear classifier.

    Args:
        T: time steps (the image is presented at each of them).
        channels: width of the conv stages.
        num_classes: outputs of the classifier.
        tau: LIF membrane time constant (a float).
    """

    def __init__(self, T: int = 4, channels: int = 16, num_classes: int = 10, tau: float = 2.0):
        super().__init__()
        self.T = T

        def lif():
            return neuron.LIFNode(tau=float(tau), surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")

        self.stem = nn.Sequential(
            layer.Conv2d(3, channels, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(channels, step_mode="m"),
            lif(),
        )
        self.stage1 = nn.Sequential(
            layer.Conv2d(channels, channels, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(channels, step_mode="m"),
            lif(),
        )
        self.stage2 = nn.Sequential(
            layer.Conv2d(channels, channels, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(channels, step_mode="m"),
            lif(),
        )
        self.pool = layer.AdaptiveAvgPool2d(1, step_mode="m")
        self.classifier = layer.Linear(channels, num_classes, step_mode="m")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)  # [T, B, 3, H, W]
        s = self.stem(x)
        y = self.stage2(self.stage1(s))
        z = s + y  # residual: integer-valued (0, 1 or 2)
        z = self.pool(z).flatten(2)  # [T, B, channels]
        return self.classifier(z).mean(0)  # logits [B, num_classes]


def build(T: int = 4, channels: int = 16, num_classes: int = 10) -> MySNN:
    """The factory that ``--model examples/my_snn.py:build`` calls (keyword arguments: ``--model-kwargs``)."""
    return MySNN(T=T, channels=channels, num_classes=num_classes)
