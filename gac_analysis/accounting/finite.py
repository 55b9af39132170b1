"""No result from non-finite numbers: weights, batch-norm statistics and activations are checked.

:class:`FiniteWatch` wraps a counting run (``count_images``). On entry it checks the model's parameters
and buffers (finite; batch-norm ``running_var >= 0``). During the run, forward hooks on every leaf module
OR a device-side flag "this output's sum is not finite" (a NaN or inf in it) per module, with no host
synchronisation inside the hooks; the modules are numbered in the order they first run.
:meth:`FiniteWatch.check` reads the flags once, at the end, and raises :class:`NonFiniteError` naming
the first module, in execution order, whose output was not finite.
"""

from __future__ import annotations

import weakref

import torch

from gac_analysis.errors import GacError
from gac_analysis.models.checkpoint import nonfinite_state

_HALF = (torch.float16, torch.bfloat16)

__all__ = ["FiniteWatch", "NonFiniteError", "check_finite_state"]


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


class FiniteWatch:
    """Context manager: per-module device flags for non-finite outputs; :meth:`check` raises on the first."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._names = {m: n for n, m in model.named_modules() if not any(True for _ in m.children())}
        self._order: list[torch.nn.Module] = []  # leaf modules in the order they first ran
        self._flags: dict[torch.nn.Module, torch.Tensor] = {}
        self._handles = []

    def _hook(self, module, inputs, output):
        # The check's own tensor calls are not the model's work: keep them out of any torch-function mode
        # (the counter's functional interception would otherwise list them as operations of the model).
        with torch._C.DisableTorchFunction():
            self._flag_outputs(module, output)

    def _flag_outputs(self, module, output) -> None:
        for t in _tensors(output):
            if not t.is_floating_point():
                continue
            # One reduction pass (9 % on count_images vs 29 % for a float64 sum, 1-thread CPU): a NaN or inf
            # anywhere makes the sum non-finite; half types are summed in float32 so that their sum does not
            # overflow. A 0-d tensor on t's device: no host sync here.
            bad = ~torch.isfinite(t.sum(dtype=torch.float32) if t.dtype in _HALF else t.sum())
            flag = self._flags.get(module)
            if flag is None:
                self._order.append(module)
                self._flags[module] = bad
            else:
                self._flags[module] = flag | bad

    def __enter__(self) -> "FiniteWatch":
        check_finite_state(self.model)
        self._handles = [m.register_forward_hook(self._hook) for m in self._names]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def first_nonfinite(self) -> str | None:
        """Name of the first module (execution order) whose output held NaN or inf; one host read."""
        if not self._order:
            return None
        first = self._flags[self._order[0]]
        flags = torch.stack([self._flags[m].to(first.device) for m in self._order]).cpu().tolist()
        for module, bad in zip(self._order, flags):
            if bad:
                return self._names[module] or type(module).__name__
        return None

    def check(self) -> None:
        """Raise :class:`NonFiniteError` when some module's output was not finite."""
        name = self.first_nonfinite()
        if name is not None:
            module = self.model.get_submodule(name) if name in self._names.values() else None
            kind = f" ({type(module).__name__})" if module is not None else ""
            raise NonFiniteError(
                f"the output of module '{name}'{kind} holds NaN or inf values (or values so "
                "large that their sum overflows; the first module, in execution order, where "
                "they appear; inputs and weights were finite): no "
                "result is reported; check the model's numerics (overflow, division by zero)"
            )
