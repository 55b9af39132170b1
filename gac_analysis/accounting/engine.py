"""The generic counting engine: forward hooks that apply the rule table of ``handles.py``.

Design (after fvcore's handle table and SpikingJelly's op_counter Config/Report pair):

- one forward hook per module that has a rule; each call becomes a *site* named after the module
  (``name#2`` for its second call in one forward, so a module called twice is two sites);
- counters live as int64 tensors on the model's device and are updated in place: a hook never
  synchronises with the device (no ``.item()``, no ``bool(tensor)``) and retains no activation;
- shape-only counts are python ints; the only device sync is in :meth:`Counter.compute`.

Use :func:`gac_analysis.accounting.profile` for the one-call API, or the context manager::

    with Counter(model) as c:
        for x in batches:
            model(x)
    report = c.compute(provenance={...})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import weakref

import torch
from torch import nn

from gac_analysis.accounting.handles import SYNAPTIC_OPS, CallShape, find_handle
from gac_analysis.models.neurons import LIF


@dataclass
class CounterConfig:
    """What to count. ``T`` defaults to ``model.T``; ``roles`` restricts the modules counted."""

    T: int | None = None
    roles: tuple[str, ...] | None = None
    default_role: str = "backbone"


@dataclass
class Site:
    """One counted module call position: static description plus its counters."""

    name: str
    module_name: str
    op: str
    role: str
    time: str                         # "TB" | "T" | "mixed"
    static: bool
    declared_input: str | None
    rate_source: str | None
    output_neurons: str | None
    in_shape: tuple[int, ...]         # per image and time step (mixed: per image)
    out_shape: tuple[int, ...]
    geometry: dict = field(default_factory=dict)   # kernel, stride, c_in, c_out, has_bias (synaptic ops)
    calls: int = 0
    ints: dict[str, list[int]] = field(default_factory=dict)          # counter -> [T+1] python ints
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)    # counter -> int64 [T+1] on device


def _per_image_shape(t: torch.Tensor, layout: str) -> tuple[int, ...]:
    return tuple(t.shape[2:]) if layout == "T" else tuple(t.shape[1:])


def _geometry(module: nn.Module, op: str) -> dict:
    if op == "linear":
        return {"c_in": module.in_features, "c_out": module.out_features, "kernel": [1, 1], "stride": [1, 1],
                "groups": 1, "has_bias": module.bias is not None}
    if op in SYNAPTIC_OPS:
        return {"c_in": module.in_channels, "c_out": module.out_channels, "kernel": list(module.kernel_size),
                "stride": list(module.stride), "groups": module.groups, "has_bias": module.bias is not None}
    return {}


class Counter:
    """Context manager that instruments ``model`` with counting hooks (see module docstring)."""

    def __init__(self, model: nn.Module, config: CounterConfig | None = None):
        self.model = model
        self.config = config or CounterConfig()
        T = self.config.T if self.config.T is not None else getattr(model, "T", None)
        if T is None:
            raise ValueError("the model has no attribute T: pass CounterConfig(T=...)")
        self.T = int(T)
        self._handles = []
        self._calls: dict[str, int] = {}
        self._spike_outputs: dict[int, weakref.ref] = {}
        self.reset()

    # -- NeuroBench-style metric interface ------------------------------------------------------
    def reset(self) -> None:
        """Forget all counts (hooks stay attached)."""
        self.sites: dict[str, Site] = {}
        self.num_images = 0
        self.batches = 0

    def __enter__(self) -> "Counter":
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> None:
        if self._handles:
            return
        self._handles.append(self.model.register_forward_pre_hook(self._on_forward_start))
        for name, module in self.model.named_modules():
            rule = find_handle(module)
            if rule is None:
                continue
            role = getattr(module, "gac_role", self.config.default_role)
            if self.config.roles is not None and role not in self.config.roles:
                continue
            op, handle = rule
            self._handles.append(module.register_forward_hook(self._make_hook(name or "<model>", op, handle)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _on_forward_start(self, module, inputs) -> None:
        self._calls = {}
        self._spike_outputs: dict[int, weakref.ref] = {}
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            self.num_images += int(x.shape[0])
        self.batches += 1

    def _make_hook(self, name: str, op: str, handle):
        def hook(module, inputs, output):
            idx = self._calls.get(name, 0)
            self._calls[name] = idx + 1
            key = name if idx == 0 else f"{name}#{idx + 1}"
            layout = getattr(module, "gac_time", "T" if op == "lif" else "TB")
            cs = CallShape(self.T, layout, self._is_spike_output(inputs[0]) if op in SYNAPTIC_OPS else False)
            counts = handle(module, inputs, output, cs)
            if isinstance(module, LIF):  # 0/1 by construction: remember the storage (weakly, no retention)
                self._spike_outputs[output.untyped_storage().data_ptr()] = weakref.ref(output)
            site = self.sites.get(key)
            if site is None:
                site = self._new_site(key, name, op, module, inputs[0], output, layout)
            site.calls += 1
            self._accumulate(site, counts, layout, output.device)
        return hook

    def _is_spike_output(self, x: torch.Tensor) -> bool:
        """True when ``x`` shares its storage with a live LIF output of this forward pass."""
        ptr = x.untyped_storage().data_ptr()
        ref = self._spike_outputs.get(ptr)
        source = ref() if ref is not None else None
        return source is not None and source.untyped_storage().data_ptr() == ptr

    def _new_site(self, key, name, op, module, x, out, layout) -> Site:
        site = Site(
            name=key, module_name=name, op=op, role=getattr(module, "gac_role", self.config.default_role),
            time=layout, static=bool(getattr(module, "gac_static", False)),
            declared_input=getattr(module, "gac_input", None),
            rate_source=getattr(module, "gac_rate_source", None),
            output_neurons=getattr(module, "gac_output_neurons", None),
            in_shape=_per_image_shape(x, layout), out_shape=_per_image_shape(out, layout),
            geometry=_geometry(module, op))
        self.sites[key] = site
        return site

    def _accumulate(self, site: Site, counts: dict, layout: str, device) -> None:
        T = self.T
        if "synaptic_ops" in counts:  # split into ACs (binary input) / effective MACs (real input), no sync
            ops, binary = counts.pop("synaptic_ops"), counts["binary_calls"]
            counts["acs"] = ops * binary
            counts["effective_macs"] = ops - counts["acs"]
        for key, value in counts.items():
            if isinstance(value, torch.Tensor):
                acc = site.tensors.get(key)
                if acc is None:
                    acc = site.tensors[key] = torch.zeros(T + 1, dtype=torch.int64, device=device)
                if value.dim() == 0:
                    acc[T] += value
                else:
                    acc[:T] += value
            else:
                acc = site.ints.setdefault(key, [0] * (T + 1))
                if layout == "mixed":
                    acc[T] += value
                else:
                    for t in range(T):
                        acc[t] += value

    def compute(self, **report_kwargs):
        """Synchronise once and build the :class:`~gac_analysis.accounting.report.Report`."""
        from gac_analysis.accounting.report import build_report

        return build_report(self, **report_kwargs)
