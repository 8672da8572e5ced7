"""Run one fuzz case through the `lowbit` command and check what every run must keep.

    template = build_template(folder)              # once: a model, its stages' files, data
    with Case(template) as case:                   # a fresh copy: in/ (inputs), out/
        outcome = case.run(["calibrate", case.inp("model.f32.onnx"), ...])
        case.check(outcome)                        # the properties below, or AssertionError

Properties of every run, whatever the arguments and files:

- the exit code is 0, 1 or 2 (done; done but a gate failed; bad input or usage);
- no traceback: lowbit's errors are one line, any other exception fails the case;
- no input file changed (SHA-256 of every file under in/ before and after);
- no file written outside the outputs: new files lie under out/, or at, beside (the
  meta file and reference arrays transform writes next to -o) or inside a path the
  arguments give to an output option;
- peak resident memory under RSS_CAP, and the run under SECONDS_CAP.

Runs are in-process (lowbit.cli.main.main), one at a time, in the case's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import onnx
from PIL import Image

from lowbit import api
from lowbit.cli.main import main
from lowbit.data import ImageOptions
from tests.models import small_resnet

RSS_CAP = 3 << 30          # bytes resident at the peak of one run, the test process included
SECONDS_CAP = 90.0         # one run
OUTPUT_DESTS = ("output", "csv", "plot", "dump", "reference_output", "reference_input",
                "workdir")
BESIDE_OUTPUT = ("meta.json", "ref_inputs.npz", "ref_outputs.npz")

#: what the suite tried, by kind and exit code (printed at the end of the session)
TRIED: Counter[str] = Counter()


def build_template(folder: Path) -> Path:
    """in/ with a tiny float model and every stage's file: the source model, the float
    model with its meta file (1/255 scale) and reference arrays, a calibration table, an
    INT8 model, a qtable, a recipe, data with labels, an image, class names."""
    inp = folder / "in"
    inp.mkdir(parents=True)
    onnx.save(small_resnet(batch="N"), inp / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(inp / "x.npz", input=rng.uniform(0, 1, (6, 3, 16, 16)).astype(np.float32),
             label=rng.integers(0, 10, 6))
    api.transform(inp / "model.onnx", inp / "model.f32.onnx", test_input=inp / "x.npz",
                  image_options=ImageOptions(scale=(1 / 255,)))
    api.calibrate(inp / "model.f32.onnx", inp / "x.npz", output=inp / "model.calib", num=4,
                  check_samples=0, progress=False)
    api.deploy(inp / "model.f32.onnx", output=inp / "model.int8.onnx",
               calibration_table=inp / "model.calib")
    (inp / "model.qtable").write_text("# lowbit qtable v1\nfc F32\n")
    (inp / "recipe.toml").write_text('precision = "INT8"\n\n[int8]\nactivation = "uint8"\n')
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(inp / "cat.png")
    (inp / "classes.txt").write_text("".join(f"class{i}\n" for i in range(10)))
    return folder


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int
    text: str
    seconds: float
    peak_rss: int | None
    error: BaseException | None  # an exception lowbit let through (a traceback)


class Case:
    """A fresh copy of the template for one run (a context manager that removes it)."""

    def __init__(self, template: Path) -> None:
        self.template = template
        self.root = Path(tempfile.mkdtemp(prefix="lowbit-fuzz-"))

    def __enter__(self) -> Self:
        shutil.copytree(self.template / "in", self.root / "in", symlinks=True)
        (self.root / "out").mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def inp(self, name: str) -> str:
        return str(self.root / "in" / name)

    def out(self, name: str) -> str:
        return str(self.root / "out" / name)

    def run(self, argv: Sequence[str], kind: str) -> Outcome:
        """Run ``lowbit argv`` here; the properties are checked by :meth:`check`."""
        self._before = _digests(self.root / "in")
        self._files_before = _files(self.root)
        argv = tuple(str(a) for a in argv)
        stdout, stderr = io.StringIO(), io.StringIO()
        error: BaseException | None = None
        cwd = os.getcwd()
        _reset_peak_rss()
        start = time.perf_counter()
        try:
            os.chdir(self.root)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(list(argv))
        except SystemExit as exit_:  # argparse: usage errors and --help
            code = exit_.code if isinstance(exit_.code, int) else 2
        except Exception as err:  # noqa: BLE001 - any other exception is a finding
            code, error = -1, err
        finally:
            os.chdir(cwd)
        seconds = time.perf_counter() - start
        TRIED[kind] += 1
        TRIED[f"{kind} exit {code}"] += 1
        return Outcome(argv, code, stdout.getvalue() + stderr.getvalue(), seconds,
                       _peak_rss(), error)

    def check(self, outcome: Outcome) -> None:
        where = f"lowbit {' '.join(_short(a) for a in outcome.argv)}"
        if outcome.error is not None:
            raise AssertionError(f"{where} raised {type(outcome.error).__name__}: "
                                 f"{_short(str(outcome.error), 300)}") from outcome.error
        assert outcome.code in (0, 1, 2), f"{where} exited {outcome.code}:\n{outcome.text}"
        assert "Traceback (most recent call last)" not in outcome.text, outcome.text
        if outcome.code == 2:
            errors = [line for line in outcome.text.splitlines() if "error:" in line]
            assert len(errors) == 1, f"{where}: not one error line:\n{outcome.text}"
        now = _digests(self.root / "in")
        changed = [name for name in sorted(set(self._before) | set(now))
                   if self._before.get(name) != now.get(name)]
        touched = [name for name in changed if not self._may_write(self.root / "in" / name,
                                                                 outcome.argv)]
        assert not touched, f"{where} changed or removed inputs {touched}"
        written = _files(self.root) - self._files_before
        stray = sorted(str(p.relative_to(self.root)) for p in written
                       if not self._allowed(p, outcome.argv))
        assert not stray, f"{where} wrote outside its outputs: {stray}"
        assert outcome.seconds < SECONDS_CAP, f"{where} took {outcome.seconds:.0f} s"
        if outcome.peak_rss is not None:
            assert outcome.peak_rss < RSS_CAP, \
                f"{where} peaked at {outcome.peak_rss / 2**20:.0f} MiB resident"

    def _may_write(self, path: Path, argv: Sequence[str]) -> bool:
        """A file the run may change: one its outputs name, never one it reads."""
        read = {self._absolute(v) for v in argv if v not in set(_output_values(argv))}
        return path not in read and self._allowed(path, argv)

    def _absolute(self, value: str) -> Path:
        return Path(value) if os.path.isabs(value) else self.root / value

    def _allowed(self, path: Path, argv: Sequence[str]) -> bool:
        if _inside(path, self.root / "out"):
            return True
        for value in _output_values(argv):
            target = self._absolute(value)
            if path == target or _inside(path, target):
                return True
            if path.parent == target.parent and path.name.endswith(BESIDE_OUTPUT):
                return True
        return False


def _output_values(argv: Sequence[str]) -> Iterator[str]:
    """Values given to output options (any spelling: -o, --output, --csv, ...)."""
    flags = {"-o", *(f"--{d.replace('_', '-')}" for d in OUTPUT_DESTS)}
    for flag, value in itertools.pairwise(argv):
        if flag in flags:
            yield value
    for token in argv:
        if token.startswith("--") and "=" in token and token.split("=", 1)[0] in flags:
            yield token.split("=", 1)[1]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _digests(folder: Path) -> dict[str, str]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS


def _peak_rss() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


def _short(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most - 20] + f"...({len(text)} chars)"
