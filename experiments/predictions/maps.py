"""One uploaded prediction file -> a float32 map in [0, 1] of B's size, and the compact file stored for it.

Accepted files: a PNG (for `mask`: any mode, nonzero = changed; for `probability`: 8-bit grayscale
read as /255 or 16-bit grayscale read as /65535) or a `.npy` (float32, or float64 cast to float32,
2-D; read with `allow_pickle=False` after its header is checked, so neither pickles nor a header
claiming a huge array get any further). The stored file is canonical and decodes through the same
function: a mask as an 8-bit 0/255 PNG, a PNG probability as a PNG of its own bit depth, an `.npy`
probability as float32 `.npy`.
"""

import io
from dataclasses import dataclass

import numpy as np

EXTENSIONS = ("png", "npy")
MASK, PROBABILITY = "mask", "probability"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


class MapError(ValueError):
    """The file is not a usable map; the message says what to fix (the caller names the pair)."""


@dataclass(frozen=True)
class CheckedMap:
    values: np.ndarray  # float32 HxW in [0, 1]; 0 or 1 for a mask
    stored: bytes  # the canonical file kept in storage
    extension: str  # of the stored file: "png" or "npy"


def _size_text(height: int, width: int) -> str:
    return f"{width}x{height}"


def _check_size(shape: tuple[int, int], size: tuple[int, int]) -> None:
    if tuple(shape) != tuple(size):
        raise MapError(
            f"the map is {_size_text(*shape)} (width x height) but image B (and its label) is {_size_text(*size)}; "
            "predict in B's frame at B's size"
        )


def _png_array(data: bytes, kind: str, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """`(array, divisor)`: a mask's 0/1 as uint8 with divisor 1, a probability's levels with 255 or 65535."""
    from PIL import Image, UnidentifiedImageError

    if not data.startswith(PNG_SIGNATURE):
        raise MapError("the file is named .png but is not a PNG")
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        _check_size((image.size[1], image.size[0]), size)  # from the header, before decoding any pixel
        image.load()
    except MapError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MapError(f"the PNG cannot be read ({exc})") from None
    if kind == MASK:
        if image.mode == "P":
            image = image.convert("RGBA")
        array = np.asarray(image)
        if array.ndim == 3:
            channels = array.shape[2]
            array = array[..., : 3 if channels >= 3 else 1]  # alpha says nothing about change
            return np.any(array != 0, axis=2).astype(np.uint8), 1
        return (array != 0).astype(np.uint8), 1
    if image.mode == "L":
        return np.asarray(image, np.uint8), 255
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise MapError("the 16-bit PNG holds values outside 0..65535")
        return array.astype(np.uint16), 65535
    raise MapError(
        f"a probability PNG must be 8-bit or 16-bit grayscale, not mode {image.mode}; "
        "save the probability (0..1) times 255 or 65535 as one grayscale channel"
    )


def _npy_array(data: bytes, size: tuple[int, int]) -> np.ndarray:
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = header(handle)
    except (ValueError, OSError, EOFError) as exc:
        raise MapError(f"the file is not a readable .npy ({exc})") from None
    if dtype.hasobject:
        raise MapError("the .npy holds Python objects (a pickle); save a float32 array with numpy.save")
    if dtype not in (np.dtype("float32"), np.dtype("float64")):
        raise MapError(f"the .npy is {dtype}; save it as float32 (float64 is accepted and cast)")
    if len(shape) != 2:
        raise MapError(f"the .npy has shape {shape}; save one 2-D array of B's height x width")
    _check_size(shape, size)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MapError(f"the .npy cannot be read ({exc})") from None
    return np.asarray(array, np.float32)


def _decode(data: bytes, extension: str, kind: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """`(values, what to store, stored extension)`: levels for a PNG, the float32 array for an `.npy`."""
    extension = extension.lower()
    if extension == "png":
        levels, divisor = _png_array(data, kind, size)
        if kind == MASK:
            return levels.astype(np.float32), levels * np.uint8(255), "png"
        return (levels.astype(np.float32) / np.float32(divisor)).astype(np.float32), levels, "png"
    if extension == "npy":
        array = _npy_array(data, size)
        if not np.isfinite(array).all():
            raise MapError("the .npy holds NaN or infinite values")
        if kind == MASK:
            levels = (array != 0).astype(np.uint8)
            return levels.astype(np.float32), levels * np.uint8(255), "png"
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise MapError(f"probabilities must lie in [0, 1]; this map spans [{low:g}, {high:g}]")
        return np.ascontiguousarray(array), array, "npy"
    raise MapError(f"files must be .png or .npy, not .{extension}")


def check_map(data: bytes, extension: str, kind: str, size: tuple[int, int]) -> CheckedMap:
    """Decode and check one file for a pair whose B is `size` (height, width)."""
    values, kept, stored_extension = _decode(data, extension, kind, size)
    stored = _encode_png(kept) if stored_extension == "png" else _encode_npy(kept)
    return CheckedMap(values, stored, stored_extension)


def load_stored(data: bytes, extension: str, kind: str, size: tuple[int, int]) -> np.ndarray:
    """The map of a stored (canonical) file, decoded by the same rules as when it was uploaded."""
    return _decode(data, extension, kind, size)[0]


def _encode_png(levels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()
