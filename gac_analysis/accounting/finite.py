"""No result from non-finite numbers: weights, batch-norm statistics and activations are checked.

:class:`FiniteWatch` wraps a counting run (``count_images``). On entry it checks the model's parameters
and buffers (finite; batch-norm ``running_var >= 0``). During the run, forward hooks on every leaf module
sum its output (a neuron: its input, which its spikes would hide), with no host synchronisation inside
the hooks; each forward's sums become one flag vector "this sum is not finite" (a NaN or inf in it).
:meth:`FiniteWatch.check` reads the flags once, at the end, and raises :class:`NonFiniteError` naming
the first module, in execution order, whose output was not finite.
"""

from __future__ import annotations

import weakref

import torch

from gac_analysis.errors import GacError
from gac_analysis.models.checkpoint import nonfinite_state

_HALF = (torch.float16, torch.bfloat16)

__all__ = ["FiniteWatch", "NonFiniteError", "check_finite_state", "first_nonfinite_module"]


class NonFiniteError(GacError):
    """Weights, statistics or activations hold NaN / inf (or a negative variance): no number is reported."""


#: model -> the state signature last found finite (see :func:`_state_signature`).
_FINITE_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_signature(model: torch.nn.Module) -> tuple:
    """Which tensors the model holds and their in-place version counters (``Tensor._version``, bumped by
    every in-place write such as ``load_state_dict``, an optimiser step or BN statistics in training): equal
    signatures mean the same values, so a model checked once is not read again (the check reads every
    weight, as long as a small batch's forward)."""
    try:
        return tuple(
            (t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for t in (*model.parameters(), *model.buffers())
        )
    except RuntimeError:  # inference tensors keep no version counter: no signature, so always checked
        return None


def check_finite_state(model: torch.nn.Module) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer (module order) that is not usable.

    A model whose tensors have not changed since they were last found usable is not read again."""
    signature = _state_signature(model)
    if signature is not None and _FINITE_STATES.get(model) == signature:
        return

    def tensors():
        for mod_name, module in model.named_modules():
            for name, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                yield (f"{mod_name}.{name}" if mod_name else name), t

    with torch.no_grad():  # a read: no autograd (parameters made under inference_mode still require grad)
        bad = nonfinite_state(tensors())
    if bad:
        raise NonFiniteError(
            f"the model's {bad}; no result can be computed from such weights: check the "
            "checkpoint (the first such tensor, in module order, is named)"
        )
    if signature is not None:
        _FINITE_STATES[model] = signature


def _tensors(output):
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for o in output:
            yield from _tensors(o)
    elif isinstance(output, dict):
        for o in output.values():
            yield from _tensors(o)


#: Leaf modules that only pass values on (no arithmetic): they cannot create NaN or inf, so no check.
_PASS_THROUGH = (
    torch.nn.Identity,
    torch.nn.Flatten,
    torch.nn.Unflatten,
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
)


#: Activations whose output can hide a NaN or inf of their input (a saturating or clipping map):
#: a sentinel watch checks their inputs.
_SATURATING = (
    torch.nn.Sigmoid,
    torch.nn.Tanh,
    torch.nn.Hardtanh,
    torch.nn.Hardsigmoid,
    torch.nn.Softsign,
    torch.nn.ReLU,
    torch.nn.LeakyReLU,
    torch.nn.ELU,
)


def _sticky_membrane_types() -> tuple[type, ...]:
    """SpikingJelly neuron classes (exact types, not subclasses) whose membrane ``v`` keeps a NaN or inf of
    any input until the neuron is reset, on the CPU: charge, fire and reset are sums and products there
    (``h = v + f(x)``, ``v = s * v_reset + (1 - s) * h`` or ``h - s * v_th``), and no sum or product with
    a finite number turns NaN or inf finite (``inf * 0`` is NaN). Tested for every reset mode,
    ``decay_input`` and ``detach_reset``, in both step modes (tests/test_fast_paths.py)."""
    from spikingjelly.activation_based import neuron

    return (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode)


def first_nonfinite_module(model: torch.nn.Module, batch: torch.Tensor) -> NonFiniteError | None:
    """Run ``batch`` through ``model`` again under a full :class:`FiniteWatch` (neuron state reset first,
    no autograd) and return the error naming the first module whose values are not finite (None if
    this forward is finite)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with FiniteWatch(model) as watch, torch.inference_mode():
        model(batch)
    try:
        watch.check()
    except NonFiniteError as err:
        return err
    return None


class FiniteWatch:
    """Context manager: device flags for non-finite values per module; :meth:`check` raises on the first.

    Every leaf module's output is summed (one reduction per call, no host sync; a NaN or inf anywhere
    makes the sum non-finite), except that a neuron's **input** is summed instead: a neuron turns NaN
    or inf into 0/1 spikes, so its output would hide them. When the model's forward ends, the sums of
    that forward become one flag vector (one ``isfinite``), OR-ed into the previous forward's when the
    modules ran in the same order.

    ``sentinel=True`` watches only where NaN or inf could vanish: the inputs of neurons and of
    saturating activations (sigmoid, tanh, ReLU, ...), and the model's output; every other
    non-finite value flows into one of them. A neuron whose membrane keeps NaN or inf
    (:func:`_sticky_membrane_types`, on the CPU) is watched through its input in the first forward
    only: when its membrane ``v`` is a tensor after that forward, its ``v`` is summed once per forward
    from then on (1/T of the input, and no hook per call; the first forward is trusted to show how the model
    keeps its neurons' state: one that held ``v`` after it but cleared it inside a later forward would go
    unwatched there). The sentinel cannot name the module where
    the values first appear: when :meth:`forward_finite` says a forward was not, run that batch again
    under a full watch (:func:`first_nonfinite_module`)."""

    def __init__(self, model: torch.nn.Module, *, sentinel: bool = False):
        from gac_analysis.accounting.handles import NEURON_TYPES

        self.model = model
        self.sentinel = sentinel
        self._neurons = tuple(NEURON_TYPES)
        self._by_input = self._neurons + _SATURATING if sentinel else self._neurons
        self._names: dict[torch.nn.Module, str] = {}  # the watched modules: leaves, and neurons as a whole
        inside: set[int] = set()
        for name, m in model.named_modules():
            if id(m) in inside:
                continue
            if isinstance(m, self._neurons):
                self._names[m] = name
                inside.update(id(d) for d in m.modules() if d is not m)
            elif not any(True for _ in m.children()):
                self._names[m] = name
        self._seq: list[torch.nn.Module] = []  # modules checked in the running forward, in order
        self._sums: list[torch.Tensor] = []  # their 0-dim sums
        self._runs: list[list] = []  # [modules in execution order, bool flags tensor] per distinct order
        self._handles = []
        self._probes: dict[torch.nn.Module, object] = {}  # sticky neurons still watched by input: their hook
        self._ran: set[torch.nn.Module] = set()  # probed neurons that ran in the running forward
        self._by_membrane: list[torch.nn.Module] = []  # neurons watched through their membrane v
        self._failed: list[list] = []  # the flags of the last forward found not finite (forward_finite)

    @property
    def _order(self) -> list[torch.nn.Module]:
        """Modules checked so far, in the order they first ran."""
        self._close_forward()
        seen: dict[torch.nn.Module, None] = {}
        for modules, _ in self._runs:
            seen.update(dict.fromkeys(modules))
        return list(seen)

    def _hook(self, module, inputs, output):
        # The check's own tensor calls are not the model's work: keep them out of any torch-function mode
        # (the counter's functional interception would otherwise list them as operations of the model).
        with torch._C.DisableTorchFunction():
            self._flag(module, inputs if isinstance(module, self._by_input) else output)

    def _probe_hook(self, module, inputs, output):
        self._ran.add(module)
        self._hook(module, inputs, output)

    def _flag(self, module, values) -> None:
        for t in _tensors(values):
            if t.is_floating_point() and t.numel():
                # Half types are summed in float32 so that a finite map's sum does not overflow.
                self._sums.append(t.sum(dtype=torch.float32) if t.dtype in _HALF else t.sum())
                self._seq.append(module)

    def _end_of_forward(self, module, inputs, output) -> None:
        with torch._C.DisableTorchFunction():
            if self.sentinel:
                self._flag(module, output)
                self._watch_membranes()
            self._close_forward()

    def _watch_membranes(self) -> None:
        """End of a forward (sentinel): sum the membranes of the neurons watched through them; a probed
        neuron that ran and holds its membrane as a CPU tensor is watched that way from now on."""
        for neuron in self._by_membrane:
            v = getattr(neuron, "v", None)
            if isinstance(v, torch.Tensor):
                self._flag(neuron, v)
        ran, self._ran = self._ran, set()
        for neuron in [n for n in self._probes if n in ran]:  # module order
            v = getattr(neuron, "v", None)
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.device.type == "cpu":
                self._probes.pop(neuron).remove()
                self._by_membrane.append(neuron)

    def flag_function_inputs(self, label: str, args) -> None:
        """Sum the tensor arguments of a function call between modules that can hide NaN or inf
        (``functional.VANISHING``: a comparison, ``where``, ``clamp``, ...; ``label``: ``path:op``); called
        by the counter's interceptor (sentinel watch), whose mode is off during the call."""
        for t in _tensors(args):
            if t.is_floating_point() and t.numel():
                self._sums.append(t.sum(dtype=torch.float32) if t.dtype in _HALF else t.sum())
                self._seq.append(label)

    def forward_finite(self) -> bool:
        """Whether every value watched in the forward(s) since the last call was finite (one host read).
        The flags of a forward that was not are kept, so :meth:`first_nonfinite_function` can name the
        operation where they appeared."""
        self._close_forward()
        runs, self._runs = self._runs, []
        finite = not any(bool(bad.any()) for _, bad in runs)
        if not finite:
            self._failed = runs
        return finite

    def first_nonfinite_function(self) -> str | None:
        """``path:op`` of the first function call between modules (execution order) whose watched inputs
        held NaN or inf in the last forward :meth:`forward_finite` found not finite, where that came before
        any module's watched values; else None."""
        for entries, bad in self._failed:
            for entry, flag in zip(entries, bad.cpu().tolist()):
                if flag:
                    return entry if isinstance(entry, str) else None
        return None

    def _close_forward(self) -> None:
        """Turn the running forward's sums into one flag vector (no host sync)."""
        if not self._sums:
            return
        bad = ~torch.isfinite(torch.stack(self._sums))
        seq, self._seq, self._sums = self._seq, [], []
        last = self._runs[-1] if self._runs else None
        if last is not None and last[0] == seq:
            last[1] |= bad.to(last[1].device)
        else:
            self._runs.append([seq, bad])

    def __enter__(self) -> "FiniteWatch":
        check_finite_state(self.model)
        if self.sentinel:
            watched = [m for m in self._names if isinstance(m, self._by_input)]
        else:
            watched = [m for m in self._names if not isinstance(m, _PASS_THROUGH)]
        sticky = _sticky_membrane_types() if self.sentinel else ()
        self._handles = []
        for m in watched:
            if type(m) in sticky:
                self._probes[m] = m.register_forward_hook(self._probe_hook)
            else:
                self._handles.append(m.register_forward_hook(self._hook))
        self._handles.append(self.model.register_forward_hook(self._end_of_forward))
        return self

    def __exit__(self, *exc) -> None:
        for h in (*self._handles, *self._probes.values()):
            h.remove()
        self._handles, self._probes, self._by_membrane, self._ran = [], {}, [], set()
        self._close_forward()

    def first_nonfinite(self) -> str | None:
        """Name of the first module (execution order) whose checked values held NaN or inf; one host read
        per distinct module order."""
        self._close_forward()
        for modules, bad in self._runs:
            for module, flag in zip(modules, bad.cpu().tolist()):
                if flag and not isinstance(module, str):  # a function's entry: first_nonfinite_function
                    return self._names[module] or type(module).__name__
        return None

    def check(self) -> None:
        """Raise :class:`NonFiniteError` when some module's output (a neuron's input) was not finite."""
        name = self.first_nonfinite()
        if name is not None:
            module = self.model.get_submodule(name) if name in self._names.values() else None
            kind = f" ({type(module).__name__})" if module is not None else ""
            what = "input" if isinstance(module, self._neurons) else "output"
            raise NonFiniteError(
                f"the {what} of module '{name}'{kind} holds NaN or inf values (or values so "
                "large that their sum overflows; the first module, in execution order, where "
                "they appear; inputs and weights were finite): no "
                "result is reported; check the model's numerics (overflow, division by zero)"
            )
