import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.images import ImageError, encode_png, image_size, load_image, load_mask
from tests.shared_data import shared_folder


def random_rgb(seed=0, shape=(24, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def saved(image: Image.Image, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but whose pixel data is a few bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# Formats and colour modes.


@pytest.mark.parametrize(
    ("file_format", "options"),
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})],
)
def test_lossless_formats_round_trip_exactly(file_format, options):
    pixels = random_rgb()

    loaded = load_image(saved(Image.fromarray(pixels), file_format, **options))

    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, pixels)


def test_jpeg_decodes_to_rgb_of_the_same_size():
    pixels = np.full((16, 24, 3), (200, 40, 90), np.uint8)

    loaded = load_image(saved(Image.fromarray(pixels), "JPEG", quality=95))

    assert loaded.shape == (16, 24, 3)
    assert np.abs(loaded.astype(int) - pixels).max() <= 3


def test_it_loads_from_a_path(tmp_path):
    pixels = random_rgb(1)
    path = tmp_path / "b.png"
    path.write_bytes(saved(Image.fromarray(pixels), "PNG"))

    np.testing.assert_array_equal(load_image(path), pixels)
    np.testing.assert_array_equal(load_image(str(path)), pixels)


def test_it_loads_from_an_open_binary_file():
    pixels = random_rgb(11)

    loaded = load_image(io.BytesIO(saved(Image.fromarray(pixels), "PNG")))

    np.testing.assert_array_equal(loaded, pixels)


def test_gray_png_becomes_three_equal_channels():
    gray = random_rgb(2)[:, :, 0]

    loaded = load_image(saved(Image.fromarray(gray), "PNG"))

    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], gray)


def test_sixteen_bit_gray_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 1040, 32896, 65535]], np.uint16)
    ok, png = cv2.imencode(".png", values)
    assert ok

    loaded = load_image(png.tobytes())

    np.testing.assert_array_equal(loaded[0, :, 0], [0, 1, 4, 128, 255])


def test_sixteen_bit_rgb_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 40).astype(np.uint16).reshape(5, 8)
    ok, png = cv2.imencode(".png", np.dstack([values] * 3))
    assert ok

    loaded = load_image(png.tobytes())

    assert np.abs(loaded[:, :, 0].astype(int) - np.round(values / 257)).max() <= 1


def test_palette_png_is_expanded_to_its_colours():
    image = Image.fromarray(random_rgb(3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)

    loaded = load_image(saved(image, "PNG"))

    np.testing.assert_array_equal(loaded, np.asarray(image.convert("RGB")))


def test_transparency_is_composited_on_white():
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # transparent red
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black

    loaded = load_image(saved(Image.fromarray(rgba, "RGBA"), "PNG"))

    assert loaded[0, 0].tolist() == [255, 0, 0]
    assert loaded[0, 1].tolist() == [255, 255, 255]
    assert loaded[0, 2].tolist() == [127, 127, 127]


def test_palette_transparency_is_composited_on_white():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])

    loaded = load_image(saved(image, "PNG", transparency=0))

    assert loaded[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_cmyk_jpeg_is_converted_to_rgb():
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))

    loaded = load_image(saved(cyan, "JPEG", quality=95))

    assert loaded.shape == (8, 8, 3)
    assert np.abs(loaded[4, 4].astype(int) - [0, 255, 255]).max() <= 3


def test_exif_orientation_is_applied():
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = 255  # white top-left pixel of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    data = saved(Image.fromarray(pixels), "PNG", exif=exif.tobytes())

    loaded = load_image(data)

    assert loaded.shape == (4, 2, 3)
    assert loaded[0, 1].tolist() == [255, 255, 255]
    assert image_size(data) == (2, 4)


def test_real_levir_tile_loads():
    image = load_image(shared_folder("levir_cd_bit_samples") / "B" / "test_7_0256_0512.png")

    assert image.shape == (256, 256, 3)
    assert image.dtype == np.uint8


# Rejections.


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


@pytest.mark.parametrize("file_format", ["WEBP", "PNG"])
def test_it_rejects_animated_images(file_format):
    frames = [Image.fromarray(random_rgb(seed)) for seed in range(3)]

    data = saved(frames[0], file_format, save_all=True, append_images=frames[1:])

    with pytest.raises(ImageError, match="3 frames"):
        load_image(data)


@pytest.mark.parametrize(
    ("file_format", "named"),
    [("GIF", "GIF"), ("ICO", "ICO"), ("PPM", "PPM"), ("PCX", "PCX"), ("EPS", "EPS"), ("JPEG2000", "JPEG 2000"),
     ("QOI", "QOI"), ("DDS", "DDS"), ("SGI", "SGI"), ("IM", "IM")],
)  # fmt: skip
def test_it_opens_only_the_documented_formats(file_format, named):
    data = saved(Image.fromarray(random_rgb()), file_format)

    with pytest.raises(ImageError, match=f"format {named} is not accepted; use PNG, JPEG, WebP, BMP, TIFF"):
        load_image(data)
    with pytest.raises(ImageError, match="not accepted"):
        load_mask(data)


@pytest.mark.parametrize("file_format", ["TGA", "SPIDER"])
def test_a_format_without_a_signature_is_refused_as_unsupported(file_format):
    data = saved(Image.fromarray(random_rgb()).convert("L" if file_format == "SPIDER" else "RGB"), file_format)

    with pytest.raises(ImageError, match="supported format \\(PNG, JPEG, WebP, BMP, TIFF\\)"):
        load_image(data)


def test_an_animated_gif_is_refused_as_a_format_not_accepted():
    frames = [Image.fromarray(random_rgb(seed)) for seed in range(3)]

    with pytest.raises(ImageError, match="format GIF is not accepted"):
        load_image(saved(frames[0], "GIF", save_all=True, append_images=frames[1:]))


def test_it_rejects_multi_page_tiff():
    pages = [Image.fromarray(random_rgb(seed)) for seed in range(2)]

    data = saved(pages[0], "TIFF", save_all=True, append_images=pages[1:])

    with pytest.raises(ImageError, match="2 frames"):
        load_image(data)


def test_it_rejects_images_over_the_pixel_limit():
    data = saved(Image.fromarray(random_rgb(shape=(100, 100, 3))), "PNG")

    with pytest.raises(ImageError, match="over the limit"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_it_rejects_a_declared_size_over_the_limit_before_decoding():
    # 8000 x 7000 = 56 M pixels declared, but the pixel data would not even decode: the error
    # must be about the size, which proves that no pixel was decoded.
    with pytest.raises(ImageError, match="over the limit"):
        load_image(png_declaring(8000, 7000))


def test_it_rejects_a_decompression_bomb_that_pillow_refuses():
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(png_declaring(100_000, 100_000), max_pixels=10**11)


def test_it_rejects_empty_bytes_and_empty_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")

    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)


def test_it_rejects_a_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")

    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_it_rejects_a_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("file_format", ["PNG", "JPEG"])
def test_it_rejects_truncated_files(file_format):
    data = saved(Image.fromarray(random_rgb(4, shape=(64, 64, 3))), file_format)

    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_image_size_reads_only_the_header():
    data = saved(Image.fromarray(random_rgb(5, shape=(30, 50, 3))), "PNG")

    assert image_size(data[: len(data) // 2]) == (50, 30)


def test_image_size_rejects_declared_bombs():
    with pytest.raises(ImageError, match="over the limit"):
        image_size(png_declaring(8000, 7000))


# Label masks.


def test_mask_of_0_and_255_loads_without_warnings():
    expected = random_rgb(6)[:, :, 0] > 127

    mask, warnings = load_mask(saved(Image.fromarray(expected.astype(np.uint8) * 255), "PNG"))

    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    assert warnings == []


def test_mask_of_0_and_1_loads_without_warnings():
    expected = random_rgb(7)[:, :, 0] > 127

    mask, warnings = load_mask(saved(Image.fromarray(expected.astype(np.uint8)), "PNG"))

    np.testing.assert_array_equal(mask, expected)
    assert warnings == []


def test_sixteen_bit_mask_of_0_and_65535_loads():
    expected = random_rgb(8)[:, :, 0] > 127
    ok, png = cv2.imencode(".png", expected.astype(np.uint16) * 65535)
    assert ok

    mask, warnings = load_mask(png.tobytes())

    np.testing.assert_array_equal(mask, expected)
    assert warnings == []


def test_jpeg_noise_in_a_mask_is_binarised_with_a_warning():
    expected = np.zeros((32, 32), bool)
    expected[5:19, 7:22] = True  # edges off the 8x8 JPEG blocks, so they ring
    data = saved(Image.fromarray(expected.astype(np.uint8) * 255), "JPEG", quality=60)

    mask, warnings = load_mask(data)

    assert np.count_nonzero(mask != expected) <= 10
    assert len(warnings) == 1
    assert "binarised at 128" in warnings[0]


@pytest.mark.parametrize("grey", [128, 100, 180])
def test_a_uniformly_grey_label_is_refused_with_what_a_mask_looks_like(grey):
    data = saved(Image.fromarray(np.full((32, 32), grey, np.uint8)), "PNG")
    with pytest.raises(ImageError, match=r"not a change mask: 100.0% of its pixels are grey.*black \(0\)"):
        load_mask(data)


def test_a_photo_given_as_a_label_is_refused():
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    with pytest.raises(ImageError, match="not a change mask"):
        load_mask(saved(Image.fromarray(ramp), "PNG"))


def test_gray_rgb_mask_converts_without_warning():
    expected = random_rgb(9)[:, :, 0] > 127
    rgb = np.repeat(expected[:, :, None].astype(np.uint8) * 255, 3, axis=2)

    mask, warnings = load_mask(saved(Image.fromarray(rgb), "PNG"))

    np.testing.assert_array_equal(mask, expected)
    assert warnings == []


def test_red_marks_in_a_colour_mask_count_as_change():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1:3, 1:3] = (255, 0, 0)

    mask, warnings = load_mask(saved(Image.fromarray(rgb), "PNG"))

    assert mask.sum() == 4
    assert mask[1:3, 1:3].all()
    assert any("colour label" in w for w in warnings)


def test_mask_size_must_match_the_image():
    data = saved(Image.fromarray(np.zeros((30, 50), np.uint8)), "PNG")

    mask, _ = load_mask(data, size=(50, 30))
    assert mask.shape == (30, 50)
    with pytest.raises(ImageError, match="label is 50x30 but the image is 30x50"):
        load_mask(data, size=(30, 50))


def test_real_levir_label_loads_with_its_documented_change_fraction():
    mask, warnings = load_mask(
        shared_folder("levir_cd_bit_samples") / "label" / "test_7_0256_0512.png", size=(256, 256)
    )

    assert warnings == []
    assert 100 * mask.mean() == pytest.approx(13.67, abs=0.01)


def test_encode_png_round_trips_rgb_gray_and_bool():
    rgb = random_rgb(10)
    mask = rgb[:, :, 0] > 100

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)
    decoded_mask = np.asarray(Image.open(io.BytesIO(encode_png(mask))))
    assert np.array_equal(decoded_mask, mask.astype(np.uint8) * 255)


def test_encode_png_rejects_float_arrays():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2)))
