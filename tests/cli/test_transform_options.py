"""transform's preprocessing options, model.meta.json, --test-input IMG, --fuse-preprocess,
the graph passes, and `lowbit classify`, through the command line; each error case exits 2
with one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from lowbit.calibration.table import read_table
from lowbit.cli.main import main
from lowbit.data.images import ImageOptions, load_image
from lowbit.runtime.ort import create_session
from tests.models import make_model, small_resnet

RNG = np.random.default_rng(11)


def run_cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transform")
    onnx.save(small_resnet(), root / "model.onnx")
    (root / "images").mkdir()
    for i in range(6):
        Image.fromarray(RNG.integers(0, 256, (20 + 2 * i, 24, 3)).astype(np.uint8)).save(
            root / "images" / f"{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    flat = make_model([helper.make_node("Relu", ["a"], ["y"])],
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 10])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [])
    onnx.save(flat, root / "flat.onnx")
    return root


def meta_of(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_option_is_recorded_in_the_meta_file(files: Path, tmp_path: Path, capsys):
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "model.f32.onnx",
                          "--mean", "1,2,3", "--scale", "0.5", "--pixel-format", "bgr",
                          "--resize", "40,30", "--crop", "20", "--keep-aspect-ratio",
                          "--layout", "nchw"], capsys)
    assert code == 0, text
    assert f"wrote {tmp_path / 'model.meta.json'}" in text
    meta = meta_of(tmp_path / "model.meta.json")
    assert meta["format"] == "lowbit model meta v1"
    assert meta["preprocessing"] == {
        "mean": [1.0, 2.0, 3.0], "scale": [0.5], "pixel_format": "bgr", "resize": [40, 30],
        "crop": [20, 20], "keep_aspect_ratio": True, "layout": "nchw", "fused": False,
        "fused_layout": None}
    assert meta["inputs"] == [{"name": "input", "shape": ["N", 3, 16, 16], "type": "float32"}]
    assert meta["outputs"] == [{"name": "logits", "shape": ["N", 10], "type": "float32"}]
    assert meta["source"]["format"] == "onnx"


def test_without_image_options_the_meta_has_no_preprocessing(files: Path, tmp_path: Path,
                                                            capsys):
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "m.onnx"], capsys)
    assert code == 0, text
    meta = meta_of(tmp_path / "m.meta.json")
    assert meta["preprocessing"] is None
    assert "pass fold_batchnorm" in text and "optimize:" in text  # node counts per pass


def test_passes_can_be_chosen_or_skipped(files: Path, tmp_path: Path, capsys):
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "a.onnx",
                          "--passes", "fold_constants,remove_dead_nodes"], capsys)
    assert code == 0 and "pass fold_constants" in text and "pass fold_batchnorm" not in text
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "b.onnx",
                          "--no-optimize"], capsys)
    assert code == 0 and "pass " not in text


def test_test_input_image_writes_the_exact_tensor_fed_and_its_outputs(files: Path,
                                                                     tmp_path: Path, capsys):
    image = files / "images" / "3.png"
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "model.f32.onnx",
                          "--mean", "127", "--scale", "0.0078125", "--resize", "18",
                          "--test-input", image], capsys)
    assert code == 0, text
    with np.load(tmp_path / "ref_inputs.npz") as data:
        fed = data["input"]
    want = load_image(image, ImageOptions(mean=(127,), scale=(1 / 128,), resize=(18,)), 16, 16)
    np.testing.assert_array_equal(fed, want)
    with np.load(tmp_path / "ref_outputs.npz") as data:
        outputs = data["logits"]
    np.testing.assert_allclose(
        outputs, create_session(tmp_path / "model.f32.onnx").run(None, {"input": fed})[0],
        rtol=1e-5)
    assert outputs.shape == (1, 10)


def test_test_input_data_set_is_copied_to_ref_inputs(files: Path, tmp_path: Path, capsys):
    x = RNG.normal(size=(3, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    code, text = run_cli(["transform", files / "model.onnx", "-o", tmp_path / "m.onnx",
                          "--test-input", tmp_path / "x.npz"], capsys)
    assert code == 0, text
    with np.load(tmp_path / "ref_inputs.npz") as data:
        np.testing.assert_array_equal(data["input"], x)
    with np.load(tmp_path / "ref_outputs.npz") as data:
        assert data["logits"].shape == (3, 10)


def test_calibrate_reads_the_meta_and_explicit_flags_replace_it(files: Path, tmp_path: Path,
                                                               capsys):
    model = tmp_path / "model.f32.onnx"
    assert run_cli(["transform", files / "model.onnx", "-o", model, "--mean", "127",
                    "--scale", "0.0078125", "--resize", "18"], capsys)[0] == 0
    assert run_cli(["calibrate", model, "--dataset", files / "images", "-o", tmp_path / "a.calib",
                    "--no-progress"], capsys)[0] == 0
    meta_range = read_table(tmp_path / "a.calib").ranges["input"]
    assert 0.5 < meta_range.threshold <= 1.0  # (x - 127) / 128 of resized random pixels
    assert run_cli(["calibrate", model, "--dataset", files / "images", "-o", tmp_path / "b.calib",
                    "--no-progress", "--resize", "18"], capsys)[0] == 0
    raw = read_table(tmp_path / "b.calib").ranges["input"]
    assert raw.threshold > 128  # mean 0, scale 1: the meta was not used


def test_fused_model_calibrates_deploys_and_classifies_from_raw_images(files: Path,
                                                                      tmp_path: Path, capsys):
    model = tmp_path / "model.f32.onnx"
    code, text = run_cli(["transform", files / "model.onnx", "-o", model, "--mean", "127",
                          "--scale", "0.0078125", "--resize", "18", "--fuse-preprocess",
                          "--test-input", files / "images" / "0.png"], capsys)
    assert code == 0, text
    assert "fused preprocessing: Cast → Transpose → Sub → Mul" in text
    assert "input uint8 [?,16,16,3]" in text
    meta = meta_of(tmp_path / "model.meta.json")
    assert meta["preprocessing"]["fused"] is True and meta["preprocessing"]["fused_layout"] == "nhwc"
    assert meta["inputs"][0]["type"] == "uint8"
    with np.load(tmp_path / "ref_inputs.npz") as data:
        assert data["input"].dtype == np.uint8 and data["input"].shape == (1, 16, 16, 3)
    code, text = run_cli(["calibrate", model, "--dataset", files / "images", "-o",
                          tmp_path / "model.calib", "--no-progress"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", model, "--calibration-table", tmp_path / "model.calib",
                          "-o", tmp_path / "model.int8.onnx", "--test-input",
                          tmp_path / "ref_inputs.npz", "--test-reference",
                          tmp_path / "ref_outputs.npz"], capsys)
    assert code == 0, text
    code, text = run_cli(["explain", tmp_path / "model.int8.onnx", "--no-profile"], capsys)
    assert code == 0 and "3/3 conv" not in text and "4/4 conv/matmul/gemm run as integer" in text
    assert "stem_conv" in text and "QLinearConv" in text
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)))
    code, text = run_cli(["classify", tmp_path / "model.int8.onnx", "--input",
                          files / "images" / "1.png", "--labels", labels, "--output",
                          tmp_path / "out.png", "--top", "3"], capsys)
    assert code == 0, text
    assert "scores: softmax of the output (logits)" in text and "digit" in text
    assert (tmp_path / "out.png").exists()
    code, text = run_cli(["eval", tmp_path / "model.int8.onnx", "--dataset", files / "images",
                          "--metric", "cos", "--vs", model], capsys)
    assert code == 0 and "top-1 agreement" in text, text
    code, text = run_cli(["report", model, tmp_path / "model.int8.onnx", "--dataset",
                          files / "images", "-o", tmp_path / "report", "--batch", "2",
                          "--repeats", "2"], capsys)
    assert code == 0, text
    row = next(line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
               if line.startswith("| INT8"))
    assert float(row.strip("| ").split("|")[-1]) > 0.99  # cos vs F32 on the raw images


ERRORS = {
    "mean-length": (["transform", "{d}/model.onnx", "-o", "{o}/m.onnx", "--mean", "1,2"],
                    "mean has 2 values"),
    "crop-too-big": (["transform", "{d}/model.onnx", "-o", "{o}/m.onnx", "--resize", "16",
                      "--crop", "20"], "smaller than the 20x20 crop"),
    "unreadable-image": (["transform", "{d}/model.onnx", "-o", "{o}/m.onnx", "--test-input",
                          "{d}/broken.jpg"], "cannot read image"),
    "fuse-flat-model": (["transform", "{d}/flat.onnx", "-o", "{o}/m.onnx", "--fuse-preprocess"],
                        "one 4-D image input"),
    "unknown-pass": (["transform", "{d}/model.onnx", "-o", "{o}/m.onnx", "--passes", "nope"],
                     "unknown graph pass 'nope'"),
    "classify-missing-image": (["classify", "{d}/model.onnx", "--input", "{d}/cat.jpg",
                                "--mean", "0"], "image not found"),
    "classify-no-meta": (["classify", "{d}/model.onnx", "--input", "{d}/images/0.png"],
                         "no meta file (model.meta.json)"),
    "classify-labels-count": (["classify", "{d}/model.onnx", "--input", "{d}/images/0.png",
                               "--mean", "0", "--labels", "{d}/three.txt",
                               "--output", "{o}/out.png"],
                              "name 3 classes but output 'logits'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_and_write_nothing(case: str, files: Path, tmp_path: Path, capsys):
    (files / "three.txt").write_text("a\nb\nc\n")
    argv, expected = ERRORS[case]
    out = tmp_path / "out"
    out.mkdir()
    code, text = run_cli([a.format(d=files, o=out) for a in argv], capsys)
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], text
    assert list(out.iterdir()) == []


def test_a_meta_file_of_another_version_stops_calibrate_and_classify(files: Path,
                                                                    tmp_path: Path, capsys):
    model = tmp_path / "model.f32.onnx"
    assert run_cli(["transform", files / "model.onnx", "-o", model, "--mean", "127"],
                   capsys)[0] == 0
    meta = meta_of(tmp_path / "model.meta.json")
    meta["format"] = "lowbit model meta v9"
    (tmp_path / "model.meta.json").write_text(json.dumps(meta))
    for argv in (["calibrate", model, "--dataset", files / "images", "-o", tmp_path / "t.calib"],
                 ["classify", model, "--input", files / "images" / "0.png"]):
        code, text = run_cli(argv, capsys)
        assert code == 2 and "version 9; this lowbit reads version 1" in text, text
    assert not (tmp_path / "t.calib").exists()


def test_transforming_lowbits_own_output_keeps_its_preprocessing(files: Path, tmp_path: Path,
                                                                capsys):
    first, again = tmp_path / "a" / "model.f32.onnx", tmp_path / "b" / "model.f32.onnx"
    code, text = run_cli(["transform", files / "model.onnx", "-o", first, "--mean", "1,2,3",
                          "--scale", "0.5", "--crop", "16"], capsys)
    assert code == 0, text
    code, text = run_cli(["transform", first, "-o", again], capsys)
    assert code == 0, text
    kept = meta_of(again.with_name("model.meta.json"))["preprocessing"]
    assert kept == meta_of(first.with_name("model.meta.json"))["preprocessing"]
    assert kept["mean"] == [1.0, 2.0, 3.0]
    # Options given again replace what the meta file says.
    code, text = run_cli(["transform", first, "-o", tmp_path / "c" / "m.onnx", "--mean", "9"],
                         capsys)
    assert code == 0, text
    assert meta_of(tmp_path / "c" / "m.meta.json")["preprocessing"]["mean"] == [9.0]


def test_a_fused_model_transformed_again_stays_fused_once(files: Path, tmp_path: Path, capsys):
    fused, again = tmp_path / "a" / "model.f32.onnx", tmp_path / "b" / "model.f32.onnx"
    code, text = run_cli(["transform", files / "model.onnx", "-o", fused, "--mean", "127",
                          "--scale", "0.0078125", "--fuse-preprocess"], capsys)
    assert code == 0, text
    code, text = run_cli(["transform", fused, "-o", again], capsys)
    assert code == 0, text
    meta = meta_of(again.with_name("model.meta.json"))
    assert meta["preprocessing"]["fused"] is True and meta["inputs"][0]["type"] == "uint8"
    code, text = run_cli(["transform", fused, "-o", tmp_path / "c" / "m.onnx",
                          "--fuse-preprocess"], capsys)
    assert code == 2 and "already fused" in text
    assert not (tmp_path / "c" / "m.onnx").exists()
