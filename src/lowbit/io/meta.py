"""The model meta file: what a model takes and how to prepare images for it, stated once.

    meta = describe_model(model, preprocessing=ImageOptions(mean=(127,), scale=(1 / 128,),
                                                            resize=(256,), layout="nchw"))
    write_meta(meta, meta_path("work/model.f32.onnx"))     # -> work/model.meta.json
    meta = load_meta_for("work/model.int8.onnx")           # reads work/model.meta.json, or None
    meta.feed_options()                                    # ImageOptions for images fed to it

transform writes it beside its output; calibrate, eval, classify and report read it
when the user gives no image options, so preprocessing is stated once.

Naming rule (:func:`meta_path`): a model ``NAME.PRECISION.onnx`` (PRECISION one of
f32, f16, bf16, int8, mixed, any case) has its meta file at ``NAME.meta.json``, so
``model.f32.onnx``, ``model.int8.onnx``, ``model.f16.onnx`` and ``model.mixed.onnx``
share ``model.meta.json``; any other ``NAME.onnx`` has ``NAME.meta.json``.
:func:`find_meta` looks for ``NAME.PRECISION.meta.json`` first, then the shared one.

The file is JSON; its first field is the version line::

    {
      "format": "lowbit model meta v1",
      "source": {"path": "model.onnx", "format": "onnx", "exporter": null, "notes": []},
      "inputs": [{"name": "input", "shape": [1, 3, 224, 224], "type": "float32"}],
      "outputs": [{"name": "logits", "shape": [1, 1000], "type": "float32"}],
      "preprocessing": {"mean": [127.0], "scale": [0.0078125], "pixel_format": "rgb",
                        "resize": [256], "crop": [224, 224], "keep_aspect_ratio": false,
                        "layout": "nchw", "fused": false, "fused_layout": null}
    }

``preprocessing`` is null when transform was given no image options. With
``fused`` true the graph itself does mean/scale (and the layout and channel-order
changes): images are fed as raw uint8 RGB (or gray) pixels in ``fused_layout``,
after the same resize and crop; ``inputs`` describes that uint8 input.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from lowbit.atomic import write_text_atomic
from lowbit.data.images import ImageOptions
from lowbit.errors import LowbitError, ModelError
from lowbit.spec import Dim

log = logging.getLogger(__name__)

VERSION = 1
FORMAT = f"lowbit model meta v{VERSION}"
SUFFIX = ".meta.json"
PRECISION_SUFFIXES = ("f32", "f16", "bf16", "int8", "mixed")
_FORMAT_RE = re.compile(r"^lowbit model meta v(\d+)$")
_SCALAR_LIST = re.compile(r"\[\n((?:\s*(?:-?[\d.e+-]+|null|true|false|\"[^\"\n]*\"),?\n)+)\s*\]")


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (a str or None for a dynamic dimension) and numpy type name of a tensor."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: str


@dataclass(frozen=True)
class ModelMeta:
    """What a model takes and gives, where it came from, and how images are prepared."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    preprocessing: ImageOptions | None = None
    fused: bool = False  # the graph does mean/scale itself: feed raw uint8 pixels
    fused_layout: str | None = None  # "nhwc" or "nchw": the fused input's layout
    source: str | None = None  # the file transform read
    source_format: str = "onnx"
    exporter: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.fused and (self.preprocessing is None or self.fused_layout is None):
            raise ModelError("a fused meta needs its preprocessing and fused_layout")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    def feed_options(self) -> ImageOptions | None:
        """How to turn an image file into this model's input: the preprocessing itself, or
        for a fused model the same geometry with raw pixels (mean 0, scale 1) in RGB or
        gray, in the fused layout. None when the meta records no preprocessing."""
        pre = self.preprocessing
        if pre is None or not self.fused:
            return pre
        assert self.fused_layout is not None
        return ImageOptions(mean=(0.0,), scale=(1.0,),
                            pixel_format="gray" if pre.pixel_format == "gray" else "rgb",
                            resize=pre.resize, crop=pre.crop,
                            keep_aspect_ratio=pre.keep_aspect_ratio, layout=self.fused_layout)

    def check_fits(self, model: onnx.ModelProto, meta_file: str | Path,
                   model_file: str | Path) -> None:
        """ModelError when this meta describes other inputs than ``model`` has."""
        names = tuple(_user_inputs(model))
        if names != self.input_names:
            raise ModelError(
                f"{meta_file} describes inputs {', '.join(self.input_names) or 'none'} but "
                f"{model_file} has {', '.join(names) or 'none'}; it belongs to another model "
                f"(remove it or give the image options)")


def describe_model(model: onnx.ModelProto, *, preprocessing: ImageOptions | None = None,
                   fused: bool = False, fused_layout: str | None = None,
                   source: str | Path | None = None, source_format: str = "onnx",
                   exporter: str | None = None, notes: Sequence[str] = ()) -> ModelMeta:
    """The meta of ``model``: its user inputs and outputs with shapes and types."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_info(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_info(v) for v in model.graph.output)
    return ModelMeta(inputs, outputs, preprocessing, fused, fused_layout,
                     None if source is None else str(source), source_format, exporter,
                     tuple(notes))


def meta_path(model_path: str | Path) -> Path:
    """Where the meta file of ``model_path`` lives (the naming rule in the module doc)."""
    path = Path(model_path)
    name = path.name[:-len(".onnx")] if path.name.lower().endswith(".onnx") else path.name
    stem, dot, last = name.rpartition(".")
    if dot and stem and last.lower() in PRECISION_SUFFIXES:
        name = stem
    return path.with_name(name + SUFFIX)


def find_meta(model_path: str | Path) -> Path | None:
    """The meta file for ``model_path`` if one exists: ``NAME.PRECISION.meta.json``, else
    the one :func:`meta_path` names."""
    path = Path(model_path)
    exact = path.with_name((path.name[:-len(".onnx")] if path.name.lower().endswith(".onnx")
                            else path.name) + SUFFIX)
    for candidate in (exact, meta_path(path)):
        if candidate.is_file():
            return candidate
    return None


def load_meta_for(model_path: str | Path) -> ModelMeta | None:
    """The meta beside ``model_path`` (see :func:`find_meta`), or None when there is none."""
    found = find_meta(model_path)
    if found is None:
        return None
    log.info("read %s for %s", found, model_path)
    return read_meta(found)


def write_meta(meta: ModelMeta, path: str | Path) -> Path:
    """Write ``meta`` as JSON, atomically."""
    return write_text_atomic(path, meta_text(meta))


def meta_text(meta: ModelMeta) -> str:
    """The text of ``meta``'s file (what :func:`write_meta` writes; a bundle holds it too)."""
    text = json.dumps(_to_json(meta), indent=2)
    # Lists of numbers and strings (shapes, mean, notes) on one line each, for reading.
    text = _SCALAR_LIST.sub(lambda m: "[" + ", ".join(
        part.strip() for part in m.group(1).split(",\n")) + "]", text)
    return text + "\n"


def read_meta(path: str | Path) -> ModelMeta:
    """Read a meta file; a missing file, bad JSON or another version raises ModelError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelError(f"meta file not found: {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path} is not a lowbit model meta file (not readable JSON: "
                         f"{str(err).splitlines()[0]})") from err
    found = data.get("format") if isinstance(data, dict) else None
    match = _FORMAT_RE.match(found) if isinstance(found, str) else None
    if match is None:
        raise ModelError(f"{path} is not a lowbit model meta file: its first field should be "
                         f'"format": "{FORMAT}", found {found!r}')
    if int(match.group(1)) != VERSION:
        raise ModelError(f"{path} is a model meta file of version {match.group(1)}; this "
                         f"lowbit reads version {VERSION} (run lowbit transform again)")
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError, LowbitError) as err:
        detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise ModelError(f"{path} is a broken model meta file: {detail}") from err


def resolve_image_options(model_path: str | Path, given: ImageOptions | None,
                          model: onnx.ModelProto | None = None) -> ImageOptions | None:
    """``given`` when the user gave image options (they override the meta file), else the
    feed options of the meta beside ``model_path`` (checked against ``model`` when given),
    else None."""
    if given is not None:
        return given
    found = find_meta(model_path)
    if found is None:
        return None
    meta = read_meta(found)
    if model is not None:
        meta.check_fits(model, found, model_path)
    return meta.feed_options()


# --------------------------------------------------------------------------- JSON


def _to_json(meta: ModelMeta) -> dict[str, object]:
    pre = meta.preprocessing
    return {
        "format": FORMAT,
        "source": {"path": meta.source, "format": meta.source_format,
                   "exporter": meta.exporter, "notes": list(meta.notes)},
        "inputs": [_tensor_json(t) for t in meta.inputs],
        "outputs": [_tensor_json(t) for t in meta.outputs],
        "preprocessing": None if pre is None else {
            "mean": list(pre.mean), "scale": list(pre.scale), "pixel_format": pre.pixel_format,
            "resize": None if pre.resize is None else list(pre.resize),
            "crop": None if pre.crop is None else list(pre.crop),
            "keep_aspect_ratio": pre.keep_aspect_ratio, "layout": pre.layout,
            "fused": meta.fused, "fused_layout": meta.fused_layout,
        },
    }


def _from_json(data: Mapping[str, object]) -> ModelMeta:
    source = data.get("source") or {}
    if not isinstance(source, dict):
        raise TypeError("'source' must be an object")
    pre = data.get("preprocessing")
    options, fused, fused_layout = None, False, None
    if pre is not None:
        if not isinstance(pre, dict):
            raise TypeError("'preprocessing' must be an object or null")
        options = ImageOptions(
            mean=tuple(pre["mean"]), scale=tuple(pre["scale"]),
            pixel_format=pre["pixel_format"],
            resize=None if pre.get("resize") is None else tuple(pre["resize"]),
            crop=None if pre.get("crop") is None else tuple(pre["crop"]),
            keep_aspect_ratio=bool(pre.get("keep_aspect_ratio", False)),
            layout=pre.get("layout", "nchw"))
        fused = bool(pre.get("fused", False))
        fused_layout = pre.get("fused_layout")
    return ModelMeta(
        inputs=tuple(_tensor_from_json(t) for t in _list(data, "inputs")),
        outputs=tuple(_tensor_from_json(t) for t in _list(data, "outputs")),
        preprocessing=options, fused=fused, fused_layout=fused_layout,
        source=source.get("path"), source_format=source.get("format") or "onnx",
        exporter=source.get("exporter"), notes=tuple(source.get("notes") or ()))


def _list(data: Mapping[str, object], key: str) -> list[dict[str, object]]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"'{key}' must be a list of objects")
    return value


def _tensor_json(info: TensorInfo) -> dict[str, object]:
    return {"name": info.name, "shape": None if info.shape is None else list(info.shape),
            "type": info.dtype}


def _tensor_from_json(value: Mapping[str, object]) -> TensorInfo:
    shape = value.get("shape")
    if shape is not None and not isinstance(shape, list):
        raise TypeError(f"shape of '{value.get('name')}' must be a list or null")
    return TensorInfo(str(value["name"]), None if shape is None else tuple(shape),
                      str(value["type"]))


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape: tuple[Dim, ...] | None = None
    if tensor.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else
                      (d.dim_param or None) for d in tensor.shape.dim)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except (KeyError, TypeError):
        dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    return TensorInfo(value.name, shape, dtype)


def _user_inputs(model: onnx.ModelProto) -> list[str]:
    initializers = {init.name for init in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initializers]
