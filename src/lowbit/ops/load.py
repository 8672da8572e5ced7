"""Custom operators registered from a file, for the command line.

    lowbit --ops my_ops.py deploy model.onnx ...       # my_ops.py calls lowbit.ops.python_op
    load_op_file("my_ops.py")

The file is ordinary Python run once before the command (runpy): it registers Python
operators with :func:`lowbit.ops.python_op` (or builds ONNX functions for models it
writes). An error in it is one line naming the file, not the command's traceback.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from lowbit.errors import LowbitError, UsageError


def load_op_file(path: str | Path) -> None:
    """Run ``path`` so the operators it registers are known to every session lowbit makes."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--ops {path}: no such file (a Python file that registers custom "
                         "operators with lowbit.ops.python_op)")
    try:
        runpy.run_path(str(path), run_name="lowbit_ops")
    except LowbitError:
        raise
    except Exception as err:  # noqa: BLE001 (the user's own code: any error is theirs)
        raise UsageError(f"--ops {path} failed: {type(err).__name__}: {err}") from None
