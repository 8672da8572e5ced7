"""The lowbit bundle: one zip file that ``lowbit package`` writes and ``lowbit-run`` reads.

    data = bundle_bytes({"model.ort": ort, "meta.json": meta, "report.json": report},
                        ModelEntry(target_platform="amd64", optimization_style="runtime",
                                   onnxruntime="1.32.0"), created={"lowbit": "0.1.0"})
    bundle = read_bundle("model.lowbit")     # the format version and every checksum checked
    session = open_session(bundle)           # ONNX Runtime, CPU, the options the bundle needs
    bundle.meta["inputs"], bundle.report["precision"], bundle.labels

Members (names fixed; ``manifest.json`` first):

- ``manifest.json``: ``{"format": "lowbit bundle v1", "created": {...}, "model": {"member":
  "model.ort", "target_platform": "amd64", "optimization_style": "runtime", "onnxruntime":
  "1.32.0"}, "members": {NAME: {"bytes": N, "sha256": HEX}, ...}}`` — every other member,
  with its size and SHA-256;
- ``model.ort``: the model in ONNX Runtime's ORT format. Style ``runtime``: basic graph
  optimizations applied, the rest (the QDQ fusions into integer kernels) saved in the file
  and replayed when a session is created; style ``fixed``: every optimization applied for
  the CPU that packaged it (``probe.ort`` and ``probe.npz`` then check that this CPU
  lays out NCHWc blocks the same way);
- ``meta.json``: the lowbit model meta (``lowbit model meta v1``: inputs, outputs, shapes,
  the image preprocessing);
- ``report.json``: the precision, how the model was converted and its validation;
- ``labels.txt`` (optional): one class name per line.

A bundle that is not a zip, is truncated, lacks a member, holds one its manifest does
not list, fails a checksum, or has a newer format version raises :class:`BundleError`,
whose message is one line. Only numpy, onnxruntime and the standard library are used.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1
FORMAT = f"lowbit bundle v{VERSION}"
SUFFIX = ".lowbit"
MANIFEST = "manifest.json"
MODEL = "model.ort"
META = "meta.json"
REPORT = "report.json"
LABELS = "labels.txt"
PROBE_MODEL = "probe.ort"
PROBE_DATA = "probe.npz"
REQUIRED = (MODEL, META, REPORT)
TARGET_PLATFORMS = ("amd64", "arm", "host")
OPTIMIZATION_STYLES = ("runtime", "fixed")
_FORMAT_RE = re.compile(r"^lowbit bundle v(\d+)$")
_BINARY = (".ort", ".npz")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local file header
# Zip entries get a fixed time, so the same members always give the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


class BundleError(Exception):
    """A bundle that cannot be used as it is; the message is one line naming the file."""


@dataclass(frozen=True)
class ModelEntry:
    """How the bundled model was converted, which decides how a session is created."""

    target_platform: str
    optimization_style: str  # "runtime" (saved runtime optimizations) or "fixed"
    onnxruntime: str  # the version that converted it
    member: str = MODEL

    def __post_init__(self) -> None:
        if self.target_platform not in TARGET_PLATFORMS:
            raise BundleError(f"target platform must be one of {', '.join(TARGET_PLATFORMS)}, "
                              f"got {self.target_platform!r}")
        if self.optimization_style not in OPTIMIZATION_STYLES:
            raise BundleError(f"optimization style must be one of "
                              f"{', '.join(OPTIMIZATION_STYLES)}, got {self.optimization_style!r}")


@dataclass(frozen=True)
class Bundle:
    """A bundle read and checked: its manifest and the bytes of every member."""

    path: Path
    model: ModelEntry
    members: Mapping[str, bytes]
    created: Mapping[str, str]

    @property
    def model_bytes(self) -> bytes:
        return self.members[self.model.member]

    @property
    def meta(self) -> dict[str, Any]:
        return _json_member(self, META)

    @property
    def report(self) -> dict[str, Any]:
        return _json_member(self, REPORT)

    @property
    def labels(self) -> tuple[str, ...] | None:
        data = self.members.get(LABELS)
        if data is None:
            return None
        return tuple(line.strip() for line in data.decode("utf-8").splitlines())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_bytes(members: Mapping[str, bytes], model: ModelEntry, *,
                 created: Mapping[str, str]) -> bytes:
    """The zip file of ``members`` behind a manifest of their sizes and checksums."""
    missing = [name for name in (*REQUIRED, model.member) if name not in members]
    if missing or MANIFEST in members:
        raise BundleError(f"a bundle needs members {', '.join(REQUIRED)} and no "
                          f"{MANIFEST} of its own; missing {', '.join(missing) or 'none'}")
    manifest = {
        "format": FORMAT,
        "created": dict(created),
        "model": {"member": model.member, "target_platform": model.target_platform,
                  "optimization_style": model.optimization_style,
                  "onnxruntime": model.onnxruntime},
        "members": {name: {"bytes": len(data), "sha256": sha256(data)}
                    for name, data in sorted(members.items())},
    }
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        _add(archive, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        for name, data in sorted(members.items()):
            _add(archive, name, data)
    return stream.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED if name.endswith(_BINARY) else \
        zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def read_bundle(path: str | Path) -> Bundle:
    """Read ``path`` and check it whole: BundleError (one line) for anything wrong."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if MANIFEST not in names:
                raise BundleError(f"{path} has no {MANIFEST}: it is not a lowbit bundle")
            manifest = _manifest(path, archive.read(MANIFEST))
            listed: dict[str, Any] = manifest["members"]
            extra = sorted(set(names) - set(listed) - {MANIFEST})
            if extra or len(names) != len(set(names)):
                raise BundleError(f"{path} holds {', '.join(extra) or 'a member twice'}, "
                                  f"which its manifest does not list: refusing an altered "
                                  f"bundle")
            members = {name: _member(path, archive, name, entry)
                       for name, entry in listed.items()}
    except FileNotFoundError:
        raise BundleError(f"bundle not found: {path}") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a folder, not a bundle file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as err:
        # A truncated zip has no central directory; a damaged member fails its CRC.
        raise BundleError(f"{path} is not a readable lowbit bundle (truncated or damaged: "
                          f"{_first_line(err)})") from None
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err.strerror or err}") from None
    model = _model_entry(path, manifest)
    missing = [name for name in (*REQUIRED, model.member) if name not in members]
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)}: a bundle needs "
                          f"{', '.join(REQUIRED)}")
    created = manifest.get("created")
    return Bundle(path, model, members,
                  {str(k): str(v) for k, v in created.items()} if isinstance(created, dict)
                  else {})


def _manifest(path: Path, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: {MANIFEST} is not readable JSON "
                          f"({_first_line(err)})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    match = _FORMAT_RE.match(found) if isinstance(found, str) else None
    if match is None:
        raise BundleError(f"{path} is not a lowbit bundle: its manifest's format should be "
                          f"'{FORMAT}', found {found!r}")
    version = int(match.group(1))
    if version > VERSION:
        raise BundleError(f"{path} is a lowbit bundle of version {version}, newer than this "
                          f"lowbit-run reads (version {VERSION}): upgrade lowbit-run "
                          f"(pip install -U lowbit)")
    if version < 1:
        raise BundleError(f"{path} has an unknown bundle version {version}")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("bytes"), int)
            and isinstance(v.get("sha256"), str) for v in members.values()):
        raise BundleError(f"{path}: {MANIFEST} lists no members with sizes and checksums")
    return manifest


def _member(path: Path, archive: zipfile.ZipFile, name: str, entry: Mapping[str, Any]) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise BundleError(f"{path} lacks {name}, which its manifest lists: the bundle is "
                          f"incomplete") from None
    if info.file_size != entry["bytes"]:
        raise BundleError(f"{path}: {name} has {info.file_size} bytes, its manifest says "
                          f"{entry['bytes']}: refusing a damaged or altered bundle")
    # A stored member (the model) is read straight from the file: its SHA-256 below checks
    # it, so zipfile's CRC-32 pass over it again would only add time.
    data = _stored(path, info) if info.compress_type == zipfile.ZIP_STORED else \
        archive.read(info)
    if sha256(data) != entry["sha256"]:
        raise BundleError(f"{path}: {name} does not match its SHA-256 in the manifest: "
                          f"refusing a damaged or altered bundle")
    return data


def _stored(path: Path, info: zipfile.ZipInfo) -> bytes:
    """The bytes of an uncompressed member, after its local header."""
    with path.open("rb") as stream:
        stream.seek(info.header_offset)
        header = stream.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        stream.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        data = stream.read(info.compress_size)
    if len(data) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename} is cut short")
    return data


def _model_entry(path: Path, manifest: Mapping[str, Any]) -> ModelEntry:
    model = manifest.get("model")
    try:
        if not isinstance(model, dict):
            raise BundleError("no model entry")
        return ModelEntry(str(model["target_platform"]), str(model["optimization_style"]),
                          str(model["onnxruntime"]), str(model.get("member", MODEL)))
    except (KeyError, BundleError) as err:
        raise BundleError(f"{path}: {MANIFEST} does not say how its model was converted "
                          f"({_first_line(err)})") from None


def _json_member(bundle: Bundle, name: str) -> dict[str, Any]:
    try:
        value = json.loads(bundle.members[name].decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{bundle.path}: {name} is not readable JSON "
                          f"({_first_line(err)})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{bundle.path}: {name} is not a JSON object")
    return value


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
