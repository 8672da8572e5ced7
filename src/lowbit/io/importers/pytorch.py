"""PyTorch: TorchScript files and module objects, exported with torch.onnx.

    imported = import_model("model.pt", input_shapes=[(1, 3, 224, 224)])   # TorchScript file
    imported = import_model(module, example=torch.randn(1, 3, 224, 224))
    imported = import_model(module, example=x, exporter="torchscript")
    imported.exporter   # "torch.onnx dynamo" or "torch.onnx torchscript"

Two exporters ship with torch 2.13. ``dynamo`` (torch.export → onnxscript, torch's
default since 2.9) writes opset 18 at the lowest; ``torchscript`` (the legacy tracer,
deprecated) writes the opset asked for. ``auto`` picks:

- a ScriptModule (and so any TorchScript file): ``torchscript``, since torch.export
  cannot capture a ScriptModule;
- an ``nn.Module``: ``dynamo``, the exporter torch maintains, falling back to
  ``torchscript`` when torch.export cannot capture the module (data-dependent control
  flow, unsupported ops) or onnxscript is absent; the note says which ran and why.

Shapes are fixed to the example's. A file written by ``torch.save`` (a pickle, not
TorchScript) is recognised and refused with a message saying how to export it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit.errors import ModelError, UsageError, install_hint
from lowbit.graph import onnx_opset
from lowbit.io.importers.base import (
    ImportedModel,
    Importer,
    ImportOptions,
    first_line,
    register,
)
from lowbit.io.importers.onnx_model import upgrade_opset
from lowbit.io.sniff import zip_entries

log = logging.getLogger(__name__)

DYNAMO_MIN_OPSET = 18   # torch's dynamo exporter has no lower implementations


def is_torch_archive(path: Path) -> bool:
    """A torch zip archive: TorchScript (``code/``, ``constants.pkl``) or a torch.save
    pickle (``data.pkl`` alone), which the converter refuses with a way forward."""
    entries = zip_entries(path)
    if entries is None:
        return False
    return any(e.endswith(("/constants.pkl", "/data.pkl")) for e in entries)


def _is_torchscript(entries: frozenset[str]) -> bool:
    return (any(e.endswith("/constants.pkl") for e in entries)
            and any("/code/" in e for e in entries))


def convert_torchscript(path: Path, options: ImportOptions) -> ImportedModel:
    entries = zip_entries(path) or frozenset()
    if not _is_torchscript(entries):
        raise ModelError(f"{path} is a pickled PyTorch object (torch.save), not TorchScript: "
                         "pass the module from Python (lowbit.transform(module, out, "
                         "example=x)) or save it with torch.jit.save(torch.jit.trace(module, x))")
    if options.example is None and options.input_shapes is None:
        raise UsageError(f"{path} is a TorchScript file: exporting it needs the input shapes, "
                         "e.g. {input_shapes} [[1,3,224,224]]")
    import torch

    try:
        with warnings.catch_warnings():   # "torch.jit.load is deprecated": not the user's to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise ModelError(f"{path} is not a loadable TorchScript file: {first_line(err)}"
                         ) from err
    return _export(module, options, source=str(path), source_format="torchscript")


def import_module(module: Any, options: ImportOptions) -> ImportedModel:
    """An ``nn.Module`` or ``ScriptModule`` object, traced on ``options.example``."""
    if importlib.util.find_spec("torch") is None:
        raise UsageError(f"importing a PyTorch module needs torch: {install_hint('torch')}")
    import torch

    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"cannot import a {type(module).__name__}: give a model file path, "
                         "or a torch nn.Module / ScriptModule with example=")
    if options.example is None and options.input_shapes is None:
        raise UsageError(f"exporting a {type(module).__name__} needs example= (a tensor or a "
                         "tuple of tensors) or input_shapes=")
    scripted = isinstance(module, torch.jit.ScriptModule)
    return _export(module, options, source=type(module).__name__,
                   source_format="torchscript" if scripted else "torch-module")


def _export(module: Any, options: ImportOptions, *, source: str,
            source_format: str) -> ImportedModel:
    import torch

    scripted = isinstance(module, torch.jit.ScriptModule)
    names = _argument_names(module, scripted)
    example = _example(options, names, source)
    input_names = list(options.input_names) if options.input_names else names[:len(example)]
    if len(input_names) != len(example):
        raise UsageError(f"{{input_names}} names {len(input_names)} input(s) but {source} takes "
                         f"{len(example)} example tensor(s)")
    exporter = _choose_exporter(options.exporter, scripted, source)
    shapes = ", ".join(f"{n} {list(t.shape)}" for n, t in zip(input_names, example, strict=True))
    notes: list[str] = []
    was_training = module.training
    module.eval()
    try:
        if exporter == "dynamo":
            try:
                model = _export_dynamo(module, example, input_names, options)
            except Exception as err:
                if options.exporter == "dynamo":
                    raise ModelError(f"torch.onnx's dynamo exporter failed on {source}: "
                                     f"{_root_cause(err)}") from err
                reason = _root_cause(err)
                log.info("dynamo exporter failed on %s (%s); using the TorchScript exporter",
                         source, reason)
                notes.append(f"torch.export could not capture {source} ({reason}); fell back "
                             "to the TorchScript exporter, which records the control-flow "
                             "path the example took")
                exporter = "torchscript"
        if exporter == "torchscript":
            model = _export_torchscript(module, example, input_names, options, source)
    finally:
        module.train(was_training)
    opset = onnx_opset(model)
    notes.insert(0, f"exported with torch.onnx ({_EXPORTER_LABEL[exporter]}, opset {opset}) "
                    f"at the example's shapes: {shapes}")
    return upgrade_opset(model, options.target_opset, source=source,
                         source_format=source_format, exporter=f"torch.onnx {exporter}",
                         notes=tuple(notes))


def _root_cause(err: BaseException) -> str:
    """The innermost cause's first line, without terminal colour codes: torch.onnx wraps
    torch.export's error in a page of advice."""
    while err.__cause__ is not None:
        err = err.__cause__
    return re.sub(r"\x1b\[[0-9;]*m", "", first_line(err))[:160]


_EXPORTER_LABEL = {"dynamo": "dynamo exporter", "torchscript": "TorchScript exporter"}


def _choose_exporter(asked: str, scripted: bool, source: str) -> str:
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    if asked == "dynamo":
        if scripted:
            raise UsageError(f"{{exporter}} dynamo cannot export {source}: torch.export does not "
                             "capture TorchScript; use {exporter} torchscript (or auto)")
        if not has_onnxscript:
            raise UsageError(f"{{exporter}} dynamo needs onnxscript: {install_hint('torch')}")
        return "dynamo"
    if asked == "torchscript" or scripted or not has_onnxscript:
        return "torchscript"
    return "dynamo"


def _export_dynamo(module: Any, example: tuple[Any, ...], input_names: list[str],
                   options: ImportOptions) -> onnx.ModelProto:
    import torch

    with _quiet_torch():
        program = torch.onnx.export(
            module, example, dynamo=True, verbose=False, optimize=True,
            opset_version=max(options.target_opset, DYNAMO_MIN_OPSET),
            input_names=input_names,
            output_names=list(options.output_names) if options.output_names else None)
    if program is None:
        raise ModelError("torch.onnx.export(dynamo=True) returned no program")
    return program.model_proto


def _export_torchscript(module: Any, example: tuple[Any, ...], input_names: list[str],
                        options: ImportOptions, source: str) -> onnx.ModelProto:
    import torch

    with tempfile.TemporaryDirectory(prefix="lowbit-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with _quiet_torch():
                torch.onnx.export(
                    module, example, str(path), dynamo=False,
                    opset_version=options.target_opset, input_names=input_names,
                    output_names=list(options.output_names) if options.output_names else None,
                    do_constant_folding=True)
        except Exception as err:
            raise ModelError(f"torch.onnx's TorchScript exporter failed on {source}: "
                             f"{first_line(err)}") from err
        return onnx.load(str(path))   # external data, if any, is read before tmp goes


def _argument_names(module: Any, scripted: bool) -> list[str]:
    import inspect

    if scripted:
        try:
            return [a.name for a in module.forward.schema.arguments][1:]   # drop self
        except (AttributeError, RuntimeError):
            return []
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _example(options: ImportOptions, names: list[str], source: str) -> tuple[Any, ...]:
    import torch

    if options.example is not None:
        example = options.example
        items = tuple(example) if isinstance(example, tuple | list) else (example,)
        tensors = tuple(torch.from_numpy(np.asarray(t)) if isinstance(t, np.ndarray) else t
                        for t in items)
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            raise UsageError(f"example= for {source} must be a tensor or a tuple of tensors")
        return tensors
    shapes = options.input_shapes
    assert shapes is not None
    if isinstance(shapes, Mapping):
        missing = [n for n in names if n not in shapes]
        unknown = [n for n in shapes if n not in names]
        if unknown or (missing and len(shapes) != len(names)):
            raise UsageError(f"{{input_shapes}} names {', '.join(map(str, shapes))}; {source} "
                             f"takes {', '.join(names) or 'unnamed inputs'}")
        ordered = [shapes[n] for n in names if n in shapes]
    else:
        ordered = list(shapes)
    # float32 inputs: a TorchScript file records no dtypes; give example= for others.
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(*shape, generator=generator) for shape in ordered)


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch.onnx warns about deprecations and logs torchvision's absence: keep it off
    the user's terminal (it stays visible with ``-v`` as lowbit's own debug log)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo",
                                                    "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    printed = io.StringIO()   # torch.export prints graphs it could not capture
    try:
        with (warnings.catch_warnings(record=True) as caught,
              contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed)):
            warnings.simplefilter("always")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for warning in caught:
            log.debug("torch.onnx warned: %s", str(warning.message).strip().splitlines()[0])
        if printed.getvalue().strip():
            log.debug("torch.onnx printed:\n%s", printed.getvalue())


register(Importer(name="torchscript", label="TorchScript (.pt)", detect=is_torch_archive,
                  convert=convert_torchscript, extra="torch", modules=("torch",)))
