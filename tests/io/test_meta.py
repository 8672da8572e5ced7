"""lowbit.io.meta: the model meta file's naming rule, round trip, version check and lookup."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from lowbit.data import ImageOptions
from lowbit.errors import ModelError
from lowbit.io.meta import (
    FORMAT,
    ModelMeta,
    TensorInfo,
    describe_model,
    find_meta,
    load_meta_for,
    meta_path,
    read_meta,
    resolve_image_options,
    write_meta,
)
from tests.models import small_resnet

OPTIONS = ImageOptions(mean=(123.675, 116.28, 103.53), scale=(0.0171, 0.0175, 0.0174),
                       pixel_format="bgr", resize=(256,), crop=(224, 224),
                       keep_aspect_ratio=False, layout="nchw")


@pytest.mark.parametrize(("model", "meta"), [
    ("work/model.f32.onnx", "work/model.meta.json"),
    ("work/model.int8.onnx", "work/model.meta.json"),
    ("work/model.F16.onnx", "work/model.meta.json"),
    ("work/model.bf16.onnx", "work/model.meta.json"),
    ("work/model.mixed.onnx", "work/model.meta.json"),
    ("work/resnet.v2.onnx", "work/resnet.v2.meta.json"),
    ("work/model.onnx", "work/model.meta.json"),
    ("f32.onnx", "f32.meta.json"),
])
def test_naming_rule_strips_the_precision_suffix(model: str, meta: str) -> None:
    assert meta_path(model) == Path(meta)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    meta = describe_model(small_resnet(), preprocessing=OPTIONS, fused=True,
                          fused_layout="nhwc", source="model.pt", source_format="torchscript",
                          exporter="torch.onnx (dynamo)", notes=("opset 17",))
    assert meta.inputs == (TensorInfo("input", ("N", 3, 16, 16), "float32"),)
    assert meta.outputs == (TensorInfo("logits", ("N", 10), "float32"),)
    path = write_meta(meta, tmp_path / "model.meta.json")
    text = path.read_text()
    assert text.splitlines()[1] == f'  "format": "{FORMAT}",'  # the version line comes first
    assert '"shape": ["N", 3, 16, 16]' in text  # short lists stay on one line
    assert read_meta(path) == meta


def test_a_meta_of_another_version_is_one_clear_error(tmp_path: Path) -> None:
    path = write_meta(describe_model(small_resnet()), tmp_path / "m.meta.json")
    data = json.loads(path.read_text())
    data["format"] = "lowbit model meta v2"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"version 2; this lowbit reads version 1"):
        read_meta(path)


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not a lowbit model meta file"),
    ('{"inputs": []}', "its first field should be"),
    (f'{{"format": "{FORMAT}", "inputs": []}}', "missing field 'outputs'"),
    ((f'{{"format": "{FORMAT}", "inputs": [], "outputs": [], "preprocessing": '
      f'{{"mean": [1, 2], "scale": [1], "pixel_format": "yuv"}}}}'), "pixel_format"),
])
def test_broken_meta_files_name_the_file_and_the_problem(tmp_path: Path, text: str,
                                                         message: str) -> None:
    path = tmp_path / "m.meta.json"
    path.write_text(text)
    with pytest.raises(ModelError, match=message) as caught:
        read_meta(path)
    assert str(path) in str(caught.value)


def test_lookup_finds_the_shared_meta_for_every_precision(tmp_path: Path) -> None:
    write_meta(describe_model(small_resnet(), preprocessing=OPTIONS), tmp_path / "model.meta.json")
    for name in ("model.f32.onnx", "model.int8.onnx", "model.f16.onnx", "model.mixed.onnx"):
        assert find_meta(tmp_path / name) == tmp_path / "model.meta.json"
        meta = load_meta_for(tmp_path / name)
        assert meta is not None and meta.preprocessing == OPTIONS
    assert find_meta(tmp_path / "other.onnx") is None
    assert load_meta_for(tmp_path / "other.int8.onnx") is None
    # A meta made for one precision alone wins over the shared one.
    write_meta(describe_model(small_resnet()), tmp_path / "model.int8.meta.json")
    assert find_meta(tmp_path / "model.int8.onnx") == tmp_path / "model.int8.meta.json"


def test_feed_options_of_a_fused_model_are_raw_pixels_with_the_same_geometry() -> None:
    meta = ModelMeta((), (), OPTIONS, fused=True, fused_layout="nhwc")
    feed = meta.feed_options()
    assert feed == ImageOptions(mean=(0.0,), scale=(1.0,), pixel_format="rgb", resize=(256,),
                                crop=(224, 224), layout="nhwc")
    assert ModelMeta((), (), OPTIONS).feed_options() == OPTIONS
    assert ModelMeta((), ()).feed_options() is None
    with pytest.raises(ModelError, match="fused"):
        ModelMeta((), (), None, fused=True, fused_layout="nhwc")


def test_given_options_override_the_meta_and_a_foreign_meta_is_refused(tmp_path: Path) -> None:
    model = small_resnet()
    write_meta(describe_model(model, preprocessing=OPTIONS), tmp_path / "m.meta.json")
    given = ImageOptions(mean=(1.0,))
    assert resolve_image_options(tmp_path / "m.int8.onnx", given, model) is given
    assert resolve_image_options(tmp_path / "m.int8.onnx", None, model) == OPTIONS
    assert resolve_image_options(tmp_path / "x.onnx", None, model) is None
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    renamed.graph.input[0].name = "pixels"
    with pytest.raises(ModelError, match="describes inputs input but .* has pixels"):
        resolve_image_options(tmp_path / "m.onnx", None, renamed)
