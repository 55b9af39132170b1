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
- counters: shape-only counts are python ints; data-dependent ones are queued per call (``[T]``
  tensors, 0-dim totals, per-row :class:`~gac_analysis.accounting.handles.Rows`) and summed into one
  int64 accumulator on the model's device with one ``index_add_`` when the forward ends. A hook
  retains no activation and never synchronises with a GPU (on the CPU, where reading a value costs
  nothing, rules read input kinds on the host); the only device sync is in :meth:`OpCounter.compute`
  (and one read per batch of the finiteness sentinel, ``count_images``).

Use :func:`gac_analysis.accounting.profile` for the one-call API, or the context manager::

    with OpCounter(model) as c:
        for x in batches:
            model(x)
    report = c.compute(provenance={...})
"""

from __future__ import annotations

import functools
import math
import os
import sys
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from gac_analysis.accounting import ranges
from gac_analysis.accounting.functional import (
    ARITHMETIC,
    IN_PLACE,
    KEEP,
    KEEP_FIRST,
    NO_RANGE,
    UNSUPPORTED,
    FunctionCounter,
    OpClassifier,
    _first_tensor,
    op_label,
)
from gac_analysis.accounting.handles import (
    HANDLES,
    NEURON_DYNAMICS,
    NEURON_TYPES,
    SYNAPTIC_OPS,
    CallShape,
    Rows,
    base_call_matches,
    extends_forward,
    find_handle,
    own_primitives,
)
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


def _per_image_shape(t: torch.Tensor | torch.Size, layout: str) -> tuple[int, ...]:
    shape = t.shape if isinstance(t, torch.Tensor) else t
    return tuple(shape[2:]) if layout == "T" else tuple(shape[1:])


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
    """The number of time steps: ``T`` or ``model.T``; both missing, both given and different, or one
    that is not a whole number >= 1 is a :class:`TimeStepsError`."""
    model_T = getattr(model, "T", None)
    if T is None and model_T is None:
        raise TimeStepsError(
            f"{type(model).__name__} has no attribute T and no T was given: give the time steps with --T N "
            "(Python: profile(model, images, T=N))"
        )
    given = None if T is None else _whole_steps(T, "T")
    own = None if model_T is None else _whole_steps(model_T, f"{type(model).__name__}.T")
    if given is not None and own is not None and given != own:
        raise TimeStepsError(
            f"T={given} was given but {type(model).__name__}.T is {own}: drop the T argument "
            "or build the model with that T"
        )
    return given if given is not None else own


def _whole_steps(value, what: str) -> int:
    """``value`` as a number of time steps (a whole number >= 1), else a :class:`TimeStepsError`."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise TimeStepsError(f"{what} must be a whole number of time steps (got {value!r})")
    if int(value) < 1:
        raise TimeStepsError(f"{what} must be >= 1 (got {int(value)})")
    return int(value)


class _ModuleRule:
    """What the engine knows of one counted module before it runs (fixed at :meth:`OpCounter.attach`)."""

    __slots__ = ("name", "op", "handle", "layout", "synaptic", "binary_output", "value_rule", "extended")

    def __init__(self, name: str, op: str, handle, module: nn.Module, extended: bool = False):
        self.name = name
        self.op = op
        self.handle = handle
        self.extended = extended  # a subclass whose forward does more: intercepted inside (handles.extends_forward)
        declared = getattr(module, "gac_time", None)
        if declared is None and op == "lif":
            steps = "T" if isinstance(module, LIF) else getattr(module, "step_mode", "m")
            declared = "step" if steps == "s" else "T"
        self.layout = declared  # None: read from each call's shape
        self.synaptic = op in SYNAPTIC_OPS
        self.binary_output = op == "lif" and _binary_neuron(module)
        # what the call does to value ranges, as functional.value_rule says it of a function: the max of a
        # window keeps its input's range; this project's Add / Mul modules compute theirs; others make new values
        self.value_rule = {"maxpool": (KEEP_FIRST, None), "add": (ARITHMETIC, "add"), "mul": (ARITHMETIC, "mul")}.get(
            op, (NO_RANGE, None)
        )


class OpenCall:
    """One forward of a module counted open (``handles.extends_forward``), while it runs: its base calls are
    counted by its rule the moment each one returns, from what that call received and returned (so a
    slice or reduction around ``super().forward``, a second ``super().forward``, or a change made in place
    afterwards changes nothing in them). A module's base call is a call of its type's own function
    (``handles.own_primitives``) with the module's geometry (``handles.base_call_matches``); a conv's own
    ``pad`` (non-'zeros' padding modes) belongs to the conv call that reads its output, whose input is
    then the one before the padding, as the rule expects. A neuron's base calls are the calls of its
    dynamics methods (``handles.NEURON_DYNAMICS``) made by its forward (:meth:`OpCounter._record_dynamics`).
    ``seen`` is False when the module runs inside a closed counted module (interceptor off): it is then
    counted closed, from its own input and output."""

    __slots__ = ("owner", "path", "op", "primitives", "count", "seen", "calls", "depth", "_padded")

    def __init__(self, owner: nn.Module, path: str, op: str, primitives: frozenset, count, seen: bool = True):
        self.owner = owner
        self.path = path  # its module path: a base call is made while its own forward is the innermost
        self.op = op
        self.primitives = primitives
        self.count = count  # (module, input, output, layout or None) -> None: the rule counts one base call
        self.seen = seen
        self.calls = 0  # base calls counted so far
        self.depth = 0  # a neuron's dynamics running (a sequence calling its single step: one base call)
        self._padded: tuple | None = None  # (input, output) of the type's own pad, for the call reading it

    def owns(self, name: str, args: tuple, kwargs: dict) -> bool:
        """The call is a base call of this module (or its own pad)."""
        return name in self.primitives and base_call_matches(self.owner, self.op, name, args, kwargs)

    def record(self, name: str, args: tuple, kwargs: dict, out) -> None:
        """A base call (or its pad) returned: count it."""
        x = args[0] if args else kwargs.get("input")
        if name == "pad":
            self._padded = (x, out)
            return
        if self._padded is not None and x is self._padded[1]:
            x = self._padded[0]
        self._padded = None
        self.base_call(x, out)

    def base_call(self, x, out, layout: str | None = None) -> None:
        self.calls += 1
        self.count(self.owner, x, out, layout)


#: No instance attribute of that name before a wrapper was set (see ``OpCounter.detach``).
_ABSENT = object()


def _plain_container(module: nn.Module) -> bool:
    """A torch container whose own forward only chains its children (no tensor operation of its own)."""
    return type(module).forward in (nn.Sequential.forward, nn.ModuleList.forward, nn.ModuleDict.forward)


class OpCounter:
    """Context manager that instruments ``model`` with counting hooks (see module docstring).

    Per forward, a counted call costs two small hooks and its handle's few tensor operations; the
    data-dependent counts of all calls are summed into one int64 accumulator (``[slots]`` on the
    model's device) with one ``index_add_`` at the end of the forward; ``sites[...].tensors`` are views
    of it. The function interceptor is on the stack only during the model's forward and is taken off
    it while a counted module runs (that module's rule covers its internal operations), so the
    operations inside neurons and convolutions pay nothing."""

    def __init__(self, model: nn.Module, config: CounterConfig | None = None):
        self.model = model
        self.config = config or CounterConfig()
        self.T = resolve_T(model, self.config.T)
        self._handles = []
        self._instance_methods: list[tuple] = []  # (module, name, its instance attribute before) to restore
        self._mode: FunctionCounter | None = None
        self._mode_on = False  # the interceptor is on the torch-function stack
        self._neurons = [m for m in model.modules() if isinstance(m, NEURON_TYPES)]
        modes = {getattr(m, "step_mode", "m") for m in self._neurons}
        self.single_step = modes == {"s"}
        self.quiet = True
        #: ``(label, args)`` -> None, called before a function that can hide NaN/inf (``functional.VANISHING``)
        #: runs between modules; set by ``count_images`` to its finiteness sentinel, else None.
        self.watch_inputs = None
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
        self._slots: dict[tuple[str, str], int] = {}  # (site, counter) -> first of its T + 1 accumulator slots
        self._acc: torch.Tensor | None = None  # int64 [slots] on the model's device
        self._buf: list = []  # this forward's tensor counts, summed into _acc when it ends

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
        rules: dict[type, tuple] = {}  # a module type's (rule or None, extends_forward), looked up once
        covered: set[int] = set()  # modules inside a counted module: their work is that module's
        self._handles.append(model.register_forward_pre_hook(self._on_forward_start))
        for name, module in model.named_modules():
            path = name or "<model>"
            kind = type(module)
            if kind not in rules:  # a type's rule, and whether its own forward adds work, found once
                rules[kind] = (find_handle(module, self.config.handles), extends_forward(module, self.config.handles))
            rule, extended = rules[kind]
            role = getattr(module, "gac_role", self.config.default_role)
            if rule is not None and (self.config.roles is None or role in self.config.roles):
                op, handle = rule
                counted = _ModuleRule(path, op, handle, module, extended)
                if extended:  # its own forward does more: intercepted, its base calls counted by its rule
                    enter = self._make_enter_extended(counted, own_primitives(module, op))
                    if op == "lif":
                        self._record_dynamics(module)
                else:
                    enter = self._enter_counted
                    covered.update(id(m) for m in module.modules() if m is not module)
                self._handles.append(module.register_forward_pre_hook(enter))
                hook = self._make_hook(counted)
                self._handles.append(module.register_forward_hook(hook, with_kwargs=True, always_call=True))
            elif module is not model and id(module) not in covered and not _plain_container(module):
                self._handles.append(module.register_forward_pre_hook(self._make_push(path)))
                self._handles.append(module.register_forward_hook(self._pop, always_call=True))
        self._handles.append(model.register_forward_hook(self._on_forward_end))
        self._mode = FunctionCounter(self, OpClassifier(self.config.function_rules))

    def detach(self) -> None:
        if self._mode is not None:
            self._mode_off()
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles = []
        for module, name, before in self._instance_methods:  # the model as it was: no wrapper left
            if before is _ABSENT:
                module.__dict__.pop(name, None)
            else:
                module.__dict__[name] = before
        self._instance_methods = []
        self.quiet = True
        self._flush()

    # -- the function interceptor on the torch-function stack -----------------------------------
    def _mode_push(self) -> None:
        if self._mode is not None and not self._mode_on:
            torch._C._push_on_torch_function_stack(self._mode)
            self._mode_on = True

    def _mode_off(self) -> None:
        """Take the interceptor off the stack wherever it is (other modes stay, in order)."""
        if not self._mode_on:
            return
        above = []
        while torch._C._len_torch_function_stack():
            top = torch._C._pop_torch_function_stack()
            if top is self._mode:
                break
            above.append(top)
        for mode in reversed(above):
            torch._C._push_on_torch_function_stack(mode)
        self._mode_on = False

    def _mode_suspend(self) -> None:
        """A counted module starts: its internal operations are its rule's. Pop the interceptor when it
        is on top of the stack; under another mode pushed inside the forward, silence it instead."""
        if not self._mode_on:
            return
        n = torch._C._len_torch_function_stack()
        if n and torch._C._get_function_stack_at(n - 1) is self._mode:
            torch._C._pop_torch_function_stack()
            self._mode_on = False
            self._suspended = True
        else:
            self.quiet = True

    def _mode_resume(self) -> None:
        if self._suspended:
            self._suspended = False
            self._mode_push()
        self.quiet = False

    # -- per forward -----------------------------------------------------------------------------
    def _new_forward(self, batch: int = 0) -> None:
        self._calls: dict[str, int] = {}
        self._ranges: dict[int, list] = {}  # storage address -> [value range, weak refs to tensors on it]
        self._stack: list[list] = [["<model>", {}]]
        self._covered = 0
        self._suspended = False
        self.open_calls: list[OpenCall] = []  # per open module running: its base calls so far
        self._pending: dict[str, list] = {}  # module site -> this forward's single-step counts
        self._pending_functions: dict[tuple, list] = {}  # (path, op, call site) -> single-step function calls
        self._batch = batch

    def _on_forward_start(self, module, inputs) -> None:
        x = inputs[0] if inputs else None
        batch = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else 0
        self._new_forward(batch)
        self.num_images += batch
        self.batches += 1
        self.quiet = False
        self._mode_push()

    def _on_forward_end(self, module, inputs, output) -> None:
        self._mode_off()
        self.quiet = True
        self._resolve_steps()
        self._flush()

    def _make_push(self, path: str):
        def push(module, inputs):
            self._stack.append([path, {}])

        return push

    def _pop(self, module, inputs, output) -> None:
        if len(self._stack) > 1:
            self._stack.pop()

    def _make_enter_extended(self, rule: _ModuleRule, primitives: frozenset):
        """Pre-hook of a module counted open (``handles.extends_forward``): the interceptor stays on inside
        it, its operations are named after it, and its base calls are counted as they return
        (:class:`OpenCall`). Inside a closed counted module (the interceptor off) it is counted closed."""

        def count(module, x, out, layout):
            self._count_module_call(rule, module, (x,), {}, out, layout)

        def enter(module, inputs):
            seen = self._covered == 0
            self._stack.append([rule.name, {}])
            self.open_calls.append(OpenCall(module, rule.name, rule.op, primitives, count, seen))
            if not seen:
                self._enter_counted(module, inputs)

        return enter

    def _record_dynamics(self, module: nn.Module) -> None:
        """Wrap the dynamics methods of a neuron counted open (``handles.NEURON_DYNAMICS``), on the instance
        until :meth:`detach`: a call made by the neuron's own forward is a base call, run with the
        interceptor off and counted by the neuron's rule as it returns (spikes read from its output)."""
        for name in NEURON_DYNAMICS:
            method = getattr(module, name, None)
            if method is None:
                continue
            self._instance_methods.append((module, name, module.__dict__.get(name, _ABSENT)))
            layout = "step" if name == "single_step_forward" else None  # one step of [B, ...]; else the rule's
            module.__dict__[name] = self._dynamics_wrapper(module, method, layout)

    def _dynamics_wrapper(self, module: nn.Module, method, layout: str | None):
        def dynamics(*args, **kwargs):
            record = self.open_calls[-1] if self.open_calls else None
            if record is None or record.owner is not module or record.depth or not record.seen:
                return method(*args, **kwargs)  # not a base call made by its open forward
            record.depth += 1
            self._enter_counted(module, args)
            try:
                out = method(*args, **kwargs)
                record.base_call(args[0] if args else next(iter(kwargs.values()), None), out, layout)
            finally:
                self._leave_counted()
                record.depth -= 1
            return out

        functools.update_wrapper(dynamics, method)
        return dynamics

    def _leave_extended(self, module) -> "OpenCall | None":
        """Take ``module``'s record (and what is above it: records of forwards that raised) off the stacks."""
        records = self.open_calls
        while records:
            record = records.pop()
            if len(self._stack) > 1:
                self._stack.pop()
            if record.owner is module:
                return record
        return None

    def _enter_counted(self, module, inputs) -> None:
        self._covered += 1
        if self._covered == 1:
            self._mode_suspend()

    def _leave_counted(self) -> None:
        self._covered -= 1
        if self._covered <= 0:
            self._covered = 0
            self._mode_resume()

    def _shape_layout(self, shape) -> str:
        """``T``, ``TB``, ``mixed`` or ``step`` (one time step of ``[B, ...]``), see module docstring."""
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

    def _make_hook(self, rule: _ModuleRule):
        """The forward hook of a module with a rule, called also when its forward raises (``always_call``:
        a model that catches the error goes on with the interceptor back on and the stacks unwound)."""

        def hook(module, inputs, kwargs, output):
            raised = output is None and sys.exc_info()[0] is not None
            if not rule.extended:
                try:
                    if not raised:
                        self._count_module_call(rule, module, inputs, kwargs, output)
                finally:
                    self._leave_counted()
                return
            record = self._leave_extended(module)
            if record is None:
                return
            # counted from its own input and output: inside a closed module (entered counted by its pre-hook),
            # or a neuron whose forward ran no dynamics of its own class
            closed = not record.seen
            if not closed and not (record.calls == 0 and rule.op == "lif" and not raised):
                return  # its base calls are counted
            if not closed:
                self._enter_counted(module, inputs)
            try:
                if not raised:
                    self._count_module_call(rule, module, inputs, kwargs, output)
            finally:
                self._leave_counted()

        return hook

    def _count_module_call(
        self, rule: _ModuleRule, module, inputs: tuple, kwargs: dict, output, layout: str | None = None
    ) -> None:
        """Count one call of a module with a rule: its rule's counts at its site (and time step), and the
        value range of its output. ``layout``: the call's own (a neuron's single step), else the rule's or
        the output shape's."""
        name, op, handle = rule.name, rule.op, rule.handle
        try:
            if kwargs and not inputs:  # called with keywords only: conv(input=x)
                inputs = tuple(kwargs.values())
            x = inputs[0] if inputs else None
            out = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            if not isinstance(x, torch.Tensor) or out is None:  # no rule reads such a call: listed
                self._record_unsupported(f"{op} (input {type(x).__name__}, output {type(output).__name__})", name, out)
                return
            layout = layout or rule.layout or self._shape_layout(out.shape)
            known = self._range_of(x) if rule.synaptic and self._ranges else None
            spike = known is not None and ranges.is_binary(known)
            self.counted_calls += 1
            if layout == "step":
                key = name
                h_out = out.unsqueeze(0) if op == "lif" else out
                cs = CallShape(1, "TB", spike, rule.binary_output, known)
                counts = handle(module, (x, *inputs[1:]), h_out, cs)
            else:
                idx = self._calls.get(name, 0)
                self._calls[name] = idx + 1
                key = name if idx == 0 else f"{name}#{idx + 1}"
                cs = CallShape(self.T, layout, spike, rule.binary_output, known)
                counts = handle(module, inputs, out, cs)
            if rule.binary_output:
                self._mark_range(out, ranges.BINARY)  # 0/1 by construction: remember the storage (weakly)
            elif self._ranges:
                self._module_range(rule, inputs, out)
            site = self.sites.get(key)
            if site is None:
                site = self._new_site(key, name, op, module, x, out, layout)
            site.calls += 1
            if layout == "step":
                self._pending.setdefault(key, []).append(counts)
            else:
                self._add(site, counts, layout)
        except Exception as e:
            mark_internal(e, f"the {op} rule at {name}")
            raise

    def on_function(self, kind: int, name: str, rule, args, kwargs, out) -> None:
        """Count one intercepted function call made outside any counted module (see functional.py)."""
        path, per_op = self._stack[-1]
        o = _first_tensor(out)
        if kind != UNSUPPORTED:
            op = op_label(name, rule, args)
            layout = self._shape_layout(o.shape) if o is not None else "mixed"
            spikes, known, unbatched = False, None, False
            if op == "matmul" and len(args) >= 2 and all(isinstance(t, torch.Tensor) for t in args[:2]):
                spikes = (self._is_spike_output(args[0]), self._is_spike_output(args[1]))
            elif getattr(rule, "synaptic", False):  # F.conv2d / F.linear: its input's range, and unbatched calls
                x = args[0] if args else kwargs.get("input")
                unbatched = isinstance(x, torch.Tensor) and rule.unbatched(x, args, kwargs)
                if unbatched:
                    layout = "mixed"  # one image, no batch axis (F.conv2d on [C, H, W]): no time steps to read
                if self._ranges:
                    known = self._range_of(x)
                    spikes = known is not None and ranges.is_binary(known)
            if layout == "step":
                cs = CallShape(1, "TB", spikes, False, known)
            else:
                cs = CallShape(self.T, layout, spikes, False, known)
            counts = rule(args, kwargs, out, cs) if o is not None else None
            if counts is not None:
                idx = per_op.get(op, 0)
                per_op[op] = idx + 1
                key = f"{path}:{op}" if idx == 0 else f"{path}:{op}#{idx + 1}"
                self.counted_calls += 1
                x = _first_tensor(args)
                if x is None:  # called with keywords only: F.linear(input=x, weight=w)
                    x = _first_tensor(kwargs.get("input"))
                x = x if x is not None else o
                site = self.sites.get(key)
                if site is None:  # made now, so the sites stay in execution order
                    site = self._new_function_site(key, path, op, rule, args, kwargs, x, o, layout, unbatched)
                if layout == "step":  # placed, and named after its position in a step, when the forward ends
                    self._pending_functions.setdefault((path, op, _call_site()), []).append((key, counts))
                    return
                site.calls += 1
                self._add(site, counts, layout)
                return
        self._record_unsupported(name, path, o)

    def _new_function_site(self, key, path, op, rule, args, kwargs, x, o, layout, unbatched: bool) -> Site:
        """The site of a function rule's first call: a functional conv or linear carries its geometry (as a
        weightless module, ``rule.module_of``); an unbatched call's shapes are one image's."""
        module_of = getattr(rule, "module_of", None)
        geometry = module_of(args, kwargs) if module_of is not None else None
        x_shape, o_shape = x.shape, o.shape
        if unbatched:
            x_shape, o_shape = (1, *x_shape), (1, *o_shape)
        return self._new_site(key, path, op, geometry, x_shape, o_shape, layout)

    @property
    def path(self) -> str:
        """The module path whose forward is running (``<model>`` for the model's own)."""
        return self._stack[-1][0]

    def _record_unsupported(self, op: str, path: str, out: torch.Tensor | None) -> None:
        """One call of ``op`` at module ``path`` that no rule counts (its output's elements, if any)."""
        rec = self.unsupported.setdefault((op, path), [0, 0])
        rec[0] += 1
        rec[1] += int(out.numel()) if out is not None else 0

    def _resolve_steps(self) -> None:
        """Place the single-step calls of the forward that just ended at their time steps. A module's calls
        split evenly into T steps. A function's calls of one op from one line of code in one module's
        forward (a single-step model's own loop over T: ``for t in range(T): y = a + b``) split the same
        way, and the j-th call of each step is one site (named after the first step's calls: ``path:op``,
        ``path:op#2``, ...); calls that do not split evenly into T steps are time-mixed, one site each."""
        T = self.T
        for key, calls in self._pending.items():
            n = len(calls)
            site = self.sites[key]
            for i, counts in enumerate(calls):
                self._add(site, counts, "step", step=i * T // n if n % T == 0 else T)
        merged = set()
        for calls in self._pending_functions.values():
            per_step = len(calls) // T if len(calls) % T == 0 else None
            for i, (key, counts) in enumerate(calls):
                if per_step is not None and i >= per_step:
                    merged.add(key)
                    key = calls[i % per_step][0]
                site = self.sites[key]
                site.calls += 1
                self._add(site, counts, "step", step=i // per_step if per_step is not None else T)
        for key in merged:  # a later step's name of a call counted at its first step's site
            if self.sites[key].calls == 0:
                del self.sites[key]
        self._pending = {}
        self._pending_functions = {}

    # -- value ranges (ranges.py): spike maps and sums of them, known by construction -----------------
    def _mark_range(self, out, r: ranges.Range) -> None:
        """Remember (weakly) that ``out``'s storage holds whole numbers within ``r`` in this forward (the
        union with the range it already has, for a write into part of it). Every tensor marked on one
        storage is kept (weakly): the storage is known while any of them lives, even after the neuron's
        own output is dropped for a view of it (``x = lif(x).reshape(...)``). A range the dtype cannot
        hold exactly is not kept, nor a range of a part of a storage not yet known (:func:`_covers_storage`).
        (One tensor, a neuron's output, is the usual case: no tuple is built for it.)"""
        if isinstance(out, torch.Tensor):
            self._mark_tensor(out, r)
        elif isinstance(out, (tuple, list)):
            for t in out:
                if isinstance(t, torch.Tensor):
                    self._mark_tensor(t, r)

    def _mark_tensor(self, t: torch.Tensor, r: ranges.Range) -> None:
        if not t.numel():
            return
        ptr = _storage_ptr(t)
        entry = self._ranges.get(ptr)
        live = _live(entry[1]) if entry is not None else None
        if not live:  # a new storage (a dead entry: an address reused)
            if ranges.representable(t.dtype, r) and _covers_storage(t):
                self._ranges[ptr] = [r, [weakref.ref(t)]]
            return
        entry[0] = ranges.union(entry[0], r)
        if ranges.representable(t.dtype, entry[0]):
            live.append(weakref.ref(t))
            entry[1] = live  # the dead references dropped: a chain of views keeps the list short
        else:
            del self._ranges[ptr]

    def _forget_range(self, t) -> None:
        if isinstance(t, torch.Tensor):
            self._ranges.pop(_storage_ptr(t), None)

    def _range_of(self, x) -> ranges.Range | None:
        """The known range of ``x``'s values: its storage was marked in this forward and a tensor marked
        on it is alive (so the address cannot have been reused); else None."""
        if not isinstance(x, torch.Tensor):
            return None
        entry = self._ranges.get(_storage_ptr(x))
        return entry[0] if entry is not None and _alive(entry[1]) else None

    def _is_spike_output(self, x: torch.Tensor) -> bool:
        """True when ``x``'s values are known to be 0/1: a neuron's output, or made from such maps by
        operations that keep the range (views, copies, max pooling, ``x * y``, ``x * (1 - y)``)."""
        return ranges.is_binary(self._range_of(x))

    def track_values(self, what: tuple[int, str | None], args, kwargs, out) -> None:
        """Update the value ranges after an intercepted call (``what``: ``functional.value_rule``)."""
        kind, op = what
        if kind == ARITHMETIC:
            o = _first_tensor(out)
            if o is None:
                return
            r = ranges.result_range(op, args, kwargs, self._range_of)
            if r is None:
                self._forget_range(o)  # written in place, or a new storage: no range
            else:
                self._mark_range(o, r)
        elif kind == IN_PLACE or (kwargs and "out" in kwargs):
            self._forget_range(args[0] if kind == IN_PLACE and args else kwargs.get("out"))
        elif kind == KEEP or kind == KEEP_FIRST:
            first = args[0] if args else None
            if isinstance(first, (tuple, list)):  # cat, stack: the union of the parts' ranges
                known = [self._range_of(t) for t in first]
                r = ranges.union(*known) if first and None not in known else None
            else:
                r = self._range_of(first)
            if r is not None:
                self._mark_range(out if kind == KEEP else _first_tensor(out), r)

    def _module_range(self, rule: _ModuleRule, inputs: tuple, out) -> None:
        """Ranges after a counted module (other than a 0/1 neuron), by its value rule as for a function
        (its inputs as the arguments); a module without one makes its output unknown (a module that
        writes in place leaves no range on the storage it wrote)."""
        if rule.value_rule[0] == NO_RANGE:
            self._forget_range(out if isinstance(out, torch.Tensor) else _first_tensor(out))
        else:
            self.track_values(rule.value_rule, inputs, {}, out)

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

    # -- accumulation ------------------------------------------------------------------------------
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

    def _add(self, site: Site, counts: dict, layout: str, step: int | None = None) -> None:
        """Add one call's counts: python ints at once (per step, at one ``step``, or into the
        time-mixed slot ``T``); tensors are queued for the end of the forward (:meth:`_flush`):
        per-call flags (``*_calls``) and 0-dim totals into slot ``T``, ``[T]`` tensors per step,
        :class:`~gac_analysis.accounting.handles.Rows` summed into their steps, and everything of a
        single-step call at its ``step``."""
        T = self.T
        if "synaptic_ops" in counts:
            self._split_synaptic(counts)
        for key, value in counts.items():
            if isinstance(value, int):
                acc = site.ints.get(key)
                if acc is None:
                    acc = site.ints[key] = [0] * (T + 1)
                if key.endswith("_calls") or (layout == "mixed" and step is None):
                    acc[T] += value
                elif step is not None:
                    acc[step] += value
                else:
                    for t in range(T):
                        acc[t] += value
                continue
            base = self._slots.get((site.name, key))
            if base is None:
                base = self._new_slots(site, key)
            rows = isinstance(value, Rows)
            tensor, scale = (value.values, value.scale) if rows else (value, 1)
            if key.endswith("_calls"):
                where = (0, base + T)
            elif step is not None:
                where = (0, base + step)
            elif rows:  # rows split evenly into T steps, else (mixed, uneven) the time-mixed total
                n = tensor.numel()
                where = (0, base + T) if layout == "mixed" or n % T or n == 0 else (2, base)
            else:
                where = (0, base + T) if tensor.dim() == 0 else (1, base)  # a total, or one value per step
            self._buf.append((tensor, scale, where))

    def _new_slots(self, site: Site, key: str) -> int:
        base = len(self._slots) * (self.T + 1)
        self._slots[(site.name, key)] = base
        site.tensors[key] = None  # a view of the accumulator once it holds the slots (_flush)
        return base

    def _flush(self) -> None:
        """Sum the queued tensor counts of the forward into the accumulator: the values of every call
        are concatenated (float whole numbers converted exactly to int64), scaled, and added to their
        slots with one ``index_add_``; the slot index of a forward's layout is built once and cached."""
        buf, self._buf = self._buf, []
        T = self.T
        n_slots = len(self._slots) * (T + 1)
        if buf:
            device = buf[0][0].device
            floats = [e for e in buf if e[0].is_floating_point()]
            ints = [e for e in buf if not e[0].is_floating_point()] if len(floats) < len(buf) else []
            ordered = ints + floats
            signature = tuple((t.numel(), scale, where) for t, scale, where in ordered)
            index, scales = _slot_index(signature, T, device)
            parts = [_flat_on(t, device) for t, _, _ in ints]
            if floats:
                parts.append(torch.cat([_flat_on(t, device) for t, _, _ in floats]).to(torch.int64))
            values = torch.cat(parts) if len(parts) > 1 else parts[0]
            if scales is not None:
                values = values * scales
            if self._acc is None or self._acc.numel() < n_slots:
                self._grow(n_slots, device)
            self._acc.index_add_(0, index, values)
        elif self._acc is None or self._acc.numel() < n_slots:
            self._grow(n_slots, device=self._acc.device if self._acc is not None else None)

    def _grow(self, n_slots: int, device) -> None:
        """Make room for new slots and point every site's tensors at their views of the accumulator."""
        if n_slots == 0:
            return
        device = device if device is not None else next(self.model.parameters(), torch.zeros(0)).device
        old = self._acc
        with torch.inference_mode(False):  # a normal tensor: usable inside and outside inference mode
            self._acc = torch.zeros(n_slots, dtype=torch.int64, device=device)
            if old is not None:
                self._acc[: old.numel()] = old
            T = self.T
            for (site_name, key), base in self._slots.items():
                self.sites[site_name].tensors[key] = self._acc[base : base + T + 1]

    def compute(self, **report_kwargs):
        """Synchronise once and build the :class:`~gac_analysis.accounting.report.Report`."""
        from gac_analysis.accounting.report import build_report

        return build_report(self, **report_kwargs)


def mark_internal(e: BaseException, where: str) -> None:
    """Mark an exception raised by the counting itself (a rule, the engine), not by the model: it keeps
    its traceback, with a note that it is a gac-analysis bug (see :func:`is_internal`)."""
    if not isinstance(e, GacError) and not is_internal(e):
        e._gac_internal = True
        e.add_note(f"gac-analysis: raised while counting ({where}): a bug of gac-analysis, please report it")


def is_internal(e: BaseException) -> bool:
    """``e`` was raised by the counting (:func:`mark_internal`), not by the model's own forward."""
    return bool(getattr(e, "_gac_internal", False))


def _alive(refs: list) -> bool:
    """Some weakly held tensor of ``refs`` is alive."""
    return any(r() is not None for r in refs)


def _live(refs: list) -> list:
    """The references of ``refs`` whose tensor is alive (a new list)."""
    return [r for r in refs if r() is not None]


def _covers_storage(t: torch.Tensor) -> bool:
    """``t`` spans its whole storage (a new tensor, or a view of all of it): a range known of ``t`` is
    then the storage's. A part of an unknown storage (``torch.mul(a, b, out=big[:n])``) is not marked:
    the rest of the storage keeps whatever values it had."""
    return t.numel() * t.element_size() >= t.untyped_storage().nbytes()


#: Frames of the interception itself (and of torch's wrappers around it), skipped to find a call's line.
_INTERNAL_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.path.abspath(__file__)))


def _call_site() -> tuple[str, int] | None:
    """File and line of the model code that made the intercepted call (the first frame outside torch and
    this package's accounting), or None."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


def _storage_ptr(t: torch.Tensor) -> int:
    """Address of the start of ``t``'s storage (shared by all its views), without building a storage object."""
    return t.data_ptr() - t.storage_offset() * t.element_size()


def _flat_on(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` as a 1-d tensor on ``device`` (no operation when it already is one)."""
    if t.dim() != 1:
        t = t.reshape(-1)
    return t if t.device == device else t.to(device)


@functools.lru_cache(maxsize=64)
def _slot_index(signature: tuple, T: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The accumulator slot of every value of one forward's queued counts, and their scales (None when
    all are 1). ``signature`` holds ``(numel, scale, (kind, slot))`` per count, in queue order: kind 0
    sends every value to ``slot``, kind 1 one value per step (``slot + t``), kind 2 rows split evenly
    into T steps (``slot + row // (numel // T)``)."""
    index: list[int] = []
    scales: list[int] = []
    for numel, scale, (kind, slot) in signature:
        if kind == 0:
            index.extend([slot] * numel)
        elif kind == 1:
            index.extend(slot + t for t in range(numel))
        else:
            per_step = numel // T
            index.extend(slot + r // per_step for r in range(numel))
        scales.extend([scale] * numel)
    scale_t = None if all(s == 1 for s in scales) else torch.tensor(scales, dtype=torch.int64, device=device)
    return torch.tensor(index, dtype=torch.int64, device=device), scale_t
