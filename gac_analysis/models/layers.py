"""Building blocks shared by the models, and the role declarations the accounting reads.

Every module that does work declares, as plain attributes read by ``gac_analysis.accounting``:

- ``gac_role``: ``"encoder"``, ``"attention"``, ``"backbone"`` or ``"head"``;
- ``gac_input``: for conv/linear layers, the declared input kind, ``"binary"`` (spikes: AC
  world) or ``"real"`` (MAC world); the accounting checks the observed values against it;
- ``gac_time``: how the module sees time: ``"TB"`` (a flattened ``[T*B, ...]`` batch, time-major),
  ``"T"`` (a ``[T, B, ...]`` tensor) or ``"mixed"`` (time is a feature axis, e.g. the TA MLP);
- ``gac_static``: ``True`` when the module's input is the same at every time step (stem conv on
  the repeated image), so its work may be counted once.
"""

from __future__ import annotations

import torch
from torch import nn

ROLES = ("encoder", "attention", "backbone", "head")
INPUT_KINDS = ("binary", "real")
TIME_LAYOUTS = ("TB", "T", "mixed")


def declare(
    module: nn.Module, role: str, *, input: str | None = None, time: str = "TB", static: bool = False
) -> nn.Module:
    """Attach the accounting declarations to ``module`` (see module docstring) and return it."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {ROLES}")
    if input is not None and input not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input!r}; use one of {INPUT_KINDS}")
    if time not in TIME_LAYOUTS:
        raise ValueError(f"unknown time layout {time!r}; use one of {TIME_LAYOUTS}")
    module.gac_role = role
    module.gac_input = input
    module.gac_time = time
    module.gac_static = static
    return module


def over_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample module to every time step: ``[T, B, ...] -> [T, B, ...]``.

    The module sees one flattened, time-major batch ``[T*B, ...]`` (row ``i`` is step ``i // B``).
    """
    y = module(x.flatten(0, 1))
    return y.unflatten(0, x.shape[:2])


class Add(nn.Module):
    """Elementwise ``a + b`` as a module, so that hooks can count it (one add per output element)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """Elementwise ``a * b`` (with broadcasting) as a module: one multiply per output element."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class ConvBN(nn.Module):
    """A bias-free conv followed by BatchNorm2d, applied per time step to ``[T, B, C, H, W]``.

    BatchNorm2d over the flattened ``T*B`` batch is the reference's BN (BatchNorm2d over ``B*T``
    on CIFAR, BatchNorm3d over ``(B, T, H, W)`` on ImageNet: per-channel, identical in eval mode).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        *,
        role: str,
        input: str,
        static: bool = False,
    ):
        super().__init__()
        self.conv = declare(
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), role, input=input, static=static
        )
        self.bn = declare(nn.BatchNorm2d(c_out), role, static=static)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return over_time(self.bn, over_time(self.conv, x))
