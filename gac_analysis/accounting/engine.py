"""The generic counting engine: module hooks and a narrow function interceptor applying the rule tables.

Design (after fvcore's handle table and SpikingJelly's op_counter Config/Report pair):

- one forward hook per module that has a rule (``handles.py``); each call becomes a *site* named
  after the module (``name#2`` for its second call in one forward, so a module called twice is two
  sites); every neuron (this project's ``LIF``, any SpikingJelly ``BaseNode``) is a LIF site;
- tensor operations called outside any counted module (``x + y``, ``q @ k``, ``x.sum()``) are seen by
  :class:`~gac_analysis.accounting.functional.FunctionCounter` and counted by its rules, known to be
  free, or recorded as unsupported: sites named ``module.path:op`` (``#2`` for the second such op in
  one call of that module);
- time: a call's layout is declared (``gac_time``), given by a neuron's ``step_mode``, or read from
  its shape: ``[T, B, ...]``, ``[T*B, ...]``, or ``[B, ...]`` (one time step: a single-step model
  whose forward loops over T calls each module once per step; its n-th call of a forward is step
  ``n * T // calls`` when the calls split evenly into T steps, else time-mixed work);
- counters live as int64 tensors on the model's device and are updated in place: a hook never
  synchronises with the device (no ``.item()``, no ``bool(tensor)``) and retains no activation;
  shape-only counts are python ints; the only device sync is in :meth:`OpCounter.compute`.

Use :func:`gac_analysis.accounting.profile` for the one-call API, or the context manager::

    with OpCounter(model) as c:
        for x in batches:
            model(x)
    report = c.compute(provenance={...})
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from gac_analysis.accounting.functional import UNSUPPORTED, FunctionCounter, OpClassifier, _first_tensor
from gac_analysis.accounting.handles import HANDLES, NEURON_TYPES, SYNAPTIC_OPS, CallShape, find_handle
from gac_analysis.errors import GacError
from gac_analysis.models.neurons import LIF


class TimeStepsError(GacError):
    """The number of time steps is unknown or contradicts the model's own."""


class UnsupportedOpsError(GacError):
    """The forward ran operations that no counting rule knows (``strict=True``)."""


@dataclass
class CounterConfig:
    """What to count. ``T`` defaults to ``model.T``; ``roles`` restricts the modules counted;
    ``handles`` is the module rule table (``register_handle`` returns an extended copy);
    ``function_rules`` the function-name rule table (default: ``functional.FUNCTION_RULES``)."""

    T: int | None = None
    roles: tuple[str, ...] | None = None
    default_role: str = "backbone"
    handles: tuple = HANDLES
    function_rules: dict | None = None


@dataclass
class Site:
    """One counted module call position: static description plus its counters."""

    name: str
    module_name: str
    op: str
    role: str
    time: str  # "TB" | "T" | "mixed" | "step" (one time step per call)
    static: bool
    declared_input: str | None
    rate_source: str | None
    output_neurons: str | None
    in_shape: tuple[int, ...]  # per image and time step (mixed: per image)
    out_shape: tuple[int, ...]
    geometry: dict = field(default_factory=dict)  # kernel, stride, c_in, c_out, has_bias (synaptic ops)
    calls: int = 0
    neuron: str | None = None  # neuron class name (LIF sites)
    ints: dict[str, list[int]] = field(default_factory=dict)  # counter -> [T+1] python ints
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # counter -> int64 [T+1] on device


def _per_image_shape(t: torch.Tensor, layout: str) -> tuple[int, ...]:
    return tuple(t.shape[2:]) if layout == "T" else tuple(t.shape[1:])


def _geometry(module: nn.Module, op: str) -> dict:
    if op == "linear":
        return {
            "c_in": module.in_features,
            "c_out": module.out_features,
            "kernel": [1, 1],
            "stride": [1, 1],
            "groups": 1,
            "has_bias": module.bias is not None,
        }
    if op in SYNAPTIC_OPS:
        return {
            "c_in": module.in_channels,
            "c_out": module.out_channels,
            "kernel": list(module.kernel_size),
            "stride": list(module.stride),
            "groups": module.groups,
            "has_bias": module.bias is not None,
        }
    return {}


def _binary_neuron(module: nn.Module) -> bool:
    """True for neurons whose output is 0/1 by construction: this project's LIF, and SpikingJelly's
    IF/LIF/ParametricLIF nodes firing through a surrogate's Heaviside forward (``spiking=True``).
    Other neurons (ternary, graded, ...) have their outputs checked by value where they are used."""
    if isinstance(module, LIF):
        return True
    from spikingjelly.activation_based import neuron

    return type(module) in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode) and bool(
        getattr(getattr(module, "surrogate_function", None), "spiking", False)
    )


def resolve_T(model: nn.Module, T: int | None) -> int:
    """The number of time steps: ``T`` or ``model.T``; both missing, or both given and different, is
    a :class:`TimeStepsError`."""
    model_T = getattr(model, "T", None)
    if T is None and model_T is None:
        raise TimeStepsError(
            f"{type(model).__name__} has no attribute T and no T was given: pass "
            "profile(model, images, T=...) (CLI: --T)"
        )
    if T is not None and model_T is not None and int(T) != int(model_T):
        raise TimeStepsError(
            f"T={T} was given but {type(model).__name__}.T is {model_T}: drop the T argument "
            "or build the model with that T"
        )
    T = int(T if T is not None else model_T)
    if T < 1:
        raise TimeStepsError(f"T must be >= 1 (got {T})")
    return T


class OpCounter:
    """Context manager that instruments ``model`` with counting hooks (see module docstring)."""

    def __init__(self, model: nn.Module, config: CounterConfig | None = None):
        self.model = model
        self.config = config or CounterConfig()
        self.T = resolve_T(model, self.config.T)
        self._handles = []
        self._mode: FunctionCounter | None = None
        self._neurons = [m for m in model.modules() if isinstance(m, NEURON_TYPES)]
        modes = {getattr(m, "step_mode", "m") for m in self._neurons}
        self.single_step = modes == {"s"}
        self.quiet = True
        self._new_forward()
        self.reset()

    # -- NeuroBench-style metric interface ------------------------------------------------------
    def reset(self) -> None:
        """Forget all counts (hooks stay attached)."""
        self.sites: dict[str, Site] = {}
        self.num_images = 0
        self.batches = 0
        self.counted_calls = 0
        self.free_calls = 0
        self.unsupported: dict[tuple[str, str], list[int]] = {}  # (op, module path) -> [calls, elements]

    @property
    def unsupported_calls(self) -> int:
        return sum(calls for calls, _ in self.unsupported.values())

    def coverage(self) -> dict:
        """``{"counted_calls", "free_calls", "unsupported_calls"}`` over every forward seen."""
        return {
            "counted_calls": self.counted_calls,
            "free_calls": self.free_calls,
            "unsupported_calls": self.unsupported_calls,
        }

    def coverage_state(self) -> tuple[int, int, dict]:
        """Picklable coverage counts (for summing across processes with :meth:`merge_coverage`)."""
        return self.counted_calls, self.free_calls, {k: list(v) for k, v in self.unsupported.items()}

    def merge_coverage(self, states: list[tuple[int, int, dict]]) -> None:
        """Set the coverage counts to the sum of ``states`` (every process's :meth:`coverage_state`)."""
        self.counted_calls = sum(s[0] for s in states)
        self.free_calls = sum(s[1] for s in states)
        merged: dict[tuple[str, str], list[int]] = {}
        for _, _, rows in states:
            for key, (calls, elements) in rows.items():
                rec = merged.setdefault(key, [0, 0])
                rec[0] += calls
                rec[1] += elements
        self.unsupported = merged

    def unsupported_rows(self) -> list[dict]:
        """One row per (op, module path) without a rule: ``op``, ``module``, ``calls``, ``elements``."""
        return [
            {"op": op, "module": path, "calls": calls, "elements": elements}
            for (op, path), (calls, elements) in self.unsupported.items()
        ]

    def __enter__(self) -> "OpCounter":
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> None:
        if self._handles:
            return
        model = self.model
        self._handles.append(model.register_forward_pre_hook(self._on_forward_start))
        for name, module in model.named_modules():
            path = name or "<model>"
            rule = find_handle(module, self.config.handles)
            role = getattr(module, "gac_role", self.config.default_role)
            if rule is not None and (self.config.roles is None or role in self.config.roles):
                op, handle = rule
                self._handles.append(module.register_forward_pre_hook(self._enter_counted))
                self._handles.append(module.register_forward_hook(self._make_hook(path, op, handle)))
            elif module is not model:
                self._handles.append(module.register_forward_pre_hook(self._make_push(path)))
                self._handles.append(module.register_forward_hook(self._pop))
        self._handles.append(model.register_forward_hook(self._on_forward_end))
        self._mode = FunctionCounter(self, OpClassifier(self.config.function_rules))
        self._mode.__enter__()

    def detach(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles = []
        self.quiet = True

    # -- per forward -----------------------------------------------------------------------------
    def _new_forward(self, batch: int = 0) -> None:
        self._calls: dict[str, int] = {}
        self._spike_outputs: dict[int, weakref.ref] = {}
        self._stack: list[list] = [["<model>", {}]]
        self._covered = 0
        self._pending: dict[str, list] = {}
        self._batch = batch

    def _on_forward_start(self, module, inputs) -> None:
        x = inputs[0] if inputs else None
        batch = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else 0
        self._new_forward(batch)
        self.num_images += batch
        self.batches += 1
        self.quiet = False

    def _on_forward_end(self, module, inputs, output) -> None:
        self.quiet = True
        self._resolve_steps()

    def _make_push(self, path: str):
        def push(module, inputs):
            self._stack.append([path, {}])

        return push

    def _pop(self, module, inputs, output) -> None:
        if len(self._stack) > 1:
            self._stack.pop()

    def _enter_counted(self, module, inputs) -> None:
        self._covered += 1
        self.quiet = True

    def _layout(self, module: nn.Module, op: str, shape) -> str:
        """``T``, ``TB``, ``mixed`` or ``step`` (one time step of ``[B, ...]``), see module docstring."""
        declared = getattr(module, "gac_time", None)
        if declared is not None:
            return declared
        if op == "lif":
            if isinstance(module, LIF):
                return "T"
            return "step" if getattr(module, "step_mode", "m") == "s" else "T"
        return self._shape_layout(shape)

    def _shape_layout(self, shape) -> str:
        T, B = self.T, self._batch
        if len(shape) == 0:
            return "mixed"
        d0 = shape[0]
        if self.single_step and d0 == B:
            return "step"
        if T > 1 and d0 == T and len(shape) > 1 and shape[1] == B:
            return "T"
        if d0 == T * B:
            return "TB"
        return "step" if d0 == B else "mixed"

    def _make_hook(self, name: str, op: str, handle):
        def hook(module, inputs, output):
            try:
                x = inputs[0] if inputs else None
                out = _first_tensor(output)
                if not isinstance(x, torch.Tensor) or out is None:
                    return
                layout = self._layout(module, op, out.shape)
                spike = self._is_spike_output(x) if op in SYNAPTIC_OPS else False
                self.counted_calls += 1
                if layout == "step":
                    key = name
                    h_out = out.unsqueeze(0) if op == "lif" else out
                    counts = handle(module, (x, *inputs[1:]), h_out, CallShape(1, "TB", spike))
                else:
                    idx = self._calls.get(name, 0)
                    self._calls[name] = idx + 1
                    key = name if idx == 0 else f"{name}#{idx + 1}"
                    counts = handle(module, inputs, out, CallShape(self.T, layout, spike))
                if op == "lif" and _binary_neuron(module):  # 0/1 by construction: remember the storage (weakly)
                    self._spike_outputs[out.untyped_storage().data_ptr()] = weakref.ref(out)
                site = self.sites.get(key)
                if site is None:
                    site = self._new_site(key, name, op, module, x, out, layout)
                site.calls += 1
                if layout == "step":
                    self._pending.setdefault(key, []).append(counts)
                else:
                    self._accumulate(site, counts, layout)
            finally:
                self._covered -= 1
                self.quiet = self._covered > 0

        return hook

    def on_function(self, kind: int, name: str, rule, args, kwargs, out) -> None:
        """Count one intercepted function call made outside any counted module (see functional.py)."""
        self.quiet = True
        try:
            path, per_op = self._stack[-1]
            o = _first_tensor(out)
            if kind != UNSUPPORTED:
                layout = self._shape_layout(o.shape) if o is not None else "mixed"
                spikes = False
                if rule.op == "matmul" and len(args) >= 2 and all(isinstance(t, torch.Tensor) for t in args[:2]):
                    spikes = (self._is_spike_output(args[0]), self._is_spike_output(args[1]))
                cs = CallShape(1, "TB", spikes) if layout == "step" else CallShape(self.T, layout, spikes)
                counts = rule(args, kwargs, out, cs) if o is not None else None
                if counts is not None:
                    op = rule.op
                    idx = per_op.get(op, 0)
                    per_op[op] = idx + 1
                    key = f"{path}:{op}" if idx == 0 else f"{path}:{op}#{idx + 1}"
                    self.counted_calls += 1
                    site = self.sites.get(key)
                    if site is None:
                        x = _first_tensor(args)
                        site = self._new_site(key, path, op, None, x if x is not None else o, o, layout)
                    site.calls += 1
                    if layout == "step":
                        self._pending.setdefault(key, []).append(counts)
                    else:
                        self._accumulate(site, counts, layout)
                    return
            rec = self.unsupported.setdefault((name, path), [0, 0])
            rec[0] += 1
            rec[1] += int(o.numel()) if o is not None else 0
        finally:
            self.quiet = self._covered > 0

    def _resolve_steps(self) -> None:
        """Place the single-step calls of the forward that just ended at their time steps."""
        for key, calls in self._pending.items():
            n = len(calls)
            site = self.sites[key]
            for i, counts in enumerate(calls):
                self._accumulate(site, counts, "step", step=i * self.T // n if n % self.T == 0 else self.T)
        self._pending = {}

    def _is_spike_output(self, x: torch.Tensor) -> bool:
        """True when ``x`` shares its storage with a live 0/1 neuron output of this forward pass."""
        ptr = x.untyped_storage().data_ptr()
        ref = self._spike_outputs.get(ptr)
        source = ref() if ref is not None else None
        return source is not None and source.untyped_storage().data_ptr() == ptr

    def _new_site(self, key, name, op, module, x, out, layout) -> Site:
        site = Site(
            name=key,
            module_name=name,
            op=op,
            role=getattr(module, "gac_role", self.config.default_role),
            time=layout,
            static=bool(getattr(module, "gac_static", False)),
            declared_input=getattr(module, "gac_input", None),
            rate_source=getattr(module, "gac_rate_source", None),
            output_neurons=getattr(module, "gac_output_neurons", None),
            in_shape=_per_image_shape(x, layout),
            out_shape=_per_image_shape(out, layout),
            geometry=_geometry(module, op) if module is not None else {},
            neuron=type(module).__name__ if op == "lif" else None,
        )
        self.sites[key] = site
        return site

    @staticmethod
    def _split_synaptic(counts: dict) -> None:
        """Split a call's exact synaptic ops by its observed input kind (no sync): ACs (binary),
        integer ops (integer-valued, plus their value-weighted count), effective MACs (real)."""
        ops = counts.pop("synaptic_ops")
        value_ops = counts.pop("synaptic_value_ops", None)
        counts["acs"] = ops * counts["binary_calls"]
        integer = counts.get("integer_calls")
        if integer is None:
            counts["effective_macs"] = ops - counts["acs"]
            return
        counts["integer_ops"] = ops * integer
        if value_ops is not None:
            counts["integer_value_ops"] = value_ops * integer
        counts["effective_macs"] = ops - counts["acs"] - counts["integer_ops"]

    def _accumulate(self, site: Site, counts: dict, layout: str, step: int | None = None) -> None:
        """Add one call's counts: per step (``[T]`` tensors, per-step ints), at one ``step`` (single-step
        calls), or into the time-mixed slot ``T`` (mixed layout, 0-dim totals, per-call flags)."""
        T = self.T
        if "synaptic_ops" in counts:
            self._split_synaptic(counts)
        for key, value in counts.items():
            if isinstance(value, torch.Tensor):
                acc = site.tensors.get(key)
                if acc is None:
                    acc = site.tensors[key] = torch.zeros(T + 1, dtype=torch.int64, device=value.device)
                if key.endswith("_calls"):
                    acc[T] += value
                elif step is not None:
                    acc[step] += value.sum()
                elif value.dim() == 0:
                    acc[T] += value
                else:
                    acc[:T] += value
            else:
                acc = site.ints.setdefault(key, [0] * (T + 1))
                if step is not None:
                    acc[step] += value
                elif layout == "mixed":
                    acc[T] += value
                else:
                    for t in range(T):
                        acc[t] += value

    def compute(self, **report_kwargs):
        """Synchronise once and build the :class:`~gac_analysis.accounting.report.Report`."""
        from gac_analysis.accounting.report import build_report

        return build_report(self, **report_kwargs)
