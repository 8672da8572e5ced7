"""Where a benchmark's numbers came from: one header every bench script prints first.

    from provenance import header
    print(header())                 # markdown: commit, CPU, ISA flags, versions, date, command
    facts = collect()               # the same as a dict (for --json, or a regenerator)

The header names the commit (with "+ uncommitted changes" where the working tree
differs from it, and which files), the CPU model and the ISA flags that choose lowbit's
paths (VNNI, AMX, BF16 …), any LOWBIT_FORCE_ISA override, the threads, the versions of
ONNX Runtime, OpenVINO, torch, onnx, numpy and lowbit, the date and time, and the exact
command line, so a table in BENCHMARKS.md can be traced to the run that made it and run
again. ``python bench/provenance.py`` prints it alone.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
             "amx_bf16", "avx512_fp16", "asimddp", "i8mm", "bf16")
PACKAGES = ("lowbit", "onnxruntime", "openvino", "torch", "onnx", "numpy", "nncf")


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.rstrip() if done.returncode == 0 else ""


def commit() -> str:
    """'abc1234' or 'abc1234 + uncommitted changes to N files (a, b, …)' (new files count;
    src/, bench/ and tests/ only), or 'unknown'."""
    head = _git("rev-parse", "--short=12", "HEAD")
    if not head:
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "src", "bench",
                                         "tests").splitlines() if line]
    if not changed:
        return head
    shown = ", ".join(changed[:5]) + (", …" if len(changed) > 5 else "")
    return f"{head} + uncommitted changes to {len(changed)} files ({shown})"


def cpu() -> tuple[str, list[str]]:
    """The CPU model name and which of ISA_FLAGS it has (from /proc/cpuinfo on Linux)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    return name, [f for f in ISA_FLAGS if f in flags]


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


def collect(argv: list[str] | None = None) -> dict[str, object]:
    """Every fact of the header, as a dict."""
    model, flags = cpu()
    command = [Path(sys.argv[0]).as_posix() if sys.argv and sys.argv[0] else "python",
               *(sys.argv[1:] if argv is None else argv)]
    try:
        command[0] = Path(command[0]).resolve().relative_to(REPO).as_posix()
    except ValueError:
        pass
    return {
        "commit": commit(),
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": flags,
        "forced_isa": os.environ.get("LOWBIT_FORCE_ISA", ""),
        "versions": versions(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python " + shlex.join(command),
    }


def header(argv: list[str] | None = None) -> str:
    """The provenance as markdown lines, for the top of a bench script's output."""
    facts = collect(argv)
    versions_line = ", ".join(f"{k} {v}" for k, v in facts["versions"].items()  # type: ignore[attr-defined]
                              if v != "not installed")
    lines = [
        f"- command: `{facts['command']}`",
        f"- commit: {facts['commit']}",
        f"- CPU: {facts['cpu']}, {facts['cores']} logical cores; ISA: "
        f"{', '.join(facts['isa']) or 'none of ' + ', '.join(ISA_FLAGS)}"  # type: ignore[arg-type]
        + (f"; LOWBIT_FORCE_ISA={facts['forced_isa']}" if facts["forced_isa"] else ""),
        f"- versions: {versions_line}",
        f"- date: {facts['date']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(header())


def emit(lines: list[str], markdown: Path | None) -> None:
    """A bench script's section: printed, and written to ``markdown`` where given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)
