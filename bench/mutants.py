"""Mutation checks: does the test suite notice when a core algorithm is quietly broken?

    python bench/mutants.py                        # every mutant: killed / survived table
    python bench/mutants.py --markdown bench/results/mutants.md   # the pre-release check
    python bench/mutants.py --only auto-minmax,zero-point
    python bench/mutants.py --list                 # the mutants and the tests each runs
    LOWBIT_MUTANT=zero-point pytest -p mutants tests/quantize/int8   # one by hand (bench/ on
                                                                     # PYTHONPATH)

Each mutant is a small monkeypatch of lowbit (nothing in src/ knows about them) that a
plausible bug would make: the default calibration method behaving as minmax, bias
correction reporting its work but leaving the biases alone, SmoothQuant's α read as
1 − α, paired 8-bit weights falling back to 7 bits, AdaRound keeping nearest rounding,
GPTQ doing plain round-to-nearest, per-channel weights quantized per tensor, and
activations given a zero point one step off. For each, the tests that guard that
algorithm run in a fresh pytest process with this module loaded as a plugin
(``-p mutants``) and LOWBIT_MUTANT naming the mutant; the plugin's ``pytest_configure``
imports every lowbit module and swaps the original function for the mutant everywhere it
is bound (so ``from … import f`` copies change too). A mutant is *killed* when at
least one of its tests fails, *survived* when they all pass. The same tests are first run
unmutated: a mutant only counts as killed against a green baseline.

Every mutant must be killed; this is the pre-release check that says the accuracy
tests can fail (its table goes in BENCHMARKS.md, with the provenance header).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import pkgutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "LOWBIT_MUTANT"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    apply: Callable[[], None]
    tests: tuple[str, ...]


def _import_all_lowbit() -> None:
    import lowbit

    for info in pkgutil.walk_packages(lowbit.__path__, "lowbit."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra (tvm, tensorflow …) that is not installed
            continue


def _swap(module_name: str, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``module_name.name`` by ``make(original)`` in every loaded module that binds
    the original object (the defining module, re-exports and ``from`` imports alike)."""
    _import_all_lowbit()
    original = getattr(importlib.import_module(module_name), name)
    replacement = make(original)
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not namespace or not getattr(module, "__name__", "").startswith(("lowbit", "tests")):
            continue
        for key, value in list(namespace.items()):
            if value is original:
                setattr(module, key, replacement)


# ------------------------------------------------------------------------------ mutants


def _auto_minmax() -> None:
    from lowbit.calibration.observers import AutoObserver

    def search(self: Any, hist: Any, width: float) -> float:
        return float(hist.size * width)  # the observed max: what minmax takes

    AutoObserver._search = search  # type: ignore[method-assign]


def _bias_correction_off() -> None:
    def keep_biases(original: Callable[..., Any]) -> Callable[..., Any]:
        def corrected(model: Any, *args: Any, **kwargs: Any) -> Any:
            _, report = original(model, *args, **kwargs)
            return model, report  # says it corrected, changes nothing

        return corrected

    for name in ("correct_biases", "correct_biases_from_means"):
        _swap("lowbit.quantize.prepare.bias_correction", name, keep_biases)


def _smooth_alpha_flip() -> None:
    def flipped(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda act, w_max, alpha: original(act, w_max, 1.0 - alpha)

    _swap("lowbit.quantize.prepare.smoothquant", "_smoothing_scale", flipped)


def _paired_7bit() -> None:
    def seven_bits(original: Callable[..., Any]) -> Callable[..., Any]:
        def on(grid: str, *args: Any, **kwargs: Any) -> Any:
            return original("reduced" if grid == "paired" else grid, *args, **kwargs)

        return on

    _swap("lowbit.quantize.int8.params", "quantize_weight_on", seven_bits)


def _adaround_nearest() -> None:
    import numpy as np

    from lowbit.quantize.prepare.adaround import Rounding

    def nearest(original: Callable[..., Any]) -> Callable[..., Any]:
        def rounding(matrix: Any, data: Any, scale: Any, qmax: int, *args: Any,
                     **kwargs: Any) -> Any:
            q = np.clip(np.rint(matrix / np.broadcast_to(scale, matrix.shape)), -qmax, qmax)
            return Rounding(q.astype(np.int8), 1.0, 0.5)  # "learned", and it is nearest

        return rounding

    _swap("lowbit.quantize.prepare.adaround", "optimize_rounding", nearest)


def _gptq_rtn() -> None:
    from lowbit.quantize.w4.blockwise import quantize_blocks

    def rtn(original: Callable[..., Any]) -> Callable[..., Any]:
        def quantize(w: Any, hessian: Any, block_size: int, *, symmetric: bool = False,
                     **kwargs: Any) -> Any:
            return quantize_blocks(w, block_size, symmetric=symmetric)

        return quantize

    _swap("lowbit.quantize.w4.gptq", "gptq_quantize", rtn)


def _per_tensor() -> None:
    import numpy as np

    def one_scale(original: Callable[..., Any]) -> Callable[..., Any]:
        def quantize(weight: Any, axis: Any, min_scale: Any = None, **kwargs: Any) -> Any:
            floor = None if min_scale is None else float(np.max(min_scale))
            return original(weight, None, floor, **kwargs)

        return quantize

    _swap("lowbit.quantize.int8.params", "quantize_weight", one_scale)


def _zero_point() -> None:
    def shifted(original: Callable[..., Any]) -> Callable[..., Any]:
        def params(rmin: float, rmax: float, dtype: str, *, symmetric: bool = False) -> Any:
            found = original(rmin, rmax, dtype, symmetric=symmetric)
            if symmetric:
                return found
            return dataclasses.replace(found, zero_point=min(found.zero_point + 1, found.qmax))

        return params

    _swap("lowbit.quantize.int8.params", "activation_params", shifted)


TESTS = "tests/"
MUTANTS = {m.name: m for m in (
    Mutant("auto-minmax", "calibrate's default method auto takes minmax's threshold",
           _auto_minmax, (
               f"{TESTS}calibration/test_auto_models.py",
               f"{TESTS}quantize/prepare/test_auto_check.py",
               f"{TESTS}calibration/test_observers.py",
               f"{TESTS}test_regression_real.py",
           )),
    Mutant("bias-correction-off", "bias correction reports its work but leaves the biases",
           _bias_correction_off, (
               f"{TESTS}quantize/prepare/test_bias_correction.py",
               f"{TESTS}test_regression_real.py",
           )),
    Mutant("smooth-alpha-flip", "SmoothQuant's α is applied as 1 − α", _smooth_alpha_flip, (
        f"{TESTS}quantize/prepare/test_smoothquant.py",
        f"{TESTS}test_bench_paired_weights.py",
        f"{TESTS}test_regression_real.py",
    )),
    Mutant("paired-7bit", "paired 8-bit weights fall back to 7 bits (±63)", _paired_7bit, (
        f"{TESTS}quantize/int8/test_weight_range.py",
        f"{TESTS}runtime/test_isa.py",
    )),
    Mutant("adaround-nearest", "AdaRound keeps round-to-nearest and reports it learned",
           _adaround_nearest, (f"{TESTS}quantize/prepare/test_adaround.py",)),
    Mutant("gptq-rtn", "GPTQ quantizes by plain round-to-nearest (no error feedback)",
           _gptq_rtn, (f"{TESTS}quantize/w4/test_gptq.py",
                       f"{TESTS}quantize/w4/test_weight_only.py")),
    Mutant("per-tensor", "per-channel weights get one scale per tensor", _per_tensor, (
        f"{TESTS}quantize/int8/test_qdq.py",
        f"{TESTS}quantize/int8/test_params.py",
        f"{TESTS}test_regression_real.py",
    )),
    Mutant("zero-point", "uint8 activations get a zero point one step off", _zero_point, (
        f"{TESTS}quantize/int8/test_params.py",
        f"{TESTS}quantize/int8/test_qdq.py",
        f"{TESTS}test_regression_real.py",
    )),
)}


# ------------------------------------------------------------------------- the plugin


def pytest_configure(config: Any) -> None:
    """With ``-p mutants`` and LOWBIT_MUTANT=NAME, apply that mutant before collection."""
    name = os.environ.get(ENV_VAR, "")
    if not name:
        return
    if name not in MUTANTS:
        raise SystemExit(f"{ENV_VAR}={name}: no such mutant; known: {', '.join(MUTANTS)}")
    MUTANTS[name].apply()


def pytest_report_header(config: Any) -> str | None:
    name = os.environ.get(ENV_VAR, "")
    return f"lowbit mutant: {name} ({MUTANTS[name].what})" if name in MUTANTS else None


# ------------------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Outcome:
    mutant: str
    status: str  # "killed", "survived", "error"
    failed: tuple[str, ...]
    seconds: float


def run_tests(tests: tuple[str, ...], mutant: str | None, timeout: float) -> tuple[int, str]:
    """pytest's exit code and output for ``tests`` under ``mutant`` (None: unmutated)."""
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    if mutant is not None:
        env[ENV_VAR] = mutant
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO / "bench"), str(REPO),
                                                      env.get("PYTHONPATH", ""))))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutants",
               "-o", "addopts=", "--tb=no", "-rf", *tests]
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def _failed(output: str) -> tuple[str, ...]:
    return tuple(line.split(" ", 2)[1] for line in output.splitlines()
                 if line.startswith("FAILED "))


def check(names: list[str], timeout: float, log: Callable[[str], None] = print
          ) -> list[Outcome]:
    tests = tuple(dict.fromkeys(t for n in names for t in MUTANTS[n].tests))
    start = time.perf_counter()
    code, output = run_tests(tests, None, timeout)
    if code != 0:
        raise SystemExit(f"the unmutated tests do not pass (exit {code}): fix them first\n"
                         + output[-3000:])
    log(f"baseline: {len(tests)} test files pass unmutated "
        f"({time.perf_counter() - start:.0f} s)")
    outcomes = []
    for name in names:
        start = time.perf_counter()
        code, output = run_tests(MUTANTS[name].tests, name, timeout)
        status = {0: "survived", 1: "killed"}.get(code, "error")
        outcome = Outcome(name, status, _failed(output), time.perf_counter() - start)
        log(f"{name}: {status} ({outcome.seconds:.0f} s)"
            + (f"; exit {code}: {output[-800:]}" if status == "error" else ""))
        outcomes.append(outcome)
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    lines = ["| mutant | what it breaks | result | tests that failed (first 3) | s |",
             "|---|---|---|---|---|"]
    for o in outcomes:
        failed = ", ".join(f"`{t}`" for t in o.failed[:3]) + \
            (f" (+{len(o.failed) - 3})" if len(o.failed) > 3 else "")
        lines.append(f"| {o.mutant} | {MUTANTS[o.mutant].what} | **{o.status}** | "
                     f"{failed or '-'} | {o.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help="comma-separated mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run")
    parser.add_argument("--markdown", type=Path,
                        help="write the section (provenance header first) to this file")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {', '.join(MUTANTS)}")
    if args.list:
        for name in names:
            print(f"{name}: {MUTANTS[name].what}\n  " + "\n  ".join(MUTANTS[name].tests))
        return 0
    sys.path.insert(0, str(REPO / "bench"))
    from provenance import header

    print(header(argv))
    outcomes = check(names, args.timeout)
    text = table(outcomes)
    survived = [o.mutant for o in outcomes if o.status != "killed"]
    summary = (f"{len(outcomes) - len(survived)} of {len(outcomes)} mutants killed"
               + (f"; NOT killed: {', '.join(survived)}" if survived else ""))
    print(f"\n{text}\n\n{summary}")
    if args.markdown:
        tests = sorted({t for n in names for t in MUTANTS[n].tests})
        intro = (f"Each mutant is applied to lowbit in a fresh pytest process (``-p mutants``, "
                 f"LOWBIT_MUTANT=name; nothing in src/ changes) and the tests that guard it "
                 f"run; killed means at least one of them failed. The same {len(tests)} test "
                 "files pass unmutated first. Seconds are wall time on the machine named above, "
                 "shared with other work.")
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{header(argv)}\n\n{intro}\n\n{text}\n\n{summary}\n",
                                 encoding="utf-8")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
