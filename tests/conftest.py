import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def golden_ckpt(tmp_path_factory):
    """The conformance checkpoint (CIFAR MS-ResNet-18, 10 classes, GAC, T=6, seed 1) in the reference layout."""
    from reference_fixtures import golden, reference_state_dict

    g = golden()
    path = tmp_path_factory.mktemp("golden") / "cifar_c10_gac_T6_seed1.pt"
    torch.save(reference_state_dict("cifar_msresnet18_c10_gac_T6", g["seed"]), path)
    return path


@pytest.fixture(scope="session")
def golden_input():
    from reference_fixtures import golden

    g = golden()
    return torch.randn(g["input_shape"], generator=torch.Generator().manual_seed(g["input_seed"]))
