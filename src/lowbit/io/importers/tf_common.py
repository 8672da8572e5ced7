"""What the TensorFlow-family importers share: a quiet, lazy TensorFlow and tf2onnx, and
one way to load a model and convert it.

    tf, tf2onnx = load_tensorflow()      # imported on first use only (~10 s of CPU)
    loaded = load_quietly(lambda: tf.saved_model.load(path), f"{path} is not a SavedModel")
    imported = convert_with_tf2onnx(     # quietly, at the target opset, then finished
        lambda tf2onnx, opset: tf2onnx.convert.from_tflite(path, opset=opset), options,
        what=f"the TFLite model {path}", source=path, source_format="tflite",
        exporter="tf2onnx.from_tflite")

TensorFlow is imported only when a TensorFlow, Keras or TFLite file is given. Its C++
core writes start-up chatter (CUDA probes, absl notices) straight to file descriptor 2
before any log level applies, so the import and each conversion run with fd 2 sent to
a temporary file; what was written is logged at debug level (visible with ``-v``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import onnx

from lowbit.errors import ModelError
from lowbit.graph import onnx_opset
from lowbit.io.importers.base import ImportedModel, ImportOptions, first_line
from lowbit.io.importers.onnx_model import upgrade_opset

log = logging.getLogger(__name__)

TF_MODULES = ("tensorflow", "tf2onnx")

T = TypeVar("T")


def load_tensorflow() -> tuple[Any, Any]:
    """``(tensorflow, tf2onnx)``, imported quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # no oneDNN notice, same numbers
    with quiet_native_output():
        import tensorflow as tf
        import tf2onnx
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf, tf2onnx


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Send fd 2, Python's stdout/stderr and warnings to the debug log for the block's
    duration."""
    printed = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings(record=True) as seen:
        # deprecation notices inside TensorFlow and tf2onnx are not the user's to act on
        warnings.simplefilter("always")
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                yield
        finally:
            for warning in seen:
                log.debug("TensorFlow warned: %s", str(warning.message).strip())
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            text = (printed.getvalue() + native).strip()
            if text:
                log.debug("TensorFlow wrote:\n%s", text)


def tf2onnx_opset(tf2onnx: Any, target: int) -> int:
    """The target opset, or tf2onnx's newest where the target is beyond it."""
    newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    return min(target, newest)


def load_quietly(load: Callable[[], T], failure: str) -> T:
    """``load()`` (a model read by TensorFlow or Keras) with its output sent to the debug
    log; an error is a ModelError, ``failure`` followed by the error's first line."""
    with quiet_native_output():
        try:
            return load()
        except Exception as err:
            raise ModelError(f"{failure}: {first_line(err)}") from err


def convert_with_tf2onnx(convert: Callable[[Any, int], tuple[onnx.ModelProto, Any]],
                         options: ImportOptions, *, what: str, source: str, source_format: str,
                         exporter: str, notes: tuple[str, ...] = ()) -> ImportedModel:
    """Run one of tf2onnx's converters, ``convert(tf2onnx, opset)`` (its ``(proto, external
    tensors)``), quietly at the target opset (or tf2onnx's newest), then finish the import;
    a converter error is a ModelError that names ``what`` was being converted."""
    _, tf2onnx = load_tensorflow()
    with quiet_native_output():
        try:
            proto, _ = convert(tf2onnx, tf2onnx_opset(tf2onnx, options.target_opset))
        except Exception as err:
            raise ModelError(f"tf2onnx could not convert {what}: {first_line(err)}") from err
    return finish_conversion(proto, options, source=source, source_format=source_format,
                             exporter=exporter, notes=notes)


def finish_conversion(proto: onnx.ModelProto, options: ImportOptions, *, source: str,
                      source_format: str, exporter: str,
                      notes: tuple[str, ...] = ()) -> ImportedModel:
    """Note the layout and the opset written, then bring the opset to the target."""
    opset = onnx_opset(proto)
    written = f"converted with tf2onnx ({exporter.split('.', 1)[-1]}, opset {opset})"
    layout = _layout_note(proto)
    return upgrade_opset(proto, options.target_opset, source=source,
                         source_format=source_format, exporter=exporter,
                         notes=(written, *notes, *([layout] if layout else [])))


def _layout_note(proto: onnx.ModelProto) -> str | None:
    initializers = {i.name for i in proto.graph.initializer}
    rank4 = [v.name for v in proto.graph.input if v.name not in initializers
             and len(v.type.tensor_type.shape.dim) == 4]
    if not rank4:
        return None
    return (f"layout NHWC kept as TensorFlow has it (inputs {', '.join(rank4)}); tf2onnx adds "
            "Transposes around NCHW ops such as Conv")
