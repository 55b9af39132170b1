"""The paper convention on a model that declares no roles or input kinds (any network but this project's).

Its first conv reads the image (real values): the papers price that layer with E_MAC, not as accumulates at
the input's non-zero fraction. Layers reading spikes keep ``E_AC x fr_in x T x dense``.
"""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from gac_analysis import profile
from gac_analysis.energy.tables import load_energy_table


class _TinySNN(nn.Module):
    T = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lif = neuron.IFNode(step_mode="m", v_threshold=0.1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):  # [B, 3, 8, 8] -> [T, B, 3]
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        y = self.conv(x.flatten(0, 1))
        s = self.lif(y.reshape(self.T, -1, 4, 8, 8))
        return self.fc(s.flatten(2))


def test_undeclared_real_input_layer_is_priced_as_macs_in_the_paper_convention():
    torch.manual_seed(0)
    model = _TinySNN()
    report = profile(model, torch.rand(3, 3, 8, 8))
    table = load_energy_table("45nm-fp32")
    rows = report.layers.set_index("name")
    conv, fc = rows.loc["conv"], rows.loc["fc"]
    assert conv["input"] == "real" and fc["input"] == "binary"
    assert conv["dense_macs"] == 3 * 2 * 4 * 8 * 8 * 3 * 9  # images x T x C_out x H x W x C_in x k
    assert conv["paper_pj"] == pytest.approx(conv["dense_macs"] * table.mac)
    assert conv["approx_acs"] == 0
    spikes = report.lif_sites.set_index("name").loc["lif", "spikes"]
    assert spikes > 0
    fr = spikes / (4 * 8 * 8 * 2 * 3)
    assert fc["paper_pj"] == pytest.approx(fr * fc["dense_macs"] * table.ac)
    breakdown = report.energy["paper"]["breakdown"]
    assert breakdown["stem_mac_pj"] == pytest.approx(conv["paper_pj"])
    assert breakdown["spiking_ac_pj"] == pytest.approx(fc["paper_pj"])
