"""Progress bars on stderr for every stage that runs for more than a moment.

    with progress_bar("calibrating", enabled, total=200) as advance:
        for batch in batches:
            ...
            advance(len(batch))

One transient rich bar (label, bar, done/total, elapsed) that disappears when the
stage ends; silent when disabled (``--no-progress``, ``progress=False``) or when stderr
is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(label: str, enabled: bool, total: int | None
                 ) -> Iterator[Callable[[int], None]]:
    """A transient bar labelled ``label`` of ``total`` steps (None: unknown); yields
    ``advance(n)``."""
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
        disable=not enabled or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.update(task, advance=n)
