"""atomic_path: synced, checked before the rename, and the old file kept on any failure."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lowbit.atomic import Terminated, atomic_path, terminate_cleanly, write_text_atomic
from lowbit.errors import ModelError, UsageError


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_replaces_the_file_after_syncing_it(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    target = tmp_path / "t.txt"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert len(synced) == 2  # the temporary file, then the folder after the rename
    assert _leftovers(tmp_path) == []


def test_a_failing_check_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    seen: list[str] = []

    def refuse(tmp: Path) -> None:
        seen.append(tmp.read_text())
        raise ModelError("ONNX Runtime cannot load it")

    with pytest.raises(ModelError, match="cannot load"):
        write_text_atomic(target, "new", check=refuse)
    assert seen == ["new"]  # the check saw the complete new file
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_passing_check_runs_before_the_rename(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    during: list[str] = []
    write_text_atomic(target, "new", check=lambda tmp: during.append(target.read_text()))
    assert during == ["old"]
    assert target.read_text() == "new"


def test_a_failing_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_write_error_is_one_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(UsageError, match=r"cannot write .*t\.txt: No space left"), \
            atomic_path(target):
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_sigterm_while_writing_unwinds_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(Terminated) as caught, atomic_path(target) as tmp:
        tmp.write_text("half")
        signal.raise_signal(signal.SIGTERM)  # to this thread: handled inside the block
    assert caught.value.code == 143 and caught.value.signal_name == "SIGTERM"
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_handlers_are_restored_and_others_left_alone() -> None:
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with terminate_cleanly():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
