"""Models: the reference LIF neurons, the GAC encoder, MS-ResNet, the registry and checkpoints."""

from gac_analysis.models.checkpoint import CheckpointInfo, load_checkpoint, load_model, save_checkpoint
from gac_analysis.models.gac import DirectEncoder, GACEncoder
from gac_analysis.models.layers import ROLES, declare
from gac_analysis.models.msresnet import MSResNet
from gac_analysis.models.neurons import LIF, LIF_VARIANTS, lif_reference
from gac_analysis.models.registry import ARCHS, build_model, count_parameters

__all__ = [
    "ARCHS",
    "CheckpointInfo",
    "DirectEncoder",
    "GACEncoder",
    "LIF",
    "LIF_VARIANTS",
    "MSResNet",
    "ROLES",
    "build_model",
    "count_parameters",
    "declare",
    "lif_reference",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
