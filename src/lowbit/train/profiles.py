"""Where a training step's (or an inference batch's) time and memory go, by op type.

    profile = op_profile(step, repeats=3)      # OpProfile: ms per run, top op types
    profile.ops[0]                              # OpTime(op="aten::convolution_backward", ms=…, share=…)
    peak = peak_tensor_bytes(step)              # bytes of CPU tensors alive at once, or None

Times are torch.profiler's self CPU time per aten op, summed over ``repeats`` runs and
divided by them, so each op type's share is of the ops' own time (Python overhead is
outside it). The peak is read off the profiler's memory timeline (every tensor that
exists during the run, parameters, gradients and optimizer state included; private
torch API, None where it is missing). The profiler's own start/stop lines on stderr are
silenced while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

log = logging.getLogger(__name__)

TOP = 8


@dataclass(frozen=True)
class OpTime:
    op: str
    ms: float  # per run
    share: float  # of the profiled ops' total


@dataclass(frozen=True)
class OpProfile:
    total_ms: float  # ops' self time per run
    ops: tuple[OpTime, ...]  # the TOP op types, then "other"

    def line(self, count: int = 4) -> str:
        """'convolution_backward 41 %, mkldnn_convolution 18 %, …' (aten:: dropped)."""
        return ", ".join(f"{t.op.removeprefix('aten::')} {100 * t.share:.0f} %"
                         for t in self.ops[:count])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """fd 2 to /dev/null: kineto prints 'profiler_start/stop' lines from C++."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def op_profile(run: Callable[[], object], repeats: int = 3) -> OpProfile:
    """Profile ``repeats`` calls of ``run`` (already warmed up) by op type."""
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(("aten::", "mkldnn::", "quantized::")):
            totals[event.key] = totals.get(event.key, 0.0) + event.self_cpu_time_total / 1e3
    total = sum(totals.values()) / repeats
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    ops = [OpTime(name, ms / repeats, (ms / repeats) / total if total else 0.0)
           for name, ms in ranked[:TOP]]
    rest = sum(ms for _, ms in ranked[TOP:]) / repeats
    if rest:
        ops.append(OpTime("other", rest, rest / total if total else 0.0))
    return OpProfile(total, tuple(ops))


def peak_tensor_bytes(run: Callable[[], object]) -> int | None:
    """The most bytes of CPU tensors alive at once during one call of ``run``."""
    try:
        from torch.profiler._memory_profiler import Action
    except ImportError:
        return None
    try:
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                      record_shapes=True, with_stack=True) as prof:
            run()
        timeline = prof._memory_profile().timeline
    except (RuntimeError, ValueError, AttributeError) as err:  # private API: say, not fail
        log.info("no memory timeline from torch's profiler: %s", err)
        return None
    current = peak = 0
    for _, action, (key, _), size in timeline:
        if key.device.type != "cpu":
            continue
        if action in (Action.PREEXISTING, Action.CREATE):
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
