"""Small, seeded SpikingJelly 2.0 zoo models on which every neuron layer fires, and the peers' counts.

How every neuron layer is made to fire (the oracles compare nothing on silent layers): weights are
SpikingJelly's seeded initialisation; every BatchNorm gets weight 1 (some zoo blocks zero-initialise
their last BN, which silences the following stages at random init) and its default running statistics;
every neuron's threshold is set to ``THRESHOLD``; inputs are seeded ``rand * 2``. The tests then
assert that every LIF site fired.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections import defaultdict

import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from torch import nn

THRESHOLD = 0.05
T = 2


def _zoo(module: str, factory: str, **kwargs):
    def build():
        mod = importlib.import_module(f"spikingjelly.activation_based.model.{module}")
        return getattr(mod, factory)(**kwargs)

    return build


class OverTime(nn.Module):
    """A user's wrapper: a single-step network looped over T steps (``'s'``), or the same network fed
    the image repeated T times (``'m'``); logits averaged over time."""

    def __init__(self, net: nn.Module, T: int, step_mode: str):
        super().__init__()
        self.net, self.T, self.step_mode = net, T, step_mode
        functional.set_step_mode(net, step_mode)

    def forward(self, x):
        if self.step_mode == "s":
            return torch.stack([self.net(x) for _ in range(self.T)]).mean(0)
        return self.net(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).mean(0)


def lif_kwargs(**kw):
    return dict(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.Sigmoid(), detach_reset=True, **kw)


#: name -> (builder, image side). Transformers at their CIFAR patching, ResNets at 32x32.
ZOO = {
    "ms_resnet18": (_zoo("ms_resnet", "ms_resnet18", T=T, num_classes=10), 32),
    "ms_resnet34": (_zoo("ms_resnet", "ms_resnet34", T=T, num_classes=10), 32),
    "att_ms_resnet18": (_zoo("masnn", "att_ms_resnet18", T=T, num_classes=10), 32),
    "spikformer_cifar10": (_zoo("spikformer", "spikformer_cifar10", T=T), 32),
    "spikformer_ti": (_zoo("spikformer", "spikformer_ti", T=T, img_size_h=32, img_size_w=32, num_classes=10), 32),
    "sdt_8_384": (_zoo("spike_driven_transformer", "sdt_8_384", T=T, num_classes=10), 32),
    "qkformer_10_384": (_zoo("qkformer", "qkformer_10_384", T=T, num_classes=10), 32),
    "maxformer_cifar": (_zoo("maxformer", "maxformer_cifar", T=T, num_classes=10), 32),
    "parametric_lif_cifar10net_s": (
        lambda: OverTime(
            importlib.import_module("spikingjelly.activation_based.model.parametric_lif_net").CIFAR10Net(
                channels=8,
                spiking_neuron=neuron.ParametricLIFNode,
                surrogate_function=surrogate.ATan(),
                detach_reset=True,
            ),
            T,
            "s",
        ),
        32,
    ),
}


def prepare(model: nn.Module) -> nn.Module:
    """Seeded model in eval mode with every neuron layer firing (see module docstring)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.fill_(1.0)
        if isinstance(m, neuron.BaseNode):
            m.v_threshold = THRESHOLD
    return model.eval()


def build(name: str):
    builder, side = ZOO[name]
    torch.manual_seed(0)
    model = prepare(builder())
    images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2
    return model, images


def install_torchvision_stand_in(monkeypatch) -> None:
    """``sew_resnet``/``spiking_resnet``/``spiking_vgg`` import ``load_state_dict_from_url`` from
    torchvision, which does not import on this CPU-only torch: a stand-in module provides the one name
    (it refuses to download: the tests build untrained models)."""

    def load_state_dict_from_url(*args, **kwargs):
        raise RuntimeError("the torchvision stand-in downloads nothing")

    tv, models, utils = (types.ModuleType(n) for n in ("torchvision", "torchvision.models", "torchvision.models.utils"))
    utils.load_state_dict_from_url = load_state_dict_from_url
    tv.models, models.utils = models, utils
    for mod in (tv, models, utils):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    for family in ("sew_resnet", "spiking_resnet", "spiking_vgg"):
        monkeypatch.delitem(sys.modules, f"spikingjelly.activation_based.model.{family}", raising=False)


def scope_totals(per_path: dict[str, int]) -> dict[str, int]:
    """Cumulative counts per module scope (a module's count includes its submodules'), as
    SpikingJelly's and torch's counters record them; ``""`` is the whole model."""
    out: dict[str, int] = defaultdict(int)
    for path, value in per_path.items():
        parts = [] if path == "<model>" else path.split(".")
        for end in range(len(parts) + 1):
            out[".".join(parts[:end])] += int(value)
    return {k: v for k, v in out.items() if v}


def site_module(name: str) -> str:
    """Module path of a report site name (``blocks.0.attn:matmul#2`` -> ``blocks.0.attn``)."""
    return name.split("#")[0].split(":")[0]


def peer_scopes(counts: dict[str, dict], root: str) -> dict[str, int]:
    """A peer counter's ``{scope: {op: count}}`` as ``{module path: total}`` (``""``: the model)."""
    out = {}
    for scope, ops in counts.items():
        if scope == "Global":
            continue
        path = "" if scope == root else scope.removeprefix(root + ".")
        total = int(sum(ops.values()))
        if total:
            out[path] = total
    return out


def synop_counts(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """SpikingJelly 2.0 SynOpCounter per module scope (under no_grad: it counts nothing in inference_mode)."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    counter = SynOpCounter()
    functional.reset_net(model)
    with torch.no_grad(), DispatchCounterMode([counter]):
        model(images)
    functional.reset_net(model)
    return peer_scopes(counter.get_counts(), type(model).__name__)


def flop_counts(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """torch's FlopCounterMode per module scope, as MACs (its FLOPs / 2: conv, linear and matmul)."""
    from torch.utils.flop_counter import FlopCounterMode

    functional.reset_net(model)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(images)
    functional.reset_net(model)
    return {k: v // 2 for k, v in peer_scopes(fc.get_flop_counts(), type(model).__name__).items()}
