"""A valid RGB PNG (zlib + struct) at the requested size, enough to stand for a sample image.

Rows are built with bytearray slice assignment, so a 1024x1024 image takes milliseconds.
"""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """An RGB gradient image; ``seed`` shifts the colours so images differ."""
    width, height = max(1, width), max(1, height)
    red = bytes((x * 255 // width + seed * 37) % 256 for x in range(width))
    blue = bytes([(seed * 53) % 256]) * width
    raw = bytearray()
    row = bytearray(3 * width)
    row[0::3] = red
    row[2::3] = blue
    for y in range(height):
        row[1::3] = bytes([(y * 255 // height + seed * 91) % 256]) * width
        raw += b"\x00"
        raw += row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _chunk(b"IEND", b"")
    )
