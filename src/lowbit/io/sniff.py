"""Cheap looks at a file for the detectors: leading bytes, zip entries, protobuf fields.

    head(path, 8)                      # b"\\x89HDF\\r\\n\\x1a\\n"
    zip_entries(path)                  # {"config.json", "model.weights.h5", ...} or None
    fields = protobuf_fields(path)     # ProtobufFields(fields=((1, 0), (2, 2), ...), ...)

Nothing here imports a framework or reads a whole file: a protobuf is walked field
by field, seeking over payloads, so looking at a 3 GB model costs a few reads.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def head(path: Path, size: int) -> bytes:
    if not path.is_file():
        return b""
    with path.open("rb") as f:
        return f.read(size)


def zip_entries(path: Path) -> frozenset[str] | None:
    """The member names of a zip file, or None when it is not one."""
    if not path.is_file() or head(path, 4) != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return frozenset(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return None


@dataclass(frozen=True)
class ProtobufFields:
    """Top-level (field number, wire type) pairs in file order, and whether the walk
    stopped early: at a payload running past the end (``truncated``) or at bytes that
    are no protobuf at all (``invalid``)."""

    fields: tuple[tuple[int, int], ...]
    truncated: bool = False
    invalid: bool = False
    first_varint: int | None = None


def protobuf_fields(path: Path, max_fields: int = 64) -> ProtobufFields:
    if not path.is_file():
        return ProtobufFields((), invalid=True)
    size = path.stat().st_size
    found: list[tuple[int, int]] = []
    first_varint: int | None = None
    with path.open("rb") as f:
        while f.tell() < size and len(found) < max_fields:
            tag = _varint(f)
            if tag is None:
                return ProtobufFields(tuple(found), truncated=True, first_varint=first_varint)
            number, wire = tag >> 3, tag & 7
            if number == 0 or wire not in (VARINT, I64, LEN, I32):
                return ProtobufFields(tuple(found), invalid=True, first_varint=first_varint)
            found.append((number, wire))
            if wire == VARINT:
                value = _varint(f)
                if value is None:
                    return ProtobufFields(tuple(found), truncated=True, first_varint=first_varint)
                if first_varint is None:
                    first_varint = value
                continue
            length = {I64: 8, I32: 4}.get(wire)
            if length is None:
                length = _varint(f)
                if length is None:
                    return ProtobufFields(tuple(found), truncated=True, first_varint=first_varint)
            if f.tell() + length > size:
                return ProtobufFields(tuple(found), truncated=True, first_varint=first_varint)
            f.seek(length, 1)
    return ProtobufFields(tuple(found), first_varint=first_varint)


def _varint(f: BinaryIO) -> int | None:
    value, shift = 0, 0
    while shift < 70:
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    return None
