"""Shards as Ray tasks: on a cluster joined through RAY_ADDRESS, or a local one started here.

    with RayExecutor.start("local", workers=2) as executor: ...     # ray.init(num_cpus=...)
    with RayExecutor.start("ray", workers=None) as executor: ...    # RAY_ADDRESS=host:port

Ray is imported here only (the ``ray`` extra). The model goes into the object store
once (``share``); each task reads its shard of the data set by path, which must
therefore be readable on every node (a shared file system or the same path). A task
whose worker process dies is run again by Ray (``max_retries``), and its result is the
same: a shard's state depends only on its samples.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from lowbit.errors import ArgumentError, install_hint
from lowbit.parallel.executors import (
    RETRIES,
    Advance,
    Executor,
    ParallelError,
    RayBlob,
    ShardFn,
    Shared,
    call_shard,
    new_key,
)
from lowbit.parallel.shards import Shard

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds a cluster address has to answer


def import_ray() -> Any:
    """The ray module, or one line saying how to install the extra."""
    try:
        import ray
    except ImportError:
        raise ArgumentError(f"{{cluster}} needs Ray, which is not installed: "
                            f"{install_hint('ray')}") from None
    return ray


def cluster_address() -> str:
    """RAY_ADDRESS, checked to answer within CONNECT_TIMEOUT seconds."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if not address:
        raise ArgumentError("{cluster} ray joins the running cluster that RAY_ADDRESS names "
                            "(host:port of its head); set RAY_ADDRESS, or use {cluster} local "
                            "to start one on this machine")
    if address not in ("auto", "local"):
        check_answers(address)
    return address


def check_answers(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """A TCP connection to the head at ``address`` (host:port, ray://host:port) opens."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ArgumentError(f"RAY_ADDRESS {address!r} for {{cluster}} ray is not host:port")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ArgumentError(f"the Ray cluster at {address} (RAY_ADDRESS) does not answer "
                            f"within {timeout:g} s: {err.strerror or err}") from None


def _ray_task(fn: ShardFn, job: Any, shard: Shard) -> Any:
    return call_shard(fn, job, shard)


class RayExecutor(Executor):
    """Tasks on Ray (see the module doc)."""

    kind = "ray"

    def __init__(self, ray: Any, workers: int, threads: int | None, *, owned: bool,
                 local: bool, handlers: dict[int, Any] | None = None) -> None:
        super().__init__(workers, threads)
        self.ray = ray
        self.owned = owned  # started here: shut down on close
        self.handlers = handlers or {}  # the signal handlers before ray.init, put back on close
        self.local_workers = workers if local else 1
        self.task = ray.remote(_ray_task).options(
            max_retries=RETRIES, num_cpus=threads or 1)

    @classmethod
    def start(cls, cluster: str, workers: int | None, threads: int | None) -> RayExecutor:
        ray = import_ray()
        owned, handlers = False, {}
        if not ray.is_initialized():
            handlers = _signal_handlers()  # ray.init installs its own SIGTERM handler
            address = cluster_address() if cluster == "ray" else None
            cpus = os.cpu_count() or 1
            try:
                if address is None:
                    ray.init(num_cpus=max(cpus, (workers or 1) * (threads or 1)),
                             include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"at {address} (RAY_ADDRESS)" if address else "on this machine"
                raise ParallelError(f"cannot start Ray {where}: "
                                    f"{str(err).strip().splitlines()[0]}") from None
            owned = True
        cpus_there = int(ray.cluster_resources().get("CPU", 1))
        per_task = threads or 1
        count = workers if workers is not None else max(1, cpus_there // per_task)
        log.info("Ray: %d workers x %d thread(s) on %d CPUs", count, per_task, cpus_there)
        return cls(ray, count, threads, owned=owned, local=cluster == "local",
                   handlers=handlers)

    def share(self, data: bytes) -> Shared:
        return RayBlob(new_key(), self.ray.put(data))

    def _run(self, fn: ShardFn, job: Any, shards: Sequence[Shard],
             done: Callable[[Shard, Any], None], advance: Advance) -> None:
        ray = self.ray
        refs = {self.task.remote(fn, job, shard): shard for shard in shards}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                shard = refs.pop(ready[0])
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                except ray.exceptions.RayError as err:
                    raise ParallelError(f"{shard} failed on Ray after {RETRIES} retries: "
                                        f"{str(err).strip().splitlines()[0]}") from None
                done(shard, value)
                advance(shard.size)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        # Ray leaves its SIGTERM handler behind; without this, a later SIGTERM would go to
        # it (lowbit's own clean-up would not run, as it handles only default signals).
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)
        self.handlers = {}


def _signal_handlers() -> dict[int, Any]:
    """SIGTERM's, SIGINT's and SIGHUP's handlers now (empty off the main thread, where they
    cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (getattr(signal, n, None) for n in
            ("SIGTERM", "SIGINT", "SIGHUP")) if s is not None}
