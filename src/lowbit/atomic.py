"""Write files so a reader never sees half of one and a failure never costs the old one:
a temporary file beside the target, synced to disk, checked, and only then renamed over it.

    with atomic_path("out/model.calib") as tmp:
        tmp.write_text(text)            # or any writer that takes a path
    write_text_atomic("out/report.md", text)
    with atomic_path("out/m.onnx", check=create_session) as tmp:   # raises: old file kept
        onnx.save_model(model, str(tmp))

Until the rename, the file at the target is the previous one: a writer or ``check`` that
raises, Ctrl-C, SIGTERM or SIGHUP removes the temporary file and leaves it untouched.
SIGTERM and SIGHUP raise :class:`Terminated` while a file is written (see
:func:`terminate_cleanly`), so the clean-up runs as it does for KeyboardInterrupt.
Files get the usual permissions (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from lowbit.errors import UsageError

# Signals that end a process unless handled; SIGINT already raises KeyboardInterrupt.
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                    if hasattr(signal, name))


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt (``finally`` blocks and
    context managers run, temporary files go), then exits with 128 + the signal number,
    as a shell reports a process the signal killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # A second signal during the clean-up must not cut the clean-up short.
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated`; the previous
    handlers come back afterwards. A signal someone else handles or ignores (nohup's
    SIGHUP) is left as it is, and so is everything outside the main thread, where
    Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in TERMINATING:
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def atomic_path(path: str | Path, *,
                check: Callable[[Path], object] | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; when the block ends without an
    error, the file is synced, ``check(tmp)`` runs on it (raise to refuse it), and it
    replaces ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name to write")
    with terminate_cleanly():
        tmp = _make_temp(path)
        try:
            try:
                yield tmp
                _sync(tmp)
            except OSError as err:  # a full disk, a quota, a folder gone read-only
                raise UsageError(f"cannot write {path}: {err.strerror or err}") from err
            if check is not None:
                check(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
            _sync_folder(path.parent)
        finally:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, *,
                      check: Callable[[Path], object] | None = None) -> Path:
    with atomic_path(path, check=check) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _make_temp(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # a file where a folder should be, a read-only or virtual folder
        raise UsageError(f"cannot write {path}: {err.strerror or err} "
                         f"({err.filename or path.parent})") from err
    os.close(fd)
    return Path(name)


def _sync(path: Path) -> None:
    """Flush a written file to the disk, so the rename never exposes missing data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a rename; some systems cannot open a folder to sync it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
