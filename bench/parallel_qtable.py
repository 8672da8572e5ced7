"""qtable on EfficientNet-Lite0 (its real weights): the sensitivity ranking and the search
for a cosine target, on 1 process x 2 threads vs 2 processes x 1 thread vs Ray (local, 2
workers), side by side.

    python bench/parallel_qtable.py --markdown bench/results/parallel_qtable.md
    python bench/parallel_qtable.py --samples 4 --repeats 1 --no-ray       # a quick look

The model and ``--samples`` DEV photo crops are made in a process of their own
(bench/parallel_calibration.py ``prepare``), then a minmax table of them. Per
configuration ``lowbit.qtable`` runs twice, interleaved with the others, ``--repeats``
times: without a target (the ranking alone) and with ``--target`` (the ranking, then the
search for the fewest float ops, checked by running the mixed model in this process).
Every ranking must list the ops in the same order and every search choose the same ops
(checked here). Reported: median wall time of each and its ratio to 1 process x 2
threads (the stage's default before workers existed), the CPU seconds of this process
and its pool workers, and the state of the machine (cores, load average at the start).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import lowbit
from lowbit.parallel.plan import cores
from parallel import BASELINE, available_configs
from parallel_calibration import prepare
from provenance import emit, header

LOAD_AT_START = os.getloadavg()[0]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="DEV crops ranked on")
    parser.add_argument("--target", default="cos=0.999", help="the search's target")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    parser.add_argument("--markdown", type=Path, help="write the markdown here too")
    args = parser.parse_args()
    configs = available_configs(args.no_ray)
    with tempfile.TemporaryDirectory(prefix="bench_parallel_qtable_") as tmp:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            model, data, _ = pool.apply(prepare, ("efficientnet_lite0", args.samples, tmp))
        table = Path(tmp) / "lite0.calib"
        lowbit.calibrate(model, data, method="minmax", check_samples=0, output=table,
                         progress=False)
        times: dict[str, dict[str, list[float]]] = {"ranking": {}, "search": {}}
        cpu: dict[str, dict[str, list[float]]] = {"ranking": {}, "search": {}}
        first: dict[str, object] = {}
        ops = chosen = 0
        for _ in range(args.repeats):
            for name, options in configs.items():
                for part, target in (("ranking", None), ("search", args.target)):
                    started, used = time.perf_counter(), cpu_seconds()
                    result = lowbit.qtable(model, data, calibration_table=table,
                                           output=Path(tmp) / f"{part}.qtable",
                                           target=target, **options)  # type: ignore[arg-type]
                    times[part].setdefault(name, []).append(time.perf_counter() - started)
                    cpu[part].setdefault(name, []).append(cpu_seconds() - used)
                    assert result.sensitivity is not None
                    seen = ([row.name for row in result.sensitivity.rows],
                            sorted(result.qtable.precisions))
                    if part not in first:
                        first[part] = seen
                    elif seen != first[part]:
                        raise SystemExit(f"{name} / {part}: the result differs from the "
                                         "first run's")
                    ops, chosen = len(seen[0]), len(seen[1]) if target else chosen
                    print(f"{name} / {part}: {times[part][name][-1]:.1f} s", flush=True)

    lines = [header(), "",
             (f"`lowbit.qtable` on EfficientNet-Lite0 (ImageNet weights, through "
              f"`lowbit.transform`), {args.samples} DEV photo crops, a minmax table of them; "
              f"{ops} candidate ops. Ranking: without a target. Search: `--target "
              f"{args.target}`, the ranking and then the search, which kept {chosen} op(s) "
              f"float in every run. Median of {args.repeats} interleaved repeats on a "
              f"{cores()}-core machine (load average {LOAD_AT_START:.1f} when the run began). "
              "Every ranking listed the ops in the same order and every search chose the "
              "same ops. CPU s: this process and its pool workers (Ray's workers are not "
              "counted).")]
    for part in ("ranking", "search"):
        base = statistics.median(times[part][BASELINE])
        lines += ["", f"### {part}", "",
                  "| configuration | median s | vs 1 process x 2 threads | CPU s (median) |",
                  "|---|---|---|---|"]
        for name, options in configs.items():
            median = statistics.median(times[part][name])
            used = "-" if "cluster" in options else f"{statistics.median(cpu[part][name]):.1f}"
            lines.append(f"| {name} | {median:.2f} | {base / median:.2f}x | {used} |")
    emit(lines, args.markdown)


if __name__ == "__main__":
    main()
