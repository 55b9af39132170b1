"""The weight check of FiniteWatch reads a model's tensors again whenever they may have changed.

A model found usable is not re-read while its tensors are the same objects at the same in-place version;
every way of changing a weight (in-place write, load_state_dict, a new Parameter) must be caught again.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gac_analysis.accounting.finite import NonFiniteError, check_finite_state


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))


def test_in_place_write_after_a_clean_check_is_caught():
    model = _model()
    check_finite_state(model)
    check_finite_state(model)  # unchanged: passes again (from the cache)
    with torch.no_grad():
        model[0].weight[1, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"0\.weight"):
        check_finite_state(model)


def test_load_state_dict_after_a_clean_check_is_caught():
    model = _model()
    check_finite_state(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["1.running_var"][2] = -1.0
    model.load_state_dict(state)
    with pytest.raises(NonFiniteError, match=r"1\.running_var"):
        check_finite_state(model)


def test_new_parameter_object_after_a_clean_check_is_caught():
    model = _model()
    check_finite_state(model)
    model[2].bias = nn.Parameter(torch.tensor([0.0, float("inf")]))
    with pytest.raises(NonFiniteError, match=r"2\.bias"):
        check_finite_state(model)


def test_inference_tensors_are_checked_every_time():
    with torch.inference_mode():
        model = _model()  # parameters and buffers are inference tensors: no version counter
    check_finite_state(model)
    with torch.inference_mode():
        model[0].weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"0\.weight"):
        check_finite_state(model)
