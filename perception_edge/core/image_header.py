"""Image sizes read from compressed headers before anything is decoded, and PNG integrity.

A compressed image a few kB long can declare gigapixels; its size must be known before a decoder
allocates for it. JPEG (SOFn marker), PNG (IHDR), BMP, WebP (VP8 / VP8L / VP8X) and TIFF (first IFD)
headers are read here in microseconds. `check_png` walks the PNG chunks and verifies their CRCs (zlib,
in C), so that truncated or corrupted PNGs are refused with a message instead of reaching libpng,
which prints its own errors on stderr.
"""
from __future__ import annotations

import struct
import zlib

from perception_edge.core.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> str:
    """The codec a byte string starts like: jpeg, png, bmp, webp, tiff, or ""."""
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return ""


def dimensions(data: bytes, codec: str | None = None) -> tuple[int, int]:
    """(width, height) declared by the header. Raises InputError when it cannot be read."""
    codec = codec or sniff(data)
    reader = _READERS.get(codec)
    if reader is None:
        raise InputError("not a JPEG, PNG, BMP, WebP or TIFF image (unrecognized header)")
    try:
        w, h = reader(data)
    except (struct.error, IndexError, ValueError):
        w, h = 0, 0
    if w <= 0 or h <= 0:
        raise InputError(f"{codec} header declares no valid size (truncated or corrupt)")
    return w, h


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ValueError("expected a marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack_from(">H", data, i + 2)[0]
        if marker in _SOF:
            h, w = struct.unpack_from(">HH", data, i + 5)
            return w, h
        if marker in (0xD9, 0xDA):  # EOI / SOS before any SOF
            break
        i += 2 + length
    return 0, 0


def _png(data: bytes) -> tuple[int, int]:
    if bytes(data[12:16]) != b"IHDR":
        return 0, 0
    return struct.unpack_from(">II", data, 16)


def _bmp(data: bytes) -> tuple[int, int]:
    header_size = struct.unpack_from("<I", data, 14)[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", data, 18)
    else:
        w, h = struct.unpack_from("<ii", data, 18)
    return w, abs(h)  # negative height: top-down rows


def _webp(data: bytes) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        b = data[21:25]
        w = 1 + (b[0] | (b[1] & 0x3F) << 8)
        h = 1 + ((b[1] >> 6) | b[2] << 2 | (b[3] & 0x0F) << 10)
        return w, h
    if chunk == b"VP8X":
        b = data[24:30]
        return 1 + (b[0] | b[1] << 8 | b[2] << 16), 1 + (b[3] | b[4] << 8 | b[5] << 16)
    return 0, 0


def _tiff(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(end + "I", data, 4)[0]
    count = struct.unpack_from(end + "H", data, ifd)[0]
    size = {}
    for k in range(count):
        tag, typ, _n, value = struct.unpack_from(end + "HHI4s", data, ifd + 2 + 12 * k)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = struct.unpack_from(end + ("H" if typ == 3 else "I"), value)[0]
    return size.get(256, 0), size.get(257, 0)


_READERS = {"jpeg": _jpeg, "png": _png, "bmp": _bmp, "webp": _webp, "tiff": _tiff}


def check_png(data: bytes) -> None:
    """Every chunk complete with a matching CRC, IHDR first and IEND last. Raises InputError."""
    n, i = len(data), len(PNG_SIGNATURE)
    view = memoryview(data)
    first = True
    while True:
        if i + 12 > n:
            raise InputError(f"PNG is truncated ({n} bytes, no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, i)
        end = i + 12 + length
        if end > n:
            raise InputError(f"PNG is truncated ({n} bytes; chunk {kind!r} needs {end})")
        if first and kind != b"IHDR":
            raise InputError("PNG does not start with an IHDR chunk")
        first = False
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[i + 4:end - 4]) != crc:
            raise InputError(f"PNG chunk {kind.decode('latin-1')!r} has a bad CRC (corrupt data)")
        if kind == b"IEND":
            return
        i = end
