"""What a file is, told from its first bytes, for errors that name the mix-up.

    what_file(Path("cat.jpg"))         # "a JPEG image"
    what_file(Path("calib.npz"))       # "a NumPy .npz archive (a data set)"
    mixed_up(Path("calib.npz"), "an ONNX model")
    # "calib.npz is a NumPy .npz archive (a data set), not an ONNX model"

Only names what it can tell for sure; an unknown file gives None and the caller keeps
its own message.
"""

from __future__ import annotations

from pathlib import Path

from lowbit.io.sniff import head, zip_entries

_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x93NUMPY", "a NumPy .npy array (a data set)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. a Keras .h5 model)"),
    (b"%PDF", "a PDF document"),
)


def what_file(path: Path) -> str | None:
    """A short description of the file at ``path`` when its bytes say what it is."""
    start = head(path, 64)
    for magic, kind in _MAGIC:
        if start.startswith(magic):
            return kind
    if start[:4] == b"RIFF" and start[8:12] == b"WEBP":
        return "a WebP image"
    if start[4:8] == b"TFL3":
        return "a TFLite flatbuffer model (lowbit transform converts it)"
    entries = zip_entries(path)
    if entries is not None:
        if entries and all(name.endswith(".npy") for name in entries):
            return "a NumPy .npz archive (a data set)"
        if "manifest.json" in entries:
            return "a lowbit bundle (lowbit package writes it; lowbit-run runs it)"
        return "a zip archive"
    if start.startswith((b"# lowbit calibration table", b"# lowbit qtable", b"# lowbit recipe")):
        return "a " + start[2:].split(b"\n")[0].decode("ascii", "replace").rsplit(" v", 1)[0]
    return None


def mixed_up(path: Path, expected: str) -> str | None:
    """"PATH is KIND, not EXPECTED" when ``path`` is recognisably something else."""
    kind = what_file(path)
    return None if kind is None else f"{path} is {kind}, not {expected}"
