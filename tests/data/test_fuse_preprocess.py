"""--fuse-preprocess: the fused graph on uint8 pixels equals float model + numpy preprocessing,
and the fused model still deploys to INT8 with the first Conv an integer kernel."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import lowbit
from lowbit.analysis.explain import explain_int8
from lowbit.data.fuse_preprocess import fuse_preprocess
from lowbit.data.images import ImageOptions, load_image
from lowbit.errors import UsageError
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, small_resnet

MEAN = (123.675, 116.28, 103.53)
SCALE = (1 / 58.395, 1 / 57.12, 1 / 57.375)
RNG = np.random.default_rng(3)


def pixels(n: int = 2, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (n, 16, 16, channels)).astype(np.uint8)


def by_numpy(px: np.ndarray, options: ImageOptions) -> np.ndarray:
    """What load_image does to decoded pixels: channel order, (x - mean) * scale, NCHW."""
    x = px.astype(np.float32)
    if options.pixel_format == "bgr":
        x = x[..., ::-1]
    x = (x - np.float32(options.mean)) * np.float32(options.scale)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc_model() -> onnx.ModelProto:
    """A conv model whose input is NHWC: Transpose → Conv → GlobalAveragePool."""
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                            [1, 16, 16, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
                      [init("w", w)])


@pytest.mark.parametrize(("pixel_format", "ops"), [
    ("rgb", ["Cast", "Transpose", "Sub", "Mul"]),
    ("bgr", ["Cast", "Transpose", "Gather", "Sub", "Mul"]),
])
def test_fused_nchw_model_on_pixels_equals_float_model_on_preprocessed(pixel_format, ops):
    model = small_resnet()
    options = ImageOptions(mean=MEAN, scale=SCALE, pixel_format=pixel_format, layout="auto")
    fused = fuse_preprocess(model, options)
    onnx.checker.check_model(fused.model, full_check=True)
    assert [n.op_type for n in fused.model.graph.node[:len(ops)]] == ops
    assert len(fused.model.graph.node) == len(model.graph.node) + len(ops)
    new_input = fused.model.graph.input[0]
    assert new_input.name == "input" and new_input.type.tensor_type.elem_type == TensorProto.UINT8
    assert fused.input_shape == ("N", 16, 16, 3)
    px = pixels()
    want = create_session(model).run(None, {"input": by_numpy(px, options)})[0]
    got = create_session(fused.model).run(None, {"input": px})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fused_input_can_stay_nchw_and_a_unit_scale_adds_no_mul():
    model = small_resnet()
    options = ImageOptions(mean=(127.0,), scale=(1.0,), layout="nchw")
    fused = fuse_preprocess(model, options, layout="nchw")
    assert fused.added == ("Cast", "Sub")
    px = pixels()
    want = create_session(model).run(None, {"input": by_numpy(px, options)})[0]
    got = create_session(fused.model).run(None, {"input": px.transpose(0, 3, 1, 2).copy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_nhwc_model_gets_no_transpose_and_mean_per_last_axis():
    model = nhwc_model()
    options = ImageOptions(mean=MEAN, scale=SCALE, layout="auto")
    fused = fuse_preprocess(model, options)
    assert fused.added == ("Cast", "Sub", "Mul")
    px = pixels(1)
    x = by_numpy(px, options).transpose(0, 2, 3, 1).copy()
    want = create_session(model).run(None, {"image": x})[0]
    got = create_session(fused.model).run(None, {"image": px})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fused_model_equals_load_image_on_a_real_file(tmp_path: Path):
    path = tmp_path / "photo.png"
    Image.fromarray(RNG.integers(0, 256, (30, 40, 3)).astype(np.uint8)).save(path)
    options = ImageOptions(mean=MEAN, scale=SCALE, pixel_format="bgr", resize=(20,),
                           layout="nchw")
    raw = ImageOptions(resize=(20,), layout="nhwc")  # what the meta file feeds a fused model
    model = small_resnet()
    fused = fuse_preprocess(model, options)
    want = create_session(model).run(None, {"input": load_image(path, options, 16, 16)})[0]
    px = load_image(path, raw, 16, 16).astype(np.uint8)
    got = create_session(fused.model).run(None, {"input": px})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("options", "message"), [
    (ImageOptions(mean=(1.0, 2.0)), "mean has 2 values but input 'input'"),
    (ImageOptions(pixel_format="gray"), "has 3 channel.* pixel_format 'gray' gives 1"),
])
def test_options_that_do_not_fit_the_input_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        fuse_preprocess(small_resnet(), options)


def test_models_without_one_float_image_input_are_refused():
    two = make_model([helper.make_node("Add", ["a", "b"], ["y"])],
                     [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4])
                      for n in "ab"],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [])
    with pytest.raises(UsageError, match="one image input; this one has 2"):
        fuse_preprocess(two, ImageOptions())
    flat = make_model([helper.make_node("Relu", ["a"], ["y"])],
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 10])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [])
    with pytest.raises(UsageError, match="4-D image input"):
        fuse_preprocess(flat, ImageOptions())
    with pytest.raises(UsageError, match="fused input layout"):
        fuse_preprocess(small_resnet(), ImageOptions(), layout="chw")


def test_int8_deploy_of_a_fused_model_keeps_the_first_conv_an_integer_kernel(tmp_path: Path):
    onnx.save(small_resnet(), tmp_path / "model.onnx")
    options = ImageOptions(mean=MEAN, scale=SCALE, layout="auto")
    result = lowbit.transform(tmp_path / "model.onnx", tmp_path / "model.f32.onnx",
                              image_options=options, fuse_preprocess=True)
    assert result.meta is not None and result.meta.fused
    calib = {"input": RNG.integers(0, 256, (24, 16, 16, 3)).astype(np.uint8)}
    np.savez(tmp_path / "calib.npz", **calib)
    lowbit.calibrate(result.path, tmp_path / "calib.npz", output=tmp_path / "model.calib",
                     progress=False)
    deployed = lowbit.deploy(result.path, calibration_table=tmp_path / "model.calib",
                             output=tmp_path / "model.int8.onnx",
                             test_input=tmp_path / "calib.npz")
    assert deployed.passed and deployed.validation is not None
    assert deployed.validation.checks[0].cosine > 0.999
    # The pixel Cast (and the Sub before the quantized Mul) stay float, and say so.
    assert {d.op_type for d in deployed.left_float} <= {"Cast", "Sub"}
    quantized = Counter(d.op_type for d in deployed.quantized)
    assert quantized["Conv"] == 3 and quantized["Mul"] == 1
    advice = explain_int8(deployed.path, profile=False)
    stem = next(op for op in advice.ops if op.name == "stem_conv")
    assert stem.integer and stem.kernel == "QLinearConv"
    assert not advice.float_ops
    int8 = onnx.load(str(deployed.path))
    assert int8.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
