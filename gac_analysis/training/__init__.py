"""Training: a small seeded SGD trainer for the project's spiking models (see :mod:`.trainer`)."""

from gac_analysis.training.augment import POLICIES, make_augment, random_hflip, random_shift, zero_pixel_fill
from gac_analysis.training.trainer import EpochStats, TrainResult, evaluate, set_deterministic, train

__all__ = [
    "EpochStats",
    "POLICIES",
    "TrainResult",
    "evaluate",
    "make_augment",
    "random_hflip",
    "random_shift",
    "set_deterministic",
    "train",
    "zero_pixel_fill",
]
