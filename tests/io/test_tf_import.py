"""TensorFlow-family sources: one Keras model saved five ways, each converted with tf2onnx.

The model (NHWC [1,8,8,3] → 5 logits) is built once per module; each converted graph runs
on ONNX Runtime and must give Keras's outputs within float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.cli.main import main
from lowbit.errors import UsageError
from lowbit.io.importers import detect_format, import_model
from lowbit.runtime import create_session

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    root = tmp_path_factory.mktemp("tf")
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3), batch_size=1, name="image")
    y = keras.layers.Conv2D(6, 3, padding="same")(image)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    logits = keras.layers.Dense(5, name="logits")(y)
    model = keras.Model(image, logits, name="tiny")
    # non-trivial BatchNormalization statistics
    bn = model.layers[2]
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape).astype(np.float32)
                    for w in bn.get_weights()])
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype(np.float32)

    model.save(root / "model.keras")
    model.save(root / "model.h5")
    model.export(str(root / "saved"), verbose=False)
    function = tf.function(lambda t: model(t)).get_concrete_function(
        tf.TensorSpec((1, 8, 8, 3), tf.float32, name="x"))
    frozen = convert_variables_to_constants_v2(function)
    (root / "frozen.pb").write_bytes(frozen.graph.as_graph_def().SerializeToString())
    output_node = frozen.outputs[0].name.split(":")[0]
    (root / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return {"root": root, "x": x, "want": model(x).numpy(), "output_node": output_node}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(model, full_check=True)
    session = create_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(("file", "source_format", "exporter"), [
    ("model.keras", "keras", "tf2onnx.from_keras"),
    ("model.h5", "keras", "tf2onnx.from_keras"),
    ("saved", "savedmodel", "tf2onnx.from_function"),
    ("model.tflite", "tflite", "tf2onnx.from_tflite"),
])
def test_each_saved_form_matches_keras(saved: dict, file: str, source_format: str,
                                       exporter: str) -> None:
    imported = import_model(saved["root"] / file)
    assert imported.source_format == source_format
    assert imported.exporter == exporter
    assert imported.opset == 17
    assert imported.notes[0] == f"converted with tf2onnx ({exporter.split('.')[1]}, opset 17)"
    assert any(n.startswith("layout NHWC kept") for n in imported.notes)
    dims = [d.dim_value for d in imported.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [8, 8, 3]   # NHWC stays NHWC
    np.testing.assert_allclose(_run(imported.model, saved["x"]), saved["want"], rtol=1e-4,
                               atol=1e-5)


def test_saved_model_takes_the_serving_signature_names(saved: dict) -> None:
    imported = import_model(saved["root"] / "saved" / "saved_model.pb")   # the file: its folder
    assert imported.source_format == "savedmodel"
    assert "SavedModel signature 'serving_default'" in imported.notes
    assert [i.name for i in imported.model.graph.input] == ["image"]


def test_frozen_graph_def_with_inputs_and_outputs(saved: dict) -> None:
    path = saved["root"] / "frozen.pb"
    assert detect_format(path).name == "graphdef"
    imported = import_model(path, input_names=["x"], output_names=[saved["output_node"]])
    assert imported.source_format == "graphdef"
    assert imported.exporter == "tf2onnx.from_graph_def"
    np.testing.assert_allclose(_run(imported.model, saved["x"]), saved["want"], rtol=1e-4,
                               atol=1e-5)


def test_frozen_graph_def_without_inputs_lists_its_placeholders(saved: dict) -> None:
    path = saved["root"] / "frozen.pb"
    with pytest.raises(UsageError, match=r"frozen GraphDef: give input_names \(its placeholders: x\)"):
        import_model(path, output_names=[saved["output_node"]])
    with pytest.raises(UsageError, match=f"give output_names .its final nodes: "
                                         f"{saved['output_node']}"):
        import_model(path, input_names=["x"])
    with pytest.raises(UsageError, match="input_names nope: .* has no node 'nope'"):
        import_model(path, input_names=["nope"], output_names=[saved["output_node"]])


def test_cli_frozen_graph_without_inputs_exits_2_and_writes_nothing(
        saved: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "model.f32.onnx"
    code = main(["transform", str(saved["root"] / "frozen.pb"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "give --inputs (its placeholders: x)" in err
    assert not out.exists()


def test_cli_frozen_graph_with_inputs_and_outputs(
        saved: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.f32.onnx"
    code = main(["transform", str(saved["root"] / "frozen.pb"), "-o", str(out),
                 "--inputs", "x", "--outputs", saved["output_node"]])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "tf2onnx (from_graph_def, opset 17)" in printed
    np.testing.assert_allclose(_run(onnx.load(out), saved["x"]), saved["want"], rtol=1e-4,
                               atol=1e-5)


def test_names_are_refused_where_the_model_names_its_own(saved: dict) -> None:
    with pytest.raises(UsageError, match="select the tensors of a frozen GraphDef"):
        import_model(saved["root"] / "model.tflite", input_names=["x"])
