"""Write OpenVINO IR (.xml + .bin) so that neither file is ever seen half-written.

    files = write_ir("work/model.int8.onnx", "out/model.xml", check=validate)
    files.xml, files.bin, files.weight_types      # {"f32": 170, "i8": 21, ...}

Both files are written into a temporary folder beside the target, ``check(xml)`` runs
on them there (it re-loads and validates the IR; raise to refuse it), and only then
do they replace the targets: the .bin first, then the .xml, so an .xml always has its
weights. A failure, Ctrl-C or SIGTERM removes the temporary folder and leaves any
previous pair untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lowbit.atomic import terminate_cleanly
from lowbit.errors import ModelError, UsageError
from lowbit.runtime.backends import require_openvino


@dataclass(frozen=True)
class IrFiles:
    xml: Path
    bin: Path
    weight_types: dict[str, int]  # Constant element types and their counts

    @property
    def bytes(self) -> int:
        return self.xml.stat().st_size + self.bin.stat().st_size


def bin_path(xml: str | Path) -> Path:
    return Path(xml).with_suffix(".bin")


def write_ir(model: str | Path, xml: str | Path, *, keep_float32: bool,
             check: Callable[[Path], object] | None = None) -> IrFiles:
    """Convert ``model`` and write ``xml`` + its .bin; with ``keep_float32``, an IR that
    holds FP16 weights is refused (it would not compute what the F32 model does)."""
    xml = Path(xml)
    if xml.suffix.lower() != ".xml":
        raise UsageError(f"OpenVINO IR goes to an .xml file (its .bin beside it); got {xml}")
    require_openvino()
    from lowbit.runtime.openvino_ir import save_ir, weight_types  # the optional package

    with terminate_cleanly():
        try:
            xml.parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{xml.name}.", dir=xml.parent))
        except OSError as err:
            raise UsageError(f"cannot write {xml}: {err.strerror or err}") from err
        try:
            tmp = save_ir(model, folder / xml.name)
            types = weight_types(tmp)
            if keep_float32 and types.get("f16"):
                raise ModelError(f"the IR of {model} holds {types['f16']} FP16 weight(s); an "
                                 f"F32 model's IR must keep F32 weights")
            if check is not None:
                check(tmp)
            umask = os.umask(0)
            os.umask(umask)
            for item in (bin_path(tmp), tmp):
                os.chmod(item, 0o666 & ~umask)
            os.replace(bin_path(tmp), bin_path(xml))
            os.replace(tmp, xml)
        except OSError as err:
            raise UsageError(f"cannot write {xml}: {err.strerror or err}") from err
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return IrFiles(xml, bin_path(xml), types)
