"""Safe image and label-mask decoding.

Every image entering the platform goes through :func:`load_image`, which returns RGB ``uint8``
HxWx3 whatever the file held:

- formats: JPEG (also CMYK and multi-picture MPO, whose primary image is used), PNG (1/8/16 bit,
  palette, gray, alpha), WebP, BMP, TIFF, and no other: Pillow is not allowed to parse GIF, ICO,
  PSD, EPS and its other formats at all (``ACCEPTED_FORMATS``), and such a file is refused naming
  its format; EXIF orientation is applied;
- transparency is composited onto **white** (not dropped): transparent pixels often hold
  arbitrary colours that would otherwise show up as spurious change;
- 16-bit gray is scaled to 8 bit as ``round(v / 257)`` (Pillow's own conversion clips at 255);
  16-bit RGB(A) is reduced by Pillow to its high byte, which is also a scaling, not a clip;
- animated or multi-page files (WebP, APNG, TIFF with more than one frame) are rejected;
- the pixel limit is checked from the header, before any pixel is decoded, so a small file that
  declares a huge canvas (a decompression bomb) costs nothing. Pillow's own global bomb limit
  (``PIL.Image.MAX_IMAGE_PIXELS``) still applies on top and is reported the same way.

Problems are raised as :class:`ImageError` (a ``ValueError``) with a message saying what is
wrong and what to do about it.
"""

from __future__ import annotations

import io
from os import PathLike
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
# The formats the docs name; Pillow parses no other (its JPEG reader also opens multi-picture MPO files).
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_ACCEPTED_NAMES = "PNG, JPEG, WebP, BMP, TIFF"

Source = str | PathLike | bytes | bytearray | memoryview | IO[bytes]

_SIXTEEN_BIT_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)


class ImageError(ValueError):
    """An uploaded image or mask cannot be used; the message says why and what to do."""


class ImageSize(NamedTuple):
    """Width and height in pixels (Pillow's order, not numpy's)."""

    width: int
    height: int


def load_image(source: Source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` (a path, the file's bytes, or an open binary file) to RGB ``uint8`` HxWx3.

    ``max_pixels=None`` means :data:`DEFAULT_MAX_PIXELS`; there is deliberately no way to
    switch the limit off.
    """
    with _open_checked(source, max_pixels) as img:
        upright = _decode_upright(img)
        file_format = img.format
    return _to_rgb_array(upright, file_format)


def load_mask(
    source: Source,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, list[str]]:
    """Decode a change label to a ``bool`` HxW mask (True = changed) plus warnings.

    Accepted encodings: {0, 255} (or {0, 65535} for 16-bit files) and {0, 1}. Anything else
    (JPEG noise, anti-aliased edges) is binarised at half the range (128 for 8 bit) and a
    warning says how many pixels were affected. Colour labels are reduced to gray by taking the
    brightest channel, so pure red, green or blue marks count as changed; alpha is ignored.

    ``size`` is ``(width, height)`` as returned by :func:`image_size` (for an array ``b`` use
    ``(b.shape[1], b.shape[0])``); a label of another size raises :class:`ImageError`.
    """
    with _open_checked(source, max_pixels) as img:
        upright = _decode_upright(img)
        file_format = img.format
    values, full_scale, warnings = _label_values(upright, file_format)
    mask, binarise_warnings = _binarise_label(values, full_scale)
    warnings.extend(binarise_warnings)
    if size is not None:
        _check_label_size(mask, size)
    return mask, warnings


def image_size(source: Source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageSize:
    """``(width, height)`` after EXIF orientation, read from the header without decoding pixels."""
    with _open_checked(source, max_pixels) as img:
        width, height = img.size
        if _exif_orientation(img) in _SWAPPED_ORIENTATIONS:
            width, height = height, width
    return ImageSize(width, height)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA) array; ``bool`` -> 0/255."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 or bool pixels, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"encode_png needs HxW, HxWx3 or HxWx4, got shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def _open_checked(source: Source, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) and reject what must not be decoded."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    stream = _as_stream(source)
    try:
        Image.init()  # registers every plugin (MPO, WebP, TIFF) once; `formats` then limits which may parse
        img = Image.open(stream, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image declares too many pixels ({exc}); upload an image of at most {limit:,} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        other = _other_format(stream)
        if other:
            raise ImageError(f"format {other} is not accepted; use {_ACCEPTED_NAMES}") from exc
        raise ImageError(
            f"file is not an image in a supported format ({_ACCEPTED_NAMES}); "
            "check that it was exported as an image and not renamed"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image header is unreadable ({exc}); the file is corrupt") from exc
    try:
        _reject_oversized(img, limit)
        _reject_animated(img)
    except ImageError:
        img.close()
        raise
    return img


def _other_format(stream) -> str | None:
    """The name of a format Pillow knows but we do not accept, read from the file's signature only."""
    if isinstance(stream, Path):
        with open(stream, "rb") as fh:
            head = fh.read(16)
    else:
        stream.seek(0)
        head = stream.read(16)
    return next((name for signature, name in _OTHER_SIGNATURES if head.startswith(signature)), None)


_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"8BPS", "PSD"),
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
    (b"P1", "PPM"), (b"P2", "PPM"), (b"P3", "PPM"), (b"P4", "PPM"), (b"P5", "PPM"), (b"P6", "PPM"), (b"DDS ", "DDS"),
    (b"qoif", "QOI"), (b"SIMPLE  =", "FITS"), (b"\x0a\x05\x01", "PCX"), (b"#define", "XBM"), (b"/* XPM */", "XPM"),
    (b"\x01\xda", "SGI"), (b"Image type", "IM"),
)  # fmt: skip


def _as_stream(source: Source) -> IO[bytes] | Path:
    if hasattr(source, "read"):  # an open binary file, e.g. an uploaded file
        source = source.read()
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError("file is empty (0 bytes); upload the image again")
        return io.BytesIO(data)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"file {path.name} is empty (0 bytes); upload the image again")
    return path


def _reject_oversized(img: Image.Image, limit: int) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image declares an empty canvas ({width}x{height}); the file is corrupt")
    if width * height > limit:
        raise ImageError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limit:,}; downscale or crop it before uploading"
        )


def _reject_animated(img: Image.Image) -> None:
    if img.format == "MPO":
        return  # camera multi-picture JPEG: frame 0 is the photo, the rest are previews/depth
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise ImageError(f"{img.format} file has {frames} frames (animated or multi-page); upload a single still image")


def _decode_upright(img: Image.Image) -> Image.Image:
    """Decode the pixels and apply EXIF orientation."""
    try:
        img.load()
        upright = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image declares too many pixels ({exc})") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"could not decode the {img.format or 'image'} data ({exc}); the file is truncated or corrupt, re-export it"
        ) from exc
    return upright if upright is not None else img


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF: exif_transpose would leave the image as stored too


def _is_sixteen_bit_gray(img: Image.Image, file_format: str | None) -> bool:
    # Some Pillow versions open 16-bit gray PNGs as 32-bit "I"; PNG has no 32-bit integer type.
    return img.mode in _SIXTEEN_BIT_GRAY_MODES or (img.mode == "I" and file_format == "PNG")


def _to_rgb_array(img: Image.Image, file_format: str | None) -> np.ndarray:
    if _is_sixteen_bit_gray(img, file_format):
        gray = _sixteen_bit_to_eight(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("I", "F"):
        raise ImageError(
            f"{img.mode!r} images (32-bit integer or floating point) are not supported; "
            "export as 8 or 16 bit per channel"
        )
    if _has_alpha(img):
        return np.asarray(_composite_on_white(img))
    try:
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"cannot convert colour mode {img.mode!r} to RGB; export as RGB") from exc
    return np.asarray(rgb)


def _sixteen_bit_to_eight(values: np.ndarray) -> np.ndarray:
    scaled = np.rint(values.astype(np.float64) / 257.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _label_values(img: Image.Image, file_format: str | None) -> tuple[np.ndarray, int, list[str]]:
    """Integer label values, their full-scale value (255 or 65535), and conversion warnings."""
    if _is_sixteen_bit_gray(img, file_format):
        return np.asarray(img).astype(np.int64), 65535, []
    if img.mode in ("I", "F"):
        raise ImageError(f"label mode {img.mode!r} is not supported; save the mask as 8-bit gray")
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L")).astype(np.int64), 255, []
    if img.mode in ("LA", "La"):
        return np.asarray(img.convert("LA"))[:, :, 0].astype(np.int64), 255, []
    rgb = np.asarray(img.convert("RGB"))
    warnings = []
    if not (np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])):
        warnings.append("colour label converted to gray using the brightest channel")
    return rgb.max(axis=2).astype(np.int64), 255, warnings


# Anti-aliased edges and JPEG noise leave a few grey pixels; a label mostly grey is not a mask.
MAX_AMBIGUOUS_LABEL_SHARE = 0.05


def _binarise_label(values: np.ndarray, full_scale: int) -> tuple[np.ndarray, list[str]]:
    if np.issubdtype(values.dtype, np.integer) and values.size and values.min() >= 0:
        # pixel values (0 .. full_scale): counting them is several times faster than np.unique's hashing
        present = set(np.flatnonzero(np.bincount(values.ravel())).tolist())
    else:
        present = set(np.unique(values).tolist())
    for changed_value in (full_scale, 255, 1):
        if present <= {0, changed_value}:
            return values == changed_value, []
    low, high = full_scale // 4, full_scale - full_scale // 4
    ambiguous = float(np.count_nonzero((values > low) & (values < high))) / values.size
    if ambiguous > MAX_AMBIGUOUS_LABEL_SHARE:
        raise ImageError(
            f"label is not a change mask: {100.0 * ambiguous:.1f}% of its pixels are grey (between {low} and "
            f"{high}); a mask is black (0) where nothing changed and white ({full_scale}) where something "
            "changed (0/1 works too); save it as PNG, not JPEG"
        )
    threshold = (full_scale + 1) // 2
    mask = values >= threshold
    stray = int(np.count_nonzero((values != 0) & (values != full_scale)))
    warning = (
        f"label has values other than 0/{full_scale} and 0/1 in {stray:,} pixels "
        f"({100.0 * stray / values.size:.2f}%); binarised at {threshold}"
    )
    return mask, [warning]


def _check_label_size(mask: np.ndarray, size: tuple[int, int]) -> None:
    width, height = size
    if mask.shape != (height, width):
        raise ImageError(
            f"label is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
            "labels must be in image B's frame at B's size"
        )
