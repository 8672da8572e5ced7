"""No command destroys an input: each case that once replaced one is exit 2, one line, and the
input byte-identical; a signal while writing leaves no temporary file and the old output."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import lowbit
from lowbit.cli.main import main
from tests.models import small_resnet


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("no_data_loss")
    onnx.save(small_resnet(batch=1), root / "model.onnx")
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    np.savez(root / "x.npz", input=x)
    lowbit.calibrate(root / "model.onnx", root / "x.npz", output=root / "model.calib",
                     method="minmax", progress=False)
    lowbit.deploy(root / "model.onnx", calibration_table=root / "model.calib",
                  output=root / "model.int8.onnx")
    return root


@pytest.fixture
def work(made: Path, tmp_path: Path) -> Path:
    """Fresh copies of the made files, so every test can check its inputs survive."""
    for path in made.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    return tmp_path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(args: list[object], capsys: pytest.CaptureFixture[str], kept: list[Path],
             *needles: str) -> str:
    """Exit 2 with one line naming ``needles``, and every file in ``kept`` unchanged."""
    before = {path: _digest(path) for path in kept}
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert {path: _digest(path) for path in kept} == before
    return err


def test_calibrate_onto_its_model(work, capsys):
    model = work / "model.onnx"
    _refused(["calibrate", model, "--dataset", work / "x.npz", "-o", model], capsys, [model],
             "-o", "is the same file as MODEL")


def test_calibrate_onto_its_data_set(work, capsys):
    data = work / "x.npz"
    _refused(["calibrate", work / "model.onnx", "--dataset", data, "-o", data], capsys, [data],
             "is the same file as --data")


def test_calibrate_onto_a_symlink_to_its_model(work, capsys):
    (work / "link.calib").symlink_to(work / "model.onnx")
    _refused(["calibrate", work / "model.onnx", "--dataset", work / "x.npz", "-o",
              work / "link.calib"], capsys, [work / "model.onnx"], "is the same file as MODEL")


def test_calibrate_onto_a_hard_link_to_its_data_set(work, capsys):
    os.link(work / "x.npz", work / "twin.calib")
    _refused(["calibrate", work / "model.onnx", "--dataset", work / "x.npz", "-o",
              work / "twin.calib"], capsys, [work / "x.npz"], "is the same file as --data")


def test_calibrate_relative_onto_absolute(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    _refused(["calibrate", work / "model.onnx", "--dataset", "x.npz", "-o", "./model.onnx"],
             capsys, [work / "model.onnx"], "is the same file as MODEL")


def test_transform_onto_its_model(work, capsys):
    model = work / "model.onnx"
    _refused(["transform", model, "-o", model, "--input-shapes", "[[1,3,16,16]]"], capsys,
             [model], "is the same file as MODEL")


def test_transform_reference_output_onto_its_model(work, capsys):
    model = work / "model.onnx"
    out = work / "out" / "model.f32.onnx"
    _refused(["transform", model, "-o", out, "--test-input", work / "x.npz",
              "--reference-output", model], capsys, [model],
             "--reference-output", "is the same file as MODEL")
    assert not out.exists()


def test_transform_default_reference_inputs_onto_its_test_input(work, capsys):
    test_input = work / "ref_inputs.npz"
    (work / "x.npz").rename(test_input)
    _refused(["transform", work / "model.onnx", "-o", work / "model.f32.onnx", "--test-input",
              test_input], capsys, [test_input], "--reference-input (default: beside -o)",
             "is the same file as --test-data")
    assert not (work / "model.f32.onnx").exists()


def test_qtable_onto_its_calibration_table(work, capsys):
    table = work / "model.calib"
    _refused(["qtable", work / "model.onnx", "--dataset", work / "x.npz",
              "--calibration-table", table, "-o", table], capsys, [table],
             "is the same file as --calibration-table")


def test_compare_csv_onto_the_reference_model(work, capsys):
    model = work / "model.onnx"
    _refused(["compare", model, work / "model.int8.onnx", "--inputs", work / "x.npz",
              "--csv", model], capsys, [model], "--csv", "is the same file as REFERENCE")


def test_compare_dump_folder_over_its_inputs(work, capsys):
    dump = work / "dump"
    dump.mkdir()
    inputs = dump / "test.npz"
    (work / "x.npz").rename(inputs)
    _refused(["compare", work / "model.onnx", work / "model.int8.onnx", "--inputs", inputs,
              "--dump", dump], capsys, [inputs], "(its test.npz) is the same file as --data")


def test_compare_csv_and_plot_on_one_file(work, capsys):
    out = work / "layers.out"
    _refused(["compare", work / "model.onnx", work / "model.int8.onnx", "--inputs",
              work / "x.npz", "--csv", out, "--plot", out], capsys, [], "are the same file")
    assert not out.exists()


def test_report_into_its_data_set_folder(work, capsys):
    samples = work / "samples"
    samples.mkdir()
    with np.load(work / "x.npz") as data:
        for i in range(2):
            np.savez(samples / f"s{i}.npz", input=data["input"][i:i + 1])
    kept = sorted(samples.iterdir())
    _refused(["report", work / "model.onnx", "--dataset", samples, "-o", samples / "report"],
             capsys, kept, "is inside the --data folder")
    assert sorted(samples.iterdir()) == kept


def test_classify_output_onto_its_image(work, capsys):
    image = work / "cat.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    _refused(["classify", work / "model.onnx", "--input", image, "--output", image, "--mean",
              "0", "--scale", "1"], capsys, [image], "is the same file as --input")


def test_demo_workdir_that_is_a_file(work, capsys):
    blocker = work / "afile"
    blocker.write_text("keep me")
    _refused(["demo", "--workdir", blocker], capsys, [blocker], "is a file")


def test_deploy_onto_its_test_input(work, capsys):
    data = work / "x.npz"
    _refused(["deploy", work / "model.onnx", "--calibration-table", work / "model.calib",
              "--test-input", data, "-o", data], capsys, [data],
             "is the same file as --test-data")


def test_deploy_onto_its_calibration_table(work, capsys):
    table = work / "model.calib"
    _refused(["deploy", work / "model.onnx", "--calibration-table", table, "-o", table],
             capsys, [table], "is the same file as --calibration-table")


def test_deploy_onto_its_model_through_a_symlink(work, capsys):
    link = work / "link.onnx"
    link.symlink_to(work / "model.onnx")
    _refused(["deploy", work / "model.onnx", "--calibration-table", work / "model.calib",
              "-o", link], capsys, [work / "model.onnx"], "is the same file as MODEL")


def test_deploy_that_fails_its_checks_keeps_the_old_output(work, capsys):
    """A reference that does not fit the model fails after the new model is written to
    its temporary file: exit 2, and the model already at -o is untouched."""
    old = work / "model.int8.onnx"
    wrong = work / "wrong_reference.npz"
    np.savez(wrong, logits=np.zeros((4, 3), np.float32))
    _refused(["deploy", work / "model.onnx", "--calibration-table", work / "model.calib",
              "--test-input", work / "x.npz", "--test-reference", wrong, "-o", old],
             capsys, [old], "reference shape [4, 3] differs")
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ signals while writing

# Runs `lowbit transform` with onnx.save_model slowed to 1 MB per 10 ms, and says "writing"
# once the temporary file holds 4 MB: the parent sends its signal then.
_SLOW_WRITER = textwrap.dedent("""
    import signal, sys, time
    import onnx
    from lowbit.cli.main import main

    # As from a terminal, whatever started the tests: under nohup SIGHUP is ignored, and a
    # background job of a shell ignores SIGINT (lowbit rightly leaves ignored signals alone).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def slow_save(model, path, *args, **kwargs):
        data = model.SerializeToString()
        step = 1 << 20
        with open(path, "wb") as handle:
            for i in range(0, len(data), step):
                handle.write(data[i:i + step])
                handle.flush()
                if i == 4 * step:
                    print("writing", flush=True)
                    # Wait here for the test's signal, however loaded the machine: a
                    # write that finished first would make the test pass or fail by luck.
                    for _ in range(600):
                        time.sleep(0.05)
                time.sleep(0.01)

    onnx.save_model = slow_save
    sys.exit(main(sys.argv[1:]))
""")


def _big_model(path: Path) -> None:
    """A 64 MB model: one MatMul with a 4096 x 4096 float weight."""
    weight = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])],
        [onnx.numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), path)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.onnx"
    _big_model(path)
    return path


@pytest.mark.parametrize(("signum", "code", "said"), [
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_a_signal_while_writing_leaves_no_temp_file(big, tmp_path, signum, code, said):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"the previous model")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, "transform", str(big), "-o",
                             str(out), "--no-optimize"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "writing", line + proc.communicate(timeout=60)[1]
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert [p.name.startswith(".out.onnx.") for p in temps] == [True]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and said in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]
    assert out.read_bytes() == b"the previous model"
