"""Where the time goes: ONNX Runtime's per-op profile of the graph it really runs.

    profile = profile_model("model.int8.onnx", batch=1, runs=20, threads=2)
    for row in profile.rows:                    # slowest op type first
        print(row.op_type, row.total_ms, row.calls, f"{row.share:.1%}")
    profile.node_times["conv1_token_5"]         # ms per run of one node of ORT's graph
    profile.share_of({"Conv", "FusedConv"})     # fraction of profiled time in those ops

ORT's profiler times each kernel of the *optimised* graph, so a fused
QLinearConv shows up as QLinearConv and a Conv that ORT left between
DequantizeLinear / QuantizeLinear shows up as a float Conv plus the DQ/Q nodes
around it. Warm-up runs are profiled too (the profiler starts with the session)
but left out of the table: only node events inside the last ``runs`` timed
runs count. Times and call counts are per run, a run being one batch of
``batch`` samples (several session runs when the model's batch dimension is
fixed, as in lowbit.analysis.bench).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lowbit import arguments
from lowbit.analysis.bench import plan_batch
from lowbit.errors import ModelError
from lowbit.io.model import load_model
from lowbit.runtime.ort import check_run, create_session

log = logging.getLogger(__name__)

WARMUP_RUNS = 3
_KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class OpTime:
    """One op type's time per run (ms), its calls per run, and its share of all kernel time."""

    op_type: str
    total_ms: float
    calls: int
    share: float


@dataclass(frozen=True)
class NodeEvent:
    """One kernel execution from ORT's trace: node name, op type, start and duration (µs)."""

    node: str
    op_type: str
    start_us: float
    dur_us: float


@dataclass(frozen=True)
class OpProfile:
    """Per-op-type times, slowest first; ``node_times`` maps ORT node name -> ms per run."""

    rows: tuple[OpTime, ...]
    runs: int
    batch: int
    node_times: dict[str, float] = field(default_factory=dict)
    node_ops: dict[str, str] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        """Kernel time per run, summed over every op (excludes ORT's own overhead)."""
        return sum(row.total_ms for row in self.rows)

    def share_of(self, op_types: Collection[str]) -> float:
        """Fraction of kernel time spent in ops of the given types (0 when nothing was timed)."""
        return sum(row.share for row in self.rows if row.op_type in op_types)

    def table(self) -> str:
        """A plain-text table: op type, ms per run, calls per run, share."""
        lines = [f"{'op':<28} {'ms/run':>10} {'calls':>6} {'share':>7}"]
        for row in self.rows:
            lines.append(f"{row.op_type:<28} {row.total_ms:>10.3f} {row.calls:>6d} "
                         f"{row.share:>7.1%}")
        lines.append(f"{'total':<28} {self.total_ms:>10.3f} "
                     f"{sum(r.calls for r in self.rows):>6d} {1.0 if self.rows else 0.0:>7.1%}")
        return "\n".join(lines)


def profile_model(
    model: str | Path, *, batch: int = 1, runs: int = 20, threads: int | None = None
) -> OpProfile:
    """Profile ``runs`` runs of ``model`` at ``batch`` with random inputs, after warm-up."""
    batch, runs = arguments.count(batch, "batch"), arguments.count(runs, "runs")
    threads = arguments.threads(threads)
    model = arguments.path(model, "model")
    plan = plan_batch(load_model(model, check=False), batch, np.random.default_rng(0),
                      name=str(model), keyword="batch")
    # One run outside the profile: a model ORT cannot run is a ModelError, not a traceback
    check_run(create_session(model, threads=threads), plan.feeds, str(model))
    session = create_session(model, threads=threads, enable_profiling=True)
    trace = _run_and_trace(session, plan.feeds, WARMUP_RUNS * plan.runs, runs * plan.runs)
    timed = timed_events(trace, skip_runs=WARMUP_RUNS * plan.runs)
    if not timed:
        raise ModelError(f"ONNX Runtime's profile of {model} holds no node timings")
    return aggregate(timed, runs=runs, batch=batch)


def aggregate(events: Iterable[NodeEvent], *, runs: int, batch: int) -> OpProfile:
    """Sum node events into per-op-type rows (per run) and per-node times."""
    op_us: dict[str, float] = defaultdict(float)
    op_calls: Counter[str] = Counter()
    node_us: dict[str, float] = defaultdict(float)
    node_ops: dict[str, str] = {}
    for event in events:
        op_us[event.op_type] += event.dur_us
        op_calls[event.op_type] += 1
        node_us[event.node] += event.dur_us
        node_ops[event.node] = event.op_type
    total = sum(op_us.values())
    rows = [OpTime(op_type=op, total_ms=us / 1000.0 / runs, calls=round(op_calls[op] / runs),
                   share=us / total if total > 0 else 0.0)
            for op, us in op_us.items()]
    rows.sort(key=lambda row: (-row.total_ms, row.op_type))
    node_times = {node: us / 1000.0 / runs for node, us in node_us.items()}
    return OpProfile(rows=tuple(rows), runs=runs, batch=batch, node_times=node_times,
                     node_ops=node_ops)


def parse_trace(trace: list[dict[str, Any]]) -> list[NodeEvent]:
    """Kernel events (cat "Node", name "<node>_kernel_time") of a chrome-trace list."""
    events = []
    for entry in trace:
        name = entry.get("name", "")
        if entry.get("cat") != "Node" or not name.endswith(_KERNEL_SUFFIX):
            continue
        op_type = entry.get("args", {}).get("op_name", "?")
        events.append(NodeEvent(node=name[: -len(_KERNEL_SUFFIX)], op_type=op_type,
                                start_us=float(entry.get("ts", 0)),
                                dur_us=float(entry.get("dur", 0))))
    return events


def timed_events(trace: list[dict[str, Any]], *, skip_runs: int) -> list[NodeEvent]:
    """Node events that start after the first ``skip_runs`` session runs (the warm-up)."""
    starts = sorted(float(e.get("ts", 0)) for e in trace
                    if e.get("cat") == "Session" and e.get("name") == "model_run")
    events = parse_trace(trace)
    if len(starts) <= skip_runs:  # no run markers: keep everything rather than nothing
        log.debug("profile trace has %d model_run events; keeping all node events", len(starts))
        return events
    first_timed = starts[skip_runs]
    return [e for e in events if e.start_us >= first_timed]


def _run_and_trace(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray],
                   warmup: int, timed: int) -> list[dict[str, Any]]:
    """Run warm-up then timed runs, end profiling, read and delete ORT's trace file."""
    try:
        for _ in range(warmup + timed):
            session.run(None, dict(feeds))
    except Exception as err:  # ORT raises several unrelated exception types
        Path(session.end_profiling()).unlink(missing_ok=True)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise ModelError(f"running the model under ORT's profiler failed: {first_line}") from err
    path = Path(session.end_profiling())
    try:
        with path.open(encoding="utf-8") as handle:
            trace = json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read ONNX Runtime's profile trace {path}: {err}") from err
    finally:
        path.unlink(missing_ok=True)
    if not isinstance(trace, list):
        raise ModelError(f"ONNX Runtime's profile trace {path} is not a list of events")
    return trace
