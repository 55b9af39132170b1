"""Photographs: a folder of image files, and scikit-learn's two bundled sample photos.

Both use the ImageNet evaluation transform (:func:`eval_pixels`): resize the shorter side
to ``round(image_size / 0.875)`` pixels (256 for 224, bilinear), center-crop
``image_size x image_size``, scale to [0, 1] and normalise with the ImageNet statistics.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gac_analysis.data.base import DataSource, FileStore, Uint8Store, one_line
from gac_analysis.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_PHOTO_SIZE = 224
CROP_FRACTION = 0.875


#: PIL modes holding 16-bit unsigned samples (grey PNGs of 16 bits open as ``I;16``).
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Modes whose colour channels ``Image.convert("RGB")`` maps exactly as intended (alpha, when present, is
#: dropped: the stored colours are kept, as torchvision's ``convert("RGB")`` pipelines do).
_CONVERT_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB, every mode converted deliberately (grey is repeated over R, G, B).

    - 8-bit modes (grey ``L``, ``1``, palette ``P``/``PA``, ``RGB``/``RGBA``/``RGBX``, ``LA``, ``CMYK``,
      ``YCbCr``, ``LAB``, ``HSV``): PIL's own conversion; alpha is dropped (the stored colours are kept).
    - ``La`` / ``RGBa`` (premultiplied alpha): un-premultiplied first, then as above.
    - 16-bit grey (``I;16*``) and 32-bit integer ``I``: samples are 16-bit (0..65535), scaled to 8 bits as
      ``round(v * 255 / 65535)`` (not clipped at 255); an ``I`` sample outside 0..65535 is an error.
    - 32-bit float ``F``: samples in [0, 1], scaled as ``round(v * 255)``; outside [0, 1] or NaN is an error.

    Raises:
        DataError: a mode this function has no rule for, or samples outside the mode's range.
    """
    mode = img.mode
    if mode in _UINT16_MODES or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = (0.0, 1.0) if mode == "F" else (0.0, 65535.0)
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= lo and arr.max() <= hi):
            raise DataError(
                f"image of mode {mode} has samples outside {lo:g}..{hi:g} (min {np.nanmin(arr):g}, max "
                f"{np.nanmax(arr):g}): save it as 8- or 16-bit PNG"
            )
        grey = np.rint(arr * (255.0 / hi)).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "La":
        return img.convert("LA").convert("RGB")
    if mode in _CONVERT_MODES:
        return img.convert("RGB")
    raise DataError(f"image mode {mode} is not supported: save the image as RGB or grey PNG/JPEG")


def eval_pixels(img: Image.Image, image_size: int) -> torch.Tensor:
    """ImageNet eval geometry without normalisation: uint8 ``[3, image_size, image_size]``.

    The shorter side is resized to ``round(image_size / 0.875)`` (bilinear, the longer side
    keeps the aspect ratio, truncated to whole pixels), then the center
    ``image_size x image_size`` square is cropped.
    """
    img = to_rgb8(img)
    w, h = img.size
    short = max(1, round(image_size / CROP_FRACTION))
    if w <= h:
        new_w, new_h = short, max(1, int(short * h / w))
    else:
        new_w, new_h = max(1, int(short * w / h)), short
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = int(round((new_w - image_size) / 2.0))
    top = int(round((new_h - image_size) / 2.0))
    img = img.crop((left, top, left + image_size, top + image_size))
    arr = np.asarray(img, dtype=np.uint8)  # [S, S, 3]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def normalise_imagenet(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> float32 scaled to [0, 1] and ImageNet-normalised."""
    x = pixels.to(torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def load_image_file(path: Path, image_size: int) -> torch.Tensor:
    """Read one image file and apply the eval transform: float32 ``[3, S, S]``, normalised."""
    try:
        with Image.open(path) as img:
            img.load()
            pixels = eval_pixels(img, image_size)
    except DataError as e:
        raise DataError(f"image file {path}: {e}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(
            f"cannot read image file {path} ({type(e).__name__}: {one_line(e)}): remove or replace the file"
        ) from None
    return normalise_imagenet(pixels)


def _visible(p: Path, root: Path) -> bool:
    """True when no part of ``p`` below ``root`` is hidden (starts with '.')."""
    return not any(part.startswith(".") for part in p.relative_to(root).parts)


def scan_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``root`` sorted by relative path, their labels and the class names.

    Every visible first-level sub-folder is a class (sorted names -> label 0, 1, ...);
    files directly in ``root`` get label -1. Without sub-folders all labels are -1.
    Hidden files and folders (names starting with '.') are skipped.
    """
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = {name: i for i, name in enumerate(classes)}
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and _visible(p, root)]
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    labels = []
    for p in files:
        parts = p.relative_to(root).parts
        labels.append(index[parts[0]] if len(parts) > 1 else -1)
    return files, labels, classes


def open_folder(raw_path: str, *, num_images: int | None, image_size: int | None) -> DataSource:
    """Open ``folder:PATH``: image files found recursively, loaded lazily per batch."""
    spec = f"folder:{raw_path}"
    root = Path(raw_path).expanduser()
    if not root.exists():
        raise DataError(f"image folder not found: {root} (from '{spec}'): check the path")
    if not root.is_dir():
        raise DataError(f"image folder path is not a folder: {root} (from '{spec}'): pass a folder")
    files, labels, classes = scan_folder(root)
    if not files:
        raise DataError(
            f"no images found in folder {root} (from '{spec}'): add "
            f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)} files (sub-folders are classes)"
        )
    available = len(files)
    if num_images is not None:
        files, labels = files[:num_images], labels[:num_images]
    size = DEFAULT_PHOTO_SIZE if image_size is None else image_size
    return DataSource(
        name=spec,
        images=FileStore(files, partial(load_image_file, image_size=size)),
        labels=torch.tensor(labels, dtype=torch.int64),
        image_size=(size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        split=None,
        seed=None,
        extra={
            "path": str(root.resolve()),
            "num_available": available,
            "classes": classes,
            "transform": f"resize shorter side {round(size / CROP_FRACTION)} bilinear, center crop {size}",
        },
    )


def raw_photos(image_size: int = DEFAULT_PHOTO_SIZE) -> torch.Tensor:
    """scikit-learn's sample photos (china.jpg, flower.jpg), eval-cropped, not normalised.

    Returns:
        uint8 ``[2, 3, image_size, image_size]`` (values 0..255), for figures.
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # list of uint8 [427, 640, 3]
    return torch.stack([eval_pixels(Image.fromarray(np.asarray(a)), image_size) for a in photos])


def open_photos(*, num_images: int | None, image_size: int | None) -> DataSource:
    """Open ``photos``: the two bundled photographs with the ImageNet eval transform."""
    size = DEFAULT_PHOTO_SIZE if image_size is None else image_size
    pixels = raw_photos(size)
    available = int(pixels.shape[0])
    if num_images is not None:
        pixels = pixels[:num_images]
    return DataSource(
        name="photos",
        images=Uint8Store(pixels, IMAGENET_MEAN, IMAGENET_STD),
        labels=torch.full((pixels.shape[0],), -1, dtype=torch.int64),
        image_size=(size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        split=None,
        seed=None,
        extra={
            "num_available": available,
            "files": ["china.jpg", "flower.jpg"][: pixels.shape[0]],
            "origin": "sklearn.datasets.load_sample_images",
            "transform": f"resize shorter side {round(size / CROP_FRACTION)} bilinear, center crop {size}",
        },
    )
