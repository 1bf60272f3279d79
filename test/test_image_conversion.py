"""image_conversion against cv2 reference conversions, on a real driving frame when one is available."""
from __future__ import annotations

import array
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_edge.core.errors import InputError
from perception_edge.core.image_conversion import (BGR, RGB, SUPPORTED_ENCODINGS, compressed_to_pixels,
                                                   image_to_pixels, pixels_to_image_fields, to_rgb)

FRAME_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/driving"
PAD_BYTE = 77  # fills step padding, so padding read as pixels shows up in comparisons
BAYER_OPENCV = {  # cv_bridge's mapping, which the flat-patch test below checks independently
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}


def _synthetic_frame(h: int = 480, w: int = 640) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], axis=-1)
    img = np.ascontiguousarray(img.astype(np.uint8))
    cv2.rectangle(img, (40, 60), (220, 200), (230, 30, 40), -1)
    cv2.circle(img, (420, 260), 90, (20, 200, 60), -1)
    cv2.line(img, (0, h - 1), (w - 1, 0), (250, 250, 250), 5)
    cv2.putText(img, "TEST", (300, 420), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (10, 10, 240), 4)
    return img


@pytest.fixture(scope="module")
def full_frame() -> np.ndarray:
    """A real 1280 x 720 RGB driving frame, else a synthetic one; width and height even (yuv422, Bayer)."""
    for path in sorted(FRAME_DIR.glob("*.jpg")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            h, w = bgr.shape[:2]
            return np.ascontiguousarray(cv2.cvtColor(bgr[:h - h % 2, :w - w % 2], cv2.COLOR_BGR2RGB))
    return _synthetic_frame()


@pytest.fixture(scope="module")
def frame(full_frame) -> np.ndarray:
    """Half-size copy for the many parametrized cases, keeping the file's runtime low."""
    h, w = full_frame.shape[:2]
    return cv2.resize(full_frame, (w // 4 * 2, h // 4 * 2), interpolation=cv2.INTER_AREA)


# ---- building message payloads from an RGB frame ----------------------------------------------

def _bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Follows the ROS name literally: "rggb" puts R at (0, 0), G at (0, 1), G at (1, 0), B at (1, 1)."""
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for letter, (dy, dx) in zip(pattern, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(letter)]
    return mosaic


def _yuv422_rows(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """Packed 4:2:2 rows built from OpenCV's own I420 encoder (same BT.601 video range as its decoder)."""
    h, w = rgb.shape[:2]
    flat = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y = flat[:h * w].reshape(h, w)
    quarter = (h // 2) * (w // 2)
    u = np.repeat(flat[h * w:h * w + quarter].reshape(h // 2, w // 2), 2, axis=0)
    v = np.repeat(flat[h * w + quarter:h * w + 2 * quarter].reshape(h // 2, w // 2), 2, axis=0)
    packed = np.empty((h, w // 2, 4), np.uint8)
    order = (u, y[:, 0::2], v, y[:, 1::2]) if uyvy else (y[:, 0::2], u, y[:, 1::2], v)
    for i, plane in enumerate(order):
        packed[:, :, i] = plane
    return packed.reshape(h, w * 2)


def _mono16(rgb: np.ndarray, dtype: str):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    low = np.random.default_rng(1).integers(0, 256, gray.shape, dtype=np.uint16)
    values = (gray.astype(np.uint16) << 8) | low  # high byte = gray, low byte noise that must be dropped
    rows = values.astype(dtype).view(np.uint8).reshape(gray.shape[0], -1)
    return rows, np.repeat(gray[:, :, None], 3, axis=2)


def _payload(encoding: str, rgb: np.ndarray):
    """(rows H x W*bpp, is_bigendian, expected RGB result of the conversion)."""
    h, w = rgb.shape[:2]
    gray3 = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    alpha = np.random.default_rng(0).integers(0, 256, (h, w, 1), dtype=np.uint8)
    if encoding == "rgb8":
        return rgb.reshape(h, -1), 0, rgb
    if encoding in ("bgr8", "8UC3"):
        return np.ascontiguousarray(rgb[:, :, ::-1]).reshape(h, -1), 0, rgb
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2).reshape(h, -1), 0, rgb
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], alpha], axis=2).reshape(h, -1), 0, rgb
    if encoding in ("mono8", "8UC1"):
        return gray3[:, :, 0], 0, gray3
    if encoding == "mono16":
        rows, expected = _mono16(rgb, "<u2")
        return rows, 0, expected
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        uyvy = encoding in ("yuv422", "uyvy")
        rows = _yuv422_rows(rgb, uyvy)
        code = cv2.COLOR_YUV2RGB_UYVY if uyvy else cv2.COLOR_YUV2RGB_YUY2
        return rows, 0, cv2.cvtColor(rows.reshape(h, w, 2), code)
    mosaic = _bayer_mosaic(rgb, encoding[len("bayer_"):-1])
    return mosaic, 0, cv2.cvtColor(mosaic, BAYER_OPENCV[encoding])


def _message(rows: np.ndarray, pad: int = 0, kind: str = "bytes", trim_last_row_padding: bool = False):
    """(step, data) with `pad` bytes of padding after each row, as the given Python type."""
    h, row_bytes = rows.shape
    step = row_bytes + pad
    buf = np.full((h, step), PAD_BYTE, np.uint8)
    buf[:, :row_bytes] = rows
    flat = buf.reshape(-1)
    if trim_last_row_padding:
        flat = flat[:flat.size - pad]
    if kind == "bytes":
        return step, flat.tobytes()
    if kind == "bytearray":
        return step, bytearray(flat.tobytes())
    if kind == "array":
        return step, array.array("B", flat.tobytes())
    if kind == "memoryview":
        return step, memoryview(flat.tobytes())
    assert kind == "numpy"
    return step, flat


# ---- every encoding against its reference -----------------------------------------------------

@pytest.mark.parametrize("pad,kind", [(0, "bytes"), (13, "array")])
@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_encoding_matches_cv2_reference(frame, encoding, pad, kind):
    rows, bigendian, expected = _payload(encoding, frame)
    step, data = _message(rows, pad, kind)
    h, w = frame.shape[:2]
    pixels, order = image_to_pixels(w, h, encoding, step, bigendian, data)
    assert pixels.shape == (h, w, 3) and pixels.dtype == np.uint8
    assert order in (RGB, BGR)
    np.testing.assert_array_equal(to_rgb(pixels, order), expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono16", "yuv422", "bayer_rggb8"])
def test_full_resolution_frame(full_frame, encoding):
    rows, bigendian, expected = _payload(encoding, full_frame)
    step, data = _message(rows, 64, "array")
    h, w = full_frame.shape[:2]
    pixels, order = image_to_pixels(w, h, encoding, step, bigendian, data)
    np.testing.assert_array_equal(to_rgb(pixels, order), expected)


def test_supported_encodings_cover_the_ros_names():
    assert set(SUPPORTED_ENCODINGS) == {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "yuv422_yuy2", "uyvy", "yuyv",
        "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "8UC3", "8UC1"}


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_byte_order_reproduces_the_frame(frame, encoding):
    # The reference test above would pass with UYVY and YUYV swapped in both places; this one would not.
    rows, _, _ = _payload(encoding, frame)
    h, w = frame.shape[:2]
    pixels, order = image_to_pixels(w, h, encoding, w * 2, 0, rows.tobytes())
    err = np.abs(to_rgb(pixels, order).astype(np.int16) - frame).mean()
    assert err < 6.0, f"{encoding}: mean error {err:.1f} against the source frame"


@pytest.mark.parametrize("encoding", list(BAYER_OPENCV))
def test_bayer_pattern_names_follow_ros_on_flat_patches(encoding):
    colours = [(220, 30, 40), (30, 200, 50), (20, 40, 210), (200, 180, 20), (160, 40, 200), (90, 150, 160)]
    rgb = np.zeros((64, 96, 3), np.uint8)
    for i, colour in enumerate(colours):
        y, x = 32 * (i // 3), 32 * (i % 3)
        rgb[y:y + 32, x:x + 32] = colour
    mosaic = _bayer_mosaic(rgb, encoding[len("bayer_"):-1])
    pixels, order = image_to_pixels(96, 64, encoding, 96, 0, mosaic.tobytes())
    out = to_rgb(pixels, order)
    for i, colour in enumerate(colours):
        y, x = 32 * (i // 3), 32 * (i % 3)
        inner = out[y + 4:y + 28, x + 4:x + 28].reshape(-1, 3)
        assert (np.abs(inner.astype(int) - colour) <= 1).all(), \
            f"{encoding}: patch {colour} came back {inner[0]}"


@pytest.mark.parametrize("encoding", list(BAYER_OPENCV))
def test_bayer_demosaic_reproduces_the_frame(frame, encoding):
    h, w = frame.shape[:2]
    mosaic = _bayer_mosaic(frame, encoding[len("bayer_"):-1])
    pixels, order = image_to_pixels(w, h, encoding, w, 0, mosaic)
    err = np.abs(to_rgb(pixels, order).astype(np.int16) - frame).mean()
    assert err < 8.0, f"{encoding}: mean error {err:.1f} against the source frame"


# ---- buffers: views, padding, data types ------------------------------------------------------

@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "memoryview", "numpy"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8"])
def test_colour_encodings_are_views_over_the_message_buffer(frame, encoding, kind):
    rows, _, expected = _payload(encoding, frame)
    step, data = _message(rows, 8, kind)
    h, w = frame.shape[:2]
    pixels, order = image_to_pixels(w, h, encoding, step, 0, data)
    assert np.shares_memory(pixels, np.frombuffer(data, np.uint8))
    assert not pixels.flags.writeable  # the message buffer may be shared with other subscribers
    assert order == (RGB if encoding.startswith("rgb") else BGR)
    np.testing.assert_array_equal(to_rgb(pixels, order), expected)


def test_padded_rgba_view_is_readable_by_cv2(frame):
    rows, _, expected = _payload("rgba8", frame)
    step, data = _message(rows, 13)
    h, w = frame.shape[:2]
    pixels, _ = image_to_pixels(w, h, "rgba8", step, 0, data)
    small = cv2.resize(pixels, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(small, cv2.resize(expected, (w // 4, h // 4), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "memoryview", "numpy"])
def test_mono_and_yuv_accept_every_data_type(frame, kind):
    h, w = frame.shape[:2]
    for encoding in ("mono8", "mono16", "yuv422"):
        rows, _, expected = _payload(encoding, frame)
        step, data = _message(rows, 6, kind)
        pixels, order = image_to_pixels(w, h, encoding, step, 0, data)
        np.testing.assert_array_equal(to_rgb(pixels, order), expected)


@pytest.mark.parametrize("bigendian", [True, 1, False, 0])
def test_mono16_takes_the_high_byte_in_either_byte_order(frame, bigendian):
    rows, expected = _mono16(frame, ">u2" if bigendian else "<u2")
    h, w = frame.shape[:2]
    for pad in (0, 7):  # odd padding puts rows at odd addresses
        step, data = _message(rows, pad)
        pixels, _ = image_to_pixels(w, h, "mono16", step, bigendian, data)
        np.testing.assert_array_equal(pixels, expected)


def test_mono16_value_is_shifted_not_truncated():
    values = np.array([[0x1234, 0xFF01, 0x00FF, 0x8000]], np.uint16)
    for dtype, flag in ((">u2", 1), ("<u2", 0)):
        pixels, _ = image_to_pixels(4, 1, "mono16", 8, flag, values.astype(dtype).tobytes())
        assert pixels[0, :, 0].tolist() == [0x12, 0xFF, 0x00, 0x80]


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono16", "yuv422_yuy2", "bayer_grbg8"])
def test_last_row_may_omit_its_padding(frame, encoding):
    rows, _, expected = _payload(encoding, frame)
    step, data = _message(rows, 32, "bytes", trim_last_row_padding=True)
    h, w = frame.shape[:2]
    pixels, order = image_to_pixels(w, h, encoding, step, 0, data)
    np.testing.assert_array_equal(to_rgb(pixels, order), expected)
    with pytest.raises(InputError, match="image data is"):
        image_to_pixels(w, h, encoding, step, 0, data[:-1])


def test_encoding_names_are_case_insensitive(frame):
    h, w = frame.shape[:2]
    pixels, order = image_to_pixels(w, h, "RGB8", w * 3, 0, frame.reshape(-1))
    assert order == RGB and np.shares_memory(pixels, frame)
    _, order = image_to_pixels(w, h, "8uc3", w * 3, 0, frame.reshape(-1))
    assert order == BGR


# ---- validation -------------------------------------------------------------------------------

def test_unknown_encoding_lists_the_supported_ones():
    with pytest.raises(InputError) as info:
        image_to_pixels(4, 4, "nv12", 4, 0, bytes(64))
    message = str(info.value)
    assert "nv12" in message and "\n" not in message
    assert all(name in message for name in SUPPORTED_ENCODINGS)
    with pytest.raises(InputError, match="must be a string"):
        image_to_pixels(4, 4, None, 4, 0, bytes(64))


def test_truncated_data_says_how_much_was_expected():
    expected = ("image data is 1000 bytes, expected at least (height - 1) * step + width * bytes_per_pixel "
                "= 2764800 (720 x 3840")
    with pytest.raises(InputError, match=re.escape(expected)):
        image_to_pixels(1280, 720, "rgb8", 3840, 0, bytes(1000))
    with pytest.raises(InputError, match="image data is 0 bytes"):
        image_to_pixels(2, 2, "mono8", 2, 0, b"")


@pytest.mark.parametrize("width,height", [(0, 720), (1280, 0), (-4, 4), (0, 0)])
def test_zero_size_image(width, height):
    with pytest.raises(InputError, match="zero-size image"):
        image_to_pixels(width, height, "bgr8", 3840, 0, bytes(100))


@pytest.mark.parametrize("encoding,bpp", [("rgb8", 3), ("bgra8", 4), ("mono16", 2), ("yuv422", 2), ("mono8", 1)])
def test_step_smaller_than_a_row(encoding, bpp):
    message = f"step {10 * bpp - 1} is less than width*bytes_per_pixel = {10 * bpp}"
    with pytest.raises(InputError, match=re.escape(message)):
        image_to_pixels(10, 4, encoding, 10 * bpp - 1, 0, bytes(1000))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2", "uyvy", "yuyv"])
def test_yuv422_needs_an_even_width(encoding):
    with pytest.raises(InputError, match="width must be even"):
        image_to_pixels(5, 2, encoding, 10, 0, bytes(20))


def test_data_that_is_not_bytes():
    with pytest.raises(InputError, match="bytes"):
        image_to_pixels(2, 2, "mono8", 2, 0, np.zeros(4, np.float32))
    with pytest.raises(InputError, match="bytes-like"):
        image_to_pixels(2, 2, "mono8", 2, 0, object())


# ---- compressed images ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoded(frame):
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    ok_jpg, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ok_png, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok_jpg and ok_png
    return {"jpeg": jpg.tobytes(), "png": png.tobytes()}


@pytest.mark.parametrize("fmt,codec", [
    ("jpeg", "jpeg"), ("jpg", "jpeg"), ("png", "png"), ("rgb8; jpeg compressed bgr8", "jpeg"),
    ("bgr8; png compressed bgr8", "png"), ("mono8; png compressed bgr8", "png"), ("", "png")])
def test_compressed_images_decode_to_bgr(frame, encoded, fmt, codec):
    data = encoded[codec]
    pixels, order = compressed_to_pixels(fmt, array.array("B", data))
    assert order == BGR and pixels.shape == frame.shape
    np.testing.assert_array_equal(pixels, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    if codec == "png":  # lossless: the colours must come back exactly
        np.testing.assert_array_equal(to_rgb(pixels, order), frame)


def test_compressed_target_rgb_is_reported_as_rgb(frame, encoded):
    # A publisher that compressed rgb bytes as-is: imdecode's "BGR" then holds RGB.
    pixels, order = compressed_to_pixels("rgb8; png compressed rgb8", encoded["png"])
    assert order == RGB
    np.testing.assert_array_equal(pixels, frame[:, :, ::-1])


@pytest.mark.parametrize("data", [b"", bytes(range(256)) * 8, b"\xff\xd8\xff\xe0" + bytes(60)])
def test_corrupt_or_empty_jpeg(data):
    message = f"could not decode the jpeg image ({len(data)} bytes)"
    with pytest.raises(InputError, match=re.escape(message)):
        compressed_to_pixels("jpeg", data)


@pytest.mark.parametrize("fmt", ["h264", "theora", "16UC1; compressedDepth png", "32FC1; compressedDepth"])
def test_unsupported_compressed_format(fmt, encoded):
    with pytest.raises(InputError, match="unsupported compressed image format"):
        compressed_to_pixels(fmt, encoded["png"])


# ---- to_rgb and publishing --------------------------------------------------------------------

def test_to_rgb(frame):
    assert to_rgb(frame, RGB) is frame
    bgr_view = np.ascontiguousarray(frame[:, :, ::-1])[:, 1:]  # non-contiguous input
    out = to_rgb(bgr_view, BGR)
    assert out.flags.c_contiguous and not np.shares_memory(out, bgr_view)
    np.testing.assert_array_equal(out, frame[:, 1:])
    with pytest.raises(InputError, match="channel order"):
        to_rgb(frame, "rgba")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_publish_colour_round_trip(frame, encoding):
    src = frame[::2, 1::2]  # non-contiguous: must still be published densely
    fields = pixels_to_image_fields(src, encoding)
    h, w = src.shape[:2]
    assert fields["height"] == h and fields["width"] == w
    assert fields["step"] == w * 3 and fields["is_bigendian"] == 0
    assert fields["encoding"] == encoding
    assert isinstance(fields["data"], array.array) and fields["data"].typecode == "B"  # rclpy's fast path
    assert len(fields["data"]) == h * w * 3
    pixels, order = image_to_pixels(**fields)
    assert order == (RGB if encoding == "rgb8" else BGR)
    np.testing.assert_array_equal(to_rgb(pixels, order), src)


def test_publish_mask_round_trip():
    mask = (np.arange(7 * 9).reshape(7, 9) % 3).astype(np.uint8)
    fields = pixels_to_image_fields(mask, "mono8")
    assert (fields["height"], fields["width"], fields["step"]) == (7, 9, 9)
    assert bytes(fields["data"]) == mask.tobytes()
    pixels, _ = image_to_pixels(**fields)
    np.testing.assert_array_equal(pixels[:, :, 0], mask)
    assert pixels_to_image_fields(mask[:, :, None], "mono8")["step"] == 9


def test_publish_errors(frame):
    with pytest.raises(InputError, match="H x W x 3"):
        pixels_to_image_fields(frame[:, :, 0], "rgb8")
    with pytest.raises(InputError, match="H x W array"):
        pixels_to_image_fields(frame, "mono8")
    with pytest.raises(InputError, match="uint8"):
        pixels_to_image_fields(frame.astype(np.float32), "rgb8")
    with pytest.raises(InputError, match="cannot publish encoding"):
        pixels_to_image_fields(frame, "yuv422")
    with pytest.raises(InputError, match="zero-size"):
        pixels_to_image_fields(frame[:0], "rgb8")


# -- size limits and corrupt data (issue: bounded decoding, nothing printed by codec libraries) --------

@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tiff"])
def test_header_dimensions_match_the_decoded_image(ext, frames_bgr):
    from perception_edge.core.image_header import dimensions, sniff

    img = frames_bgr[0][:333, :517]
    data = cv2.imencode(ext, img)[1].tobytes()
    assert sniff(data) == {".jpg": "jpeg", ".tiff": "tiff"}.get(ext, ext[1:])
    assert dimensions(data) == (517, 333)
    pixels, order = compressed_to_pixels("", data)
    assert pixels.shape == (333, 517, 3) and order == "bgr"


def test_declared_size_is_checked_before_decoding(capfd):
    # 183 kB of PNG that decodes to 8000 x 8000 x 3 = 192 MB: refused from its header
    big = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1].tobytes()
    assert len(big) < 300_000
    with pytest.raises(InputError, match=r"8000 x 8000 = 64000000 pixels exceeds the limit of 16777216"):
        compressed_to_pixels("png", big)
    small = cv2.imencode(".jpg", np.zeros((100, 200, 3), np.uint8))[1].tobytes()
    with pytest.raises(InputError, match="limits.max_image_pixels"):
        compressed_to_pixels("jpeg", small, max_pixels=200 * 100 - 1)
    assert compressed_to_pixels("jpeg", small, max_pixels=200 * 100)[0].shape == (100, 200, 3)
    with pytest.raises(InputError, match="exceeds the limit"):  # raw images too, before any conversion
        image_to_pixels(8000, 8000, "mono8", 8000, 0, b"")
    assert capfd.readouterr().err == ""


def corruptions(data: bytes):
    rng = np.random.default_rng(1)
    yield data[: len(data) // 2]  # truncated
    for _ in range(20):
        b = bytearray(data)
        i = int(rng.integers(0, len(b)))
        b[i] ^= int(rng.integers(1, 256))
        yield bytes(b)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_corrupt_images_fail_with_a_message_and_print_nothing(ext, frames_bgr, capfd):
    data = cv2.imencode(ext, frames_bgr[0][:64, :96])[1].tobytes()
    refused = 0
    for bad in corruptions(data):
        try:
            pixels, _ = compressed_to_pixels("", bad)
            assert pixels.shape == (64, 96, 3)  # a flipped bit in JPEG entropy data still decodes
        except InputError as e:
            refused += 1
            assert str(e)
    assert refused >= (21 if ext == ".png" else 1)  # every corrupt PNG is caught by its CRCs
    assert capfd.readouterr().err == ""  # libpng / libjpeg printed nothing
