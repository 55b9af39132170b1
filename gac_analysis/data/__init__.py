"""Data sources: finite, ordered, deterministic sets of images for the analyses.

Open one with :func:`open_source` from a spec string:

* ``random`` -- seeded standard-normal images (default 16 of 32x32);
* ``digits`` -- scikit-learn's bundled hand-written digits, 32x32 RGB, fixed train/test split;
* ``photos`` -- scikit-learn's two bundled photographs, ImageNet eval transform (224);
* ``cifar10:PATH`` / ``cifar100:PATH`` -- the python-pickle batch folders;
* ``folder:PATH`` -- image files, first-level sub-folders are classes, loaded lazily.

Every source yields ``(images float32 [B, 3, H, W], labels int64 [B])`` batches through
:meth:`DataSource.batches` (labels ``-1`` where unknown) and records its provenance in
:meth:`DataSource.describe`. Problems raise :class:`gac_analysis.errors.DataError`.
"""

from gac_analysis.data.base import DataSource
from gac_analysis.data.cifar import CIFAR100_MEAN, CIFAR100_STD, CIFAR_MEAN, CIFAR_STD
from gac_analysis.data.digits import DIGITS_MEAN, DIGITS_STD, digits_split
from gac_analysis.data.images import IMAGENET_MEAN, IMAGENET_STD, raw_photos
from gac_analysis.data.sources import open_source
from gac_analysis.data.validate import validate_images

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DataSource",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "digits_split",
    "open_source",
    "raw_photos",
    "validate_images",
]
