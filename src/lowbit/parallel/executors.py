"""Executors: run one function over the shards of a job, in this process, in a local
process pool or on Ray, and return the results in shard order.

    with PoolExecutor(workers=2, threads=1) as executor:       # a pool of 2 processes
        model = executor.share(model_bytes)                     # by reference, not per task
        job = MyJob(model=model, dataset=DatasetRef(...))       # small and picklable
        states = executor.run(observe_shard, job, split_samples(n, executor.parts),
                              label="calibrating", progress=True)

``fn(job, shard, advance)`` must be a module-level function (a spawned process or a Ray
worker imports it by name); it reads its shard through ``job`` (paths, shared blobs) and
returns a small picklable partial state; ``advance(n)`` moves the progress bar where
the bar lives in the same process (inline), and is a no-op elsewhere: there the bar
moves as shards finish (one bar for the whole job). The same code path serves the
three kinds:

- ``InlineExecutor``: this process, shard after shard (1 worker).
- ``PoolExecutor``: ``workers`` processes started with spawn; a process that dies has
  its shards submitted again to a fresh pool (:data:`RETRIES` times).
- ``RayExecutor``: tasks on a Ray cluster, local (started here) or joined through
  ``RAY_ADDRESS``; Ray re-runs the task of a worker that dies (``max_retries``).

A :class:`lowbit.errors.LowbitError` raised in a worker comes back as the same error
naming the shard and the worker; nothing is written by the caller then.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from lowbit.errors import LowbitError
from lowbit.parallel.shards import Shard
from lowbit.progress import progress_bar

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")
Advance = Callable[[int], None]
ShardFn = Callable[[Any, Shard, Advance], Any]

RETRIES = 3  # times a dead worker's shards are run again
SHARDS_PER_WORKER = 4  # shards per worker: load balance, progress, a cheap re-run


class ParallelError(LowbitError):
    """A parallel run could not finish: workers kept dying, or the cluster failed."""


# --------------------------------------------------------------------------- shared blobs


class Shared(Protocol):
    """Bytes every worker can read (a model): :meth:`load` in the worker."""

    @property
    def key(self) -> str: ...

    def load(self) -> bytes: ...


@dataclass(frozen=True)
class InlineBlob:
    key: str
    data: bytes

    def load(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class FileBlob:
    """A file on this machine's disk, which the pool's processes read."""

    key: str
    path: str

    def load(self) -> bytes:
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class RayBlob:
    """An object in Ray's object store, put once and read by every task that needs it."""

    key: str
    ref: Any

    def load(self) -> bytes:
        import ray

        return bytes(ray.get(self.ref))


_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_SIZE = 4


def worker_cache(key: str, what: str, make: Callable[[], R]) -> R:
    """What ``make`` builds for job ``key`` (a session over the shared model), kept in
    this process for the next shard of the same job (the last few jobs only)."""
    entry = (key, what)
    if entry in _CACHE:
        _CACHE.move_to_end(entry)
        return _CACHE[entry]  # type: ignore[no-any-return]
    value = make()
    _CACHE[entry] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def new_key() -> str:
    """A fresh job key (what worker_cache files a job's objects under)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- errors across


@dataclass(frozen=True)
class ShardFailure:
    """A LowbitError raised in a worker, carried back as data (its class and template)."""

    kind: type[LowbitError]
    template: str
    worker: str

    def error(self, shard: Shard) -> LowbitError:
        return self.kind(f"{self.template} ({shard}, worker {self.worker})")


def worker_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def call_shard(fn: ShardFn, job: Any, shard: Shard, advance: Advance | None = None) -> Any:
    """Run ``fn`` on one shard in a worker; a LowbitError comes back as a ShardFailure."""
    try:
        return fn(job, shard, advance or _ignore)
    except LowbitError as err:
        return ShardFailure(type(err), err.template, worker_name())


def _ignore(_: int) -> None:
    """No progress from a worker in another process: the driver counts finished shards."""


def _result(value: Any, shard: Shard) -> Any:
    if isinstance(value, ShardFailure):
        raise value.error(shard)
    return value


@contextmanager
def _caller_hidden() -> Iterator[None]:
    """A spawned process imports the caller's ``__main__`` first, so a script without an
    ``if __name__ == "__main__"`` guard would run again in every worker (and its pool
    break). The workers need lowbit's modules only: while they start, ``__main__`` shows
    them no file or module to import."""
    main = sys.modules.get("__main__")
    hidden = {name: getattr(main, name) for name in ("__file__", "__spec__")
              if main is not None and hasattr(main, name)}
    try:
        if "__file__" in hidden:
            del main.__file__  # type: ignore[union-attr]
        if "__spec__" in hidden:
            main.__spec__ = None  # type: ignore[union-attr]
        yield
    finally:
        for name, value in hidden.items():
            setattr(main, name, value)


# --------------------------------------------------------------------------- executors


class Executor(ABC):
    """Runs shard functions; see the module doc."""

    kind = "inline"

    def __init__(self, workers: int, threads: int | None) -> None:
        self.workers = workers
        self.threads = threads  # engine threads per worker (None: the engine's default)
        self.local_workers = workers  # workers sharing this machine's memory

    @property
    def parts(self) -> int:
        """How many shards to cut a job into."""
        return 1 if self.workers == 1 else self.workers * SHARDS_PER_WORKER

    @abstractmethod
    def share(self, data: bytes) -> Shared:
        """``data`` where every worker can read it, once per job."""

    @abstractmethod
    def _run(self, fn: ShardFn, job: Any, shards: Sequence[Shard], done: Callable[[Shard, Any], None],
             advance: Advance) -> None: ...

    def run(self, fn: ShardFn, job: Any, shards: Sequence[Shard], *, label: str,
            progress: bool, total: int | None = None) -> list[Any]:
        """``fn(job, shard, advance)`` for every shard; the results in shard order."""
        results: dict[int, Any] = {}
        count = sum(s.size for s in shards) if total is None else total
        with progress_bar(label, progress, count) as advance:
            def done(shard: Shard, value: Any) -> None:
                results[shard.index] = _result(value, shard)
            self._run(fn, job, shards, done, advance)
        return [results[s.index] for s in shards]

    def close(self) -> None:
        """Free the workers and what was shared."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        threads = "default" if self.threads is None else self.threads
        return f"{type(self).__name__}(workers={self.workers}, threads={threads})"


class InlineExecutor(Executor):
    """This process, one shard after another."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(1, threads)

    def share(self, data: bytes) -> Shared:
        return InlineBlob(new_key(), data)

    def _run(self, fn: ShardFn, job: Any, shards: Sequence[Shard], done: Callable[[Shard, Any], None],
             advance: Advance) -> None:
        for shard in shards:
            done(shard, call_shard(fn, job, shard, advance))

    def close(self) -> None:
        _CACHE.clear()


class PoolExecutor(Executor):
    """``workers`` spawned processes on this machine (concurrent.futures)."""

    kind = "pool"

    def __init__(self, workers: int, threads: int | None = None) -> None:
        super().__init__(workers, threads)
        self._folder = tempfile.TemporaryDirectory(prefix="lowbit-shared-")
        self._pool: ProcessPoolExecutor | None = None

    def share(self, data: bytes) -> Shared:
        key = new_key()
        path = Path(self._folder.name) / key
        path.write_bytes(data)
        return FileBlob(key, str(path))

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=get_context("spawn"))
        return self._pool

    def _submit(self, pool: ProcessPoolExecutor, fn: ShardFn, job: Any,
                shards: Sequence[Shard]) -> dict[Future[Any], Shard]:
        with _caller_hidden():  # the processes start on the first submit
            return {pool.submit(call_shard, fn, job, s): s for s in shards}

    def _run(self, fn: ShardFn, job: Any, shards: Sequence[Shard], done: Callable[[Shard, Any], None],
             advance: Advance) -> None:
        pending = list(shards)
        for attempt in range(RETRIES + 1):
            pool = self._start()
            futures = self._submit(pool, fn, job, pending)
            try:
                while futures:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        shard = futures.pop(future)
                        done(shard, future.result())
                        pending.remove(shard)
                        advance(shard.size)
                return
            except BrokenProcessPool:
                self._stop(wait=True)
                if attempt == RETRIES:
                    break
                log.warning("a worker process died; running %d shard(s) again (%s)",
                            len(pending), ", ".join(str(s) for s in pending[:3]))
            except BaseException:
                self._stop(wait=False)
                raise
        raise ParallelError(f"worker processes kept dying: {len(pending)} shard(s) failed "
                            f"{RETRIES + 1} times (e.g. {pending[0]}); is memory short? "
                            "try fewer {workers}")

    def _stop(self, *, wait: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._stop(wait=True)
        self._folder.cleanup()
