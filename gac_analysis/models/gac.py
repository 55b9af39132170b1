"""The GAC encoder (Qiu et al., AAAI 2024) and direct coding, time-major ``[T, B, C, H, W]``.

GAC: ``S = LIF(I)``, ``Y = sigmoid(TA(I) * SCA(I)) * S`` where ``I = BN(Conv(x))`` is the stem output.

- TA (temporal attention): per (b, t), average- and max-pool ``I[t, b]`` over (C, H, W); a shared
  MLP over the T axis ``Conv3d(T, T//2, 1) -> ReLU -> Conv3d(T//2, T, 1)`` (bias-free) is applied to
  both vectors and the results are summed (no sigmoid inside). One scalar per (t, b).
- SCA (spatial-channel attention), per step: ``Conv2d(C, C, k, 'same') -> ReLU -> Conv2d(C, C, k, 'same')``
  (bias-free; k = 4 in the reference; PyTorch pads an even kernel 1 before / 2 after).

Direct coding passes ``I`` on unchanged (the first residual block's own LIF makes the spikes).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gac_analysis.models.layers import Add, Mul, declare, over_time
from gac_analysis.models.neurons import LIF


class TemporalAttention(nn.Module):
    """TA: ``[T, B, C, H, W] -> [T, B, 1, 1, 1]`` (one value per time step and sample)."""

    def __init__(self, T: int, ratio: int = 2):
        super().__init__()
        if T // ratio < 1:
            raise ValueError(f"GAC's temporal attention needs T >= {ratio} (got T={T})")
        self.T = T
        # Pooling over (C, H, W) with T as the channel axis, as the reference does.
        # The pooled input I is the same at every step (static image): the pools are time-invariant work.
        self.avg_pool = declare(nn.AdaptiveAvgPool3d(1), "attention", time="mixed", static=True)
        self.max_pool = declare(nn.AdaptiveMaxPool3d(1), "attention", time="mixed", static=True)
        self.mlp = nn.Sequential(
            declare(nn.Conv3d(T, T // ratio, 1, bias=False), "attention", input="real", time="mixed"),
            declare(nn.ReLU(), "attention", time="mixed"),
            declare(nn.Conv3d(T // ratio, T, 1, bias=False), "attention", input="real", time="mixed"),
        )
        self.add = declare(Add(), "attention", time="mixed")

    def forward(self, i_seq: torch.Tensor) -> torch.Tensor:
        x = i_seq.transpose(0, 1)  # [B, T, C, H, W]: T is the channel axis of the shared MLP
        out = self.add(self.mlp(self.avg_pool(x)), self.mlp(self.max_pool(x)))
        return out.transpose(0, 1)


#: SCA's kernel size in the reference implementation (the default of every builder in this package).
SCA_KERNEL = 4


class SpatialChannelAttention(nn.Module):
    """SCA: ``[T, B, C, H, W] -> [T, B, C, H, W]``, the same two convs at every time step."""

    def __init__(self, channels: int, kernel: int = SCA_KERNEL):
        super().__init__()
        self.kernel = kernel
        # SCA reads I, which is the same at every step (static image): time-invariant work (``static``).
        self.mlp = nn.Sequential(
            declare(
                nn.Conv2d(channels, channels, kernel, padding="same", bias=False),
                "attention",
                input="real",
                static=True,
            ),
            declare(nn.ReLU(), "attention", static=True),
            declare(
                nn.Conv2d(channels, channels, kernel, padding="same", bias=False),
                "attention",
                input="real",
                static=True,
            ),
        )

    def forward(self, i_seq: torch.Tensor) -> torch.Tensor:
        # PyTorch warns that an even kernel with padding="same" may copy the input: expected and harmless
        # here; silenced for this call only, so the user's own warning filters stay as they are.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*padding='same' with even kernel.*")
            return over_time(self.mlp, i_seq)


class GACEncoder(nn.Module):
    """Gated attention coding: ``I -> sigmoid(TA(I) * SCA(I)) * LIF(I)`` (real-valued, non-zero where LIF fired)."""

    coding = "gac"

    def __init__(self, channels: int, T: int, lif_variant: str, sca_kernel: int = SCA_KERNEL):
        super().__init__()
        self.lif = declare(LIF(lif_variant), "encoder", time="T")
        self.ta = TemporalAttention(T)
        self.sca = SpatialChannelAttention(channels, sca_kernel)
        self.mul = declare(Mul(), "attention", time="T")
        self.sigmoid = declare(nn.Sigmoid(), "attention", time="T")
        self.gate = declare(Mul(), "attention", time="T")

    def gate_values(self, i_seq: torch.Tensor) -> torch.Tensor:
        """``G = sigmoid(TA(I) * SCA(I))``, ``[T, B, C, H, W]``, values in (0, 1)."""
        return self.sigmoid(self.mul(self.ta(i_seq), self.sca(i_seq)))

    def forward(self, i_seq: torch.Tensor) -> torch.Tensor:
        spikes = self.lif(i_seq)
        return self.gate(self.gate_values(i_seq), spikes)


class DirectEncoder(nn.Module):
    """Direct coding: the stem output ``I`` goes on unchanged (real-valued)."""

    coding = "direct"

    def forward(self, i_seq: torch.Tensor) -> torch.Tensor:
        return i_seq
