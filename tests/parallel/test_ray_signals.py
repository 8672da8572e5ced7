"""A Ray run that lowbit starts gives the caller's signal handlers back: ray.init installs
its own SIGTERM handler and ray.shutdown leaves it, after which a SIGTERM would skip lowbit's
clean-up (which takes over only default handlers) - and in a test process, end the run."""

from __future__ import annotations

import signal

import pytest

from lowbit.parallel.ray_executor import RayExecutor


def test_a_ray_run_started_here_gives_back_the_signal_handlers() -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    assert not ray.is_initialized()  # no other test's cluster is still up
    before = signal.getsignal(signal.SIGTERM)
    with RayExecutor.start("local", workers=1, threads=1) as executor:
        assert executor.owned
        assert signal.getsignal(signal.SIGTERM) is not before  # Ray's own, while it runs
    assert not ray.is_initialized()
    assert signal.getsignal(signal.SIGTERM) is before
