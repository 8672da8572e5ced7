"""Write a TVM-compiled shared library so that it is never seen half-written.

    library = write_tvm("work/model.f32.onnx", "out/model.so", target={"kind": "llvm"},
                        check=validate)
    library.path, library.compile_seconds

The library is compiled into a temporary folder beside the target, ``check(path)`` runs
on it there (it re-loads and validates it; raise to refuse it), and only then does it
replace the target. A failure, Ctrl-C or SIGTERM removes the folder and leaves any
previous file untouched. Needs the optional ``tvm`` extra (lowbit.runtime.tvm_module).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowbit.atomic import terminate_cleanly
from lowbit.errors import UsageError


@dataclass(frozen=True)
class TvmLibrary:
    path: Path
    compile_seconds: float


def write_tvm(model: str | Path, library: str | Path, *, target: Mapping[str, Any],
              check: Callable[[Path], object] | None = None) -> TvmLibrary:
    """Compile ``model`` for ``target`` into ``library`` (.so), checked before it lands."""
    from lowbit.runtime.tvm_module import compile_onnx  # the optional package

    library = Path(library)
    if library.suffix != ".so":
        raise UsageError(f"a TVM module is written to a .so file; got {library}")
    with terminate_cleanly():
        try:
            library.parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{library.name}.", dir=library.parent))
        except OSError as err:
            raise UsageError(f"cannot write {library}: {err.strerror or err}") from err
        try:
            tmp = folder / library.name
            seconds = compile_onnx(model, tmp, target=target)
            if check is not None:
                check(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # a shared library: loadable like any other
            os.replace(tmp, library)
        except OSError as err:
            raise UsageError(f"cannot write {library}: {err.strerror or err}") from err
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return TvmLibrary(library, seconds)
