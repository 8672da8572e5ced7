"""Write files so a reader never sees half of one: a temporary file beside the target,
renamed over it only when complete.

    with atomic_path("out/model.calib") as tmp:
        tmp.write_text(text)            # or any writer that takes a path
    write_text_atomic("out/report.md", text)

Files get the usual permissions (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lowbit.errors import UsageError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # a file where a folder should be, a read-only or virtual folder
        raise UsageError(f"cannot write {path}: {err.strerror or err} "
                         f"({err.filename or path.parent})") from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
