"""The LIF neuron of the GAC reference code, in its two variants, on SpikingJelly.

Dynamics per time step t (membrane starts at 0 on every forward call):

    u[t]  = decay * u_reset[t-1] + x[t]
    s[t]  = 1 if u[t] > v_threshold else 0          (strictly greater: the reference rule)
    u_reset[t] = u[t] * (1 - s[t])                  (hard reset to 0)

Firing rule: this project fires on ``u > V_th`` (strict), as the reference code does.
SpikingJelly's own heaviside fires on ``u >= V_th``; the two differ only at exact equality.

| variant  | decay | V_th | reset in the graph | surrogate dS/du                                  |
|----------|-------|------|--------------------|--------------------------------------------------|
| cifar    | 0.5   | 1.0  | not detached       | triangle (1/g^2) max(0, g - abs(u - V_th)), g=1 |
| imagenet | 0.25  | 0.5  | detached           | rectangle: 1 where abs(u - 0.5) < 0.5           |

The neuron is a SpikingJelly ``LIFNode`` (``tau = 1 / (1 - decay)``, ``decay_input=False``, hard
reset to 0, multi-step mode), so that SpikingJelly's neuron-aware counters and profilers
(``NeuronStateCounter``, the Simple and Lemaire energy profilers) recognise it as a LIF neuron and
find its membrane ``v`` as a state tensor. Its forward is its own charge / fire / reset loop with
the charge written as ``decay * v + x``, bit-identical to the reference (SpikingJelly's LIFNode
computes ``v - v / tau + x``, which rounds differently for tau = 4/3).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron.lif import LIFNode

#: Loggers that report, on the first neuron forward on a CPU-only torch, that Triton is not available
#: (harmless): silenced only around that forward, never at import.
_BACKEND_LOGGERS = ("torch._inductor", "torch.utils._triton", "spikingjelly")
_first_forward_done = False


@contextlib.contextmanager
def quiet_backend_logs():
    """Raise the backend loggers above INFO/WARNING inside the block and restore their levels after it."""
    loggers = [logging.getLogger(name) for name in _BACKEND_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _StrictSpikeTriangle(torch.autograd.Function):
    """Forward: (x > 0) as float. Backward: triangle surrogate of width ``gamma``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        g = ctx.gamma
        sg = (g - x.abs()).clamp(min=0) / (g * g)
        return grad_output * sg, None


class _StrictSpikeRectangle(torch.autograd.Function):
    """Forward: (x > 0) as float. Backward: 1 where abs(x + v_th - 0.5) < 0.5, i.e. a box of width 1
    centred on u = 0.5 (``x = u - v_th``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, v_threshold: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.v_threshold = v_threshold
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        u = x + ctx.v_threshold
        return grad_output * ((u - 0.5).abs() < 0.5).to(grad_output.dtype), None


class TriangleStrict(surrogate.SurrogateFunctionBase):
    """SpikingJelly surrogate: strict ``>`` firing, triangle gradient (CIFAR reference)."""

    def __init__(self, gamma: float = 1.0):
        super().__init__(spiking=True, gamma=gamma)

    @staticmethod
    def spiking_function(x, gamma):
        return _StrictSpikeTriangle.apply(x, gamma)

    @staticmethod
    def primitive_function(x, gamma):
        return (x / gamma + 0.5).clamp(0.0, 1.0)


class RectangleStrict(surrogate.SurrogateFunctionBase):
    """SpikingJelly surrogate: strict ``>`` firing, rectangular gradient on (0, 1) (ImageNet reference)."""

    def __init__(self, v_threshold: float = 0.5):
        super().__init__(spiking=True, v_threshold=v_threshold)

    @staticmethod
    def spiking_function(x, v_threshold):
        return _StrictSpikeRectangle.apply(x, v_threshold)

    @staticmethod
    def primitive_function(x, v_threshold):
        return (x + v_threshold).clamp(0.0, 1.0)


@dataclass(frozen=True)
class LIFVariant:
    """Constants of one reference LIF variant."""

    name: str
    decay: float
    v_threshold: float
    detach_reset: bool
    surrogate: str  # "triangle" | "rectangle"

    @property
    def tau(self) -> float:
        """SpikingJelly's equivalent time constant (decay_input=False): tau = 1 / (1 - decay)."""
        return 1.0 / (1.0 - self.decay)


LIF_VARIANTS: dict[str, LIFVariant] = {
    "cifar": LIFVariant("cifar", decay=0.5, v_threshold=1.0, detach_reset=False, surrogate="triangle"),
    "imagenet": LIFVariant("imagenet", decay=0.25, v_threshold=0.5, detach_reset=True, surrogate="rectangle"),
}


class LIF(LIFNode):
    """Multi-step LIF neuron ``[T, ...] -> [T, ...]`` of the GAC reference (see module docstring).

    Stateless between calls: the membrane starts at 0 on every forward, so one module may be called
    several times in a forward pass exactly like the reference. During a call ``v`` is a tensor of
    the input's shape (as SpikingJelly's state counters expect); after it, ``v`` is back to 0.0.
    """

    def __init__(self, variant: str = "cifar"):
        if variant not in LIF_VARIANTS:
            raise ValueError(f"unknown LIF variant {variant!r}; use one of {sorted(LIF_VARIANTS)}")
        v = LIF_VARIANTS[variant]
        sg = TriangleStrict(1.0) if v.surrogate == "triangle" else RectangleStrict(v.v_threshold)
        super().__init__(
            tau=v.tau,
            decay_input=False,
            v_threshold=v.v_threshold,
            v_reset=0.0,
            surrogate_function=sg,
            detach_reset=v.detach_reset,
            step_mode="m",
        )
        self.variant = v.name
        self.decay = v.decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """u = decay * u + x (the reference arithmetic, exactly)."""
        self.v = self.decay * self.v + x

    def neuronal_fire(self) -> torch.Tensor:
        """s = 1 where u > V_th (the surrogate's forward is the strict Heaviside)."""
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        """Hard reset to ``v_reset`` (0) where the neuron fired."""
        spike_d = spike.detach() if self.detach_reset else spike
        self.v = spike_d * self.v_reset + (1.0 - spike_d) * self.v

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        global _first_forward_done
        self.reset()
        self.v = torch.zeros_like(x_seq[0])  # the membrane as a state tensor, as SpikingJelly keeps it
        if _first_forward_done:
            out = torch.stack([self.single_step_forward(x) for x in x_seq])
        else:
            with quiet_backend_logs():
                out = torch.stack([self.single_step_forward(x) for x in x_seq])
            _first_forward_done = True
        self.reset()  # hold no state (and no tensor) after the call
        return out

    def extra_repr(self) -> str:
        return f"variant={self.variant}, decay={self.decay}, v_threshold={self.v_threshold}, fire='u > V_th'"


def lif_reference(x_seq: torch.Tensor, decay: float, v_threshold: float) -> torch.Tensor:
    """Plain-torch LIF forward (no SpikingJelly), time-major ``[T, ...]``: the test oracle."""
    u = torch.zeros_like(x_seq[0])
    out = []
    for t in range(x_seq.shape[0]):
        u = decay * u + x_seq[t]
        s = (u > v_threshold).to(x_seq.dtype)
        u = u * (1 - s)
        out.append(s)
    return torch.stack(out)
