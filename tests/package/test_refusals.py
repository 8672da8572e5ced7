"""Bad bundles: lowbit-run refuses each with one line and exit 2, and writes nothing."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lowbit_run import bundle as fmt
from lowbit_run.cli import main
from tests.package_work import Work


def _rewrite(source: Path, target: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the bundle with its members changed (the zip itself stays well-formed)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def _manifest(change: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def apply(members: dict[str, bytes]) -> None:
        manifest = json.loads(members[fmt.MANIFEST])
        change(manifest)
        members[fmt.MANIFEST] = json.dumps(manifest).encode()
    return apply


def _flip(members: dict[str, bytes]) -> None:
    data = bytearray(members["model.ort"])
    data[len(data) // 2] ^= 0x01
    members["model.ort"] = bytes(data)


def _flip_in_file(source: Path, target: Path) -> Path:
    """One bit of the stored model flipped in the file itself (no zip rewrite)."""
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("model.ort")
    data = bytearray(source.read_bytes())
    data[info.header_offset + 200] ^= 0x10  # past the local header, inside the model
    target.write_bytes(bytes(data))
    return target


CASES: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "bit flipped on disk": (_flip_in_file, "model.ort does not match its SHA-256"),
    "tampered model": (lambda s, t: _rewrite(s, t, _flip), "does not match its SHA-256"),
    "tampered report": (lambda s, t: _rewrite(s, t, lambda m: m.update(
        {"report.json": m["report.json"].replace(b'"INT8"', b'"F32" ')})),
        "report.json does not match its SHA-256"),
    "resized member": (lambda s, t: _rewrite(s, t, lambda m: m.update(
        {"labels.txt": m["labels.txt"] + b"x\n"})), "its manifest says"),
    "truncated": (lambda s, t: t.write_bytes(s.read_bytes()[:s.stat().st_size // 2]) and t,
                  "truncated or damaged"),
    "missing member": (lambda s, t: _rewrite(s, t, lambda m: m.pop("meta.json")),
                       "lacks meta.json, which its manifest lists"),
    "unlisted member": (lambda s, t: _rewrite(s, t, lambda m: m.update({"run.sh": b"rm"})),
                        "run.sh, which its manifest does not list"),
    "newer version": (lambda s, t: _rewrite(s, t, _manifest(
        lambda m: m.update(format="lowbit bundle v2"))), "version 2, newer than"),
    "no manifest": (lambda s, t: _rewrite(s, t, lambda m: m.pop(fmt.MANIFEST)),
                    "has no manifest.json"),
    "not a zip": (lambda s, t: t.write_bytes(b"ORTM" * 100) and t, "not a readable"),
    "no model entry": (lambda s, t: _rewrite(s, t, _manifest(lambda m: m.pop("model"))),
                       "does not say how its model was converted"),
    "missing file": (lambda s, t: t, "bundle not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_bundle_is_one_line_and_exit_2(work: Work, tmp_path, capsys, case) -> None:
    make, needle = CASES[case]
    bad = make(work.int8_bundle, tmp_path / "bad.lowbit")
    out = tmp_path / "y.npz"
    assert main([str(bad), "--input", str(work.x), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lowbit-run: error: "), captured.err
    assert needle in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists() and list(tmp_path.iterdir()) in ([bad], [])


@pytest.mark.parametrize(("args", "needle"), [
    (["--input", "{x}", "--output", "{bundle}"], "is the bundle"),
    (["--input", "{root}/nothing.png"], "input not found"),
    (["--input", "{bundle}"], "expected an image file"),
    (["--input", "{x}", "--top", "-1"], "--top must be 0 or more"),
    (["--input", "{x}", "--threads", "0"], "--threads must be 1 or more"),
    (["--input", "{image}", "--nope"], "unrecognized arguments"),
])
def test_usage_mistakes_are_one_line_and_exit_2(work: Work, capsys, args, needle) -> None:
    values = {"x": work.x, "bundle": work.int8_bundle, "root": work.root, "image": work.image}
    before = work.int8_bundle.read_bytes()
    assert _exit_code([str(work.int8_bundle), *(a.format(**values) for a in args)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert work.int8_bundle.read_bytes() == before


def test_an_npz_that_does_not_fit_the_model(work: Work, tmp_path, capsys) -> None:
    import numpy as np

    np.savez(tmp_path / "wrong.npz", input=np.zeros((2, 3, 8, 8), np.float32))
    np.savez(tmp_path / "other.npz", image=np.zeros((2, 3, 16, 16), np.float32))
    for name, needle in (("wrong.npz", "expects ['N', 3, 16, 16] per sample"),
                         ("other.npz", "lacks input(s) input")):
        assert main([str(work.int8_bundle), "--input", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1



def _exit_code(argv: list[str]) -> int:
    """main's return, or the code of the SystemExit argparse raises for a bad option."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
