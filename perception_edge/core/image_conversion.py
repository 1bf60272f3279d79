"""sensor_msgs/Image and CompressedImage fields <-> H x W x 3 uint8 pixel arrays, without ROS imports.

Functions take plain message fields so they can be tested without rclpy. Which conversions copy:

* rgb8, bgr8, 8UC3, rgba8, bgra8: no copy, a strided view over the message buffer (step padding
  and alpha skipped by strides). The preprocessor swaps channels while normalizing, so bgr is
  returned as is. An rgba/bgra view has a 4-byte pixel stride: cv2 accepts it as input and makes
  its own contiguous copy, which costs the same as a cvtColor here would.
* mono8, mono16, yuv422 (UYVY), yuv422_yuy2 (YUYV), bayer_*: one cv2.cvtColor into a new array.
  mono16 keeps the high byte (value >> 8), read straight from the buffer without a 16-bit copy.
"""
from __future__ import annotations

import array

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

from perception_edge.core.errors import InputError
from perception_edge.core.image_header import check_png, dimensions, sniff

try:  # libjpeg-turbo, about twice as fast as cv2.imdecode here, and it raises instead of printing
    import simplejpeg
except ImportError:  # pragma: no cover - optional: cv2.imdecode is used then
    simplejpeg = None

RGB, BGR = "rgb", "bgr"

# encoding -> (bytes per pixel, kind). Kinds select the conversion in image_to_pixels.
_ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"),
    "bgr8": (3, "bgr"),
    "8UC3": (3, "bgr"),  # cv_bridge treats untyped 3-channel images as bgr8
    "rgba8": (4, "rgba"),
    "bgra8": (4, "bgra"),
    "mono8": (1, "mono8"),
    "8UC1": (1, "mono8"),
    "mono16": (2, "mono16"),
    "yuv422": (2, "uyvy"),  # ROS "yuv422" is UYVY byte order
    "uyvy": (2, "uyvy"),
    "yuv422_yuy2": (2, "yuyv"),
    "yuyv": (2, "yuyv"),
    "bayer_rggb8": (1, "bayer"),
    "bayer_bggr8": (1, "bayer"),
    "bayer_gbrg8": (1, "bayer"),
    "bayer_grbg8": (1, "bayer"),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)
_BY_LOWER = {name.lower(): name for name in _ENCODINGS}

# OpenCV names a Bayer pattern after the 2x2 block starting at (1, 1), ROS after the one at (0, 0),
# so the letters differ (same mapping as cv_bridge; checked by a mosaic test).
_BAYER_TO_RGB = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

_COMPRESSED_CODECS = ("jpeg", "jpg", "png", "tiff", "tif", "webp", "bmp")
# Largest image accepted (width x height), checked before decoding or converting anything: 4096 x 4096.
DEFAULT_MAX_PIXELS = 1 << 24


def check_size(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if max_pixels > 0 and width * height > max_pixels:
        raise InputError(f"{what} of {width} x {height} = {width * height} pixels exceeds the limit of "
                         f"{max_pixels} pixels (parameter limits.max_image_pixels)")


def _canonical_encoding(encoding) -> str:
    if not isinstance(encoding, str):
        raise InputError(f"image encoding must be a string, got {type(encoding).__name__}")
    name = _BY_LOWER.get(encoding.strip().lower())
    if name is None:
        raise InputError(f"unsupported image encoding {encoding!r}; "
                         f"supported: {', '.join(SUPPORTED_ENCODINGS)}")
    return name


def _byte_buffer(data) -> np.ndarray:
    """Flat uint8 array over data, sharing its memory where the object exposes a buffer."""
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1:
            raise InputError(f"image data must be bytes (uint8), got a {data.dtype} array")
        return data.reshape(-1).view(np.uint8)  # reshape copies only if data is non-contiguous
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:
        if memoryview(data).nbytes == 0:  # some numpy 1.x versions refuse empty buffers
            return np.empty(0, np.uint8)
    except TypeError:
        pass
    # A list of ints, or a non-contiguous buffer: copied.
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"image data must be bytes-like, got {type(data).__name__}") from None


def image_to_pixels(width: int, height: int, encoding: str, step: int, is_bigendian,
                    data, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Fields of a sensor_msgs/Image -> (H x W x 3 uint8 array, "rgb" | "bgr").

    rgb8/bgr8/8UC3/rgba8/bgra8 results are read-only views over data; other encodings return a
    new array. Images larger than max_pixels (0: no limit) are refused.
    """
    name = _canonical_encoding(encoding)
    bpp, kind = _ENCODINGS[name]
    width, height, step = int(width), int(height), int(step)
    if width <= 0 or height <= 0:
        raise InputError(f"zero-size image ({width} x {height}, encoding {name})")
    check_size(width, height, max_pixels)
    row_bytes = width * bpp
    if step < row_bytes:
        raise InputError(f"image step {step} is less than width*bytes_per_pixel = {row_bytes} "
                         f"({width} x {bpp} for {name})")
    if kind in ("uyvy", "yuyv") and width % 2:
        raise InputError(f"{name} image width must be even (two pixels share chroma), got {width}")
    buf = _byte_buffer(data)
    # The last row need not carry its padding; the strided views never read past row_bytes.
    if buf.size < (height - 1) * step + row_bytes:
        raise InputError(f"image data is {buf.size} bytes, expected at least "
                         f"(height - 1) * step + width * bytes_per_pixel = {(height - 1) * step + row_bytes} "
                         f"({height} x {step}, the last row's padding may be left out)")

    if kind in ("rgb", "bgr", "rgba", "bgra"):
        # Read-only: the view aliases the message, which other subscribers may share.
        pixels = as_strided(buf, shape=(height, width, 3), strides=(step, bpp, 1), writeable=False)
        return pixels, (RGB if kind.startswith("rgb") else BGR)
    if kind == "mono8":
        gray = as_strided(buf, shape=(height, width), strides=(step, 1))
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), RGB
    if kind == "mono16":
        # The high byte is the first of each pair when big-endian, the second when little-endian.
        high = buf if is_bigendian else buf[1:]
        gray = as_strided(high, shape=(height, width), strides=(step, 2))
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), RGB
    if kind in ("uyvy", "yuyv"):
        packed = as_strided(buf, shape=(height, width, 2), strides=(step, 2, 1))
        code = cv2.COLOR_YUV2RGB_UYVY if kind == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(packed, code), RGB
    mosaic = as_strided(buf, shape=(height, width), strides=(step, 1))
    return cv2.cvtColor(mosaic, _BAYER_TO_RGB[name]), RGB


def compressed_to_pixels(format: str, data, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:  # noqa: A002
    """Fields of a sensor_msgs/CompressedImage -> (H x W x 3 uint8 array, order).

    format is "jpeg"/"png" or image_transport's "<orig>; <codec> compressed <target>" form. The
    decoded bytes hold <target> order; decoders report them as BGR, which is what
    image_transport writes (bgr8), so the order is "bgr" unless the target says rgb.

    The size the header declares is checked against max_pixels (0: no limit) before decoding, and
    PNG chunks against their CRCs, so a small message cannot decode to gigabytes and corrupt data
    is refused with a message (nothing printed on stderr by the codec libraries).
    """
    if not isinstance(format, str):
        raise InputError(f"compressed image format must be a string, got {type(format).__name__}")
    fmt = format.strip().lower()
    codec, order = fmt, BGR
    if ";" in fmt:
        words = fmt.split(";", 1)[1].split()
        codec = words[0] if words else ""
        if "compressed" in words[1:-1] and words[-1].startswith("rgb"):
            order = RGB
    # Empty format: older publishers leave it blank; imdecode sniffs the codec from the bytes.
    if codec and codec not in _COMPRESSED_CODECS:
        raise InputError(f"unsupported compressed image format {format!r}; supported codecs: "
                         f"{', '.join(_COMPRESSED_CODECS)} (compressedDepth is not supported)")
    buf = _byte_buffer(data)
    label = codec or "compressed"
    if buf.size == 0:
        raise InputError(f"could not decode the {label} image (0 bytes)")
    view = memoryview(buf)
    detected = sniff(view)
    try:
        width, height = dimensions(view, detected)
        if detected == "png":
            check_png(view)
    except InputError as e:
        raise InputError(f"could not decode the {label} image ({buf.size} bytes): {e}") from None
    check_size(width, height, max_pixels, f"{detected} image")
    pixels = None
    if detected == "jpeg" and simplejpeg is not None:
        try:
            pixels = simplejpeg.decode_jpeg(view, colorspace="BGR", strict=True)
        except ValueError as e:
            if "colorspace" not in str(e).lower():  # CMYK/YCCK JPEGs: left to OpenCV below
                raise InputError(f"could not decode the jpeg image ({buf.size} bytes): "
                                 f"{str(e).strip() or 'corrupt data'}") from None
    if pixels is None:
        try:
            pixels = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error:
            pixels = None
    if pixels is None or pixels.size == 0:
        raise InputError(f"could not decode the {label} image ({buf.size} bytes)")
    if pixels.shape[:2] != (height, width):  # the decoder disagreed with the header
        raise InputError(f"{label} image decoded to {pixels.shape[1]} x {pixels.shape[0]}, its header says "
                         f"{width} x {height}")
    return pixels, order


def to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """pixels itself when already RGB, else a new contiguous RGB array."""
    if order == RGB:
        return pixels
    if order != BGR:
        raise InputError(f"channel order must be {RGB!r} or {BGR!r}, got {order!r}")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def pixels_to_image_fields(pixels: np.ndarray, encoding: str) -> dict:
    """Fields for publishing a sensor_msgs/Image: rgb8/bgr8 from an H x W x 3 RGB array, mono8 from H x W.

    data is an array.array('B'): rclpy's message setter stores that type directly, while bytes or
    a memoryview would be checked element by element in Python (seconds for an HD frame).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise InputError(f"pixels must be uint8, got {pixels.dtype}")
    if encoding in ("rgb8", "bgr8"):
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise InputError(f"{encoding} needs an H x W x 3 RGB array, got shape {pixels.shape}")
        if encoding == "bgr8":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        channels = 3
    elif encoding == "mono8":
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        if pixels.ndim != 2:
            raise InputError(f"mono8 needs an H x W array, got shape {pixels.shape}")
        channels = 1
    else:
        raise InputError(f"cannot publish encoding {encoding!r}; supported: rgb8, bgr8, mono8")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise InputError(f"zero-size image ({width} x {height})")
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels).reshape(-1))  # one copy, no per-element loop
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "step": int(width * channels),
        "is_bigendian": 0,
        "data": data,
    }
