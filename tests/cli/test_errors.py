"""The command line on bad input: exit code 2, one line naming the problem, nothing written.

Each case runs `lowbit.cli.main.main` in-process; one runs the real `python -m lowbit.cli.main`
to prove a user sees no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import lowbit
from lowbit.cli.main import main
from tests.models import make_model, small_resnet


@dataclass(frozen=True)
class Files:
    root: Path


def _write_files(root: Path) -> None:
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    onnx.save(small_resnet(), root / "model.onnx")
    (root / "random.onnx").write_bytes(rng.bytes(4096))
    whole = (root / "model.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(whole[: len(whole) // 2])

    np.savez(root / "good.npz", input=normal(4, 3, 16, 16))
    np.savez(root / "empty.npz", input=np.zeros((0, 3, 16, 16), np.float32))
    (root / "empty_folder").mkdir()
    np.savez(root / "wrong_key.npz", pixels=normal(4, 3, 16, 16))
    np.savez(root / "wrong_shape.npz", input=normal(4, 3, 8, 8))
    with_nan = normal(4, 3, 16, 16)
    with_nan[2, 1, 5, 5] = np.nan
    np.savez(root / "with_nan.npz", input=with_nan)
    # A folder data set whose second sample has the wrong shape: only found when it is read.
    (root / "bad_folder").mkdir()
    np.save(root / "bad_folder" / "s0.npy", normal(1, 3, 16, 16))
    np.save(root / "bad_folder" / "s1.npy", normal(1, 3, 9, 9))

    lowbit.calibrate(root / "model.onnx", root / "good.npz", output=root / "model.calib",
                     progress=False)
    # A real table made for a different model; its input 'a' is also a tensor of small_resnet.
    other = make_model([helper.make_node("Relu", ["a"], ["h1"]),
                        helper.make_node("Sigmoid", ["h1"], ["h2"]),
                        helper.make_node("Neg", ["h2"], ["out"])],
                       [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])],
                       [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], [])
    onnx.save(other, root / "other.onnx")
    np.savez(root / "other.npz", a=normal(3, 4))
    lowbit.calibrate(root / "other.onnx", root / "other.npz", output=root / "other.calib",
                     progress=False)
    # Reference outputs with a different sample count than good.npz.
    np.savez(root / "short_ref.npz", logits=normal(2, 10))
    np.savez(root / "wrong_ref.npz", something=normal(4, 10))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    _write_files(root)
    return root


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse errors
        return int(exit_.code or 0)


# Command lines ({d} = input files, {o} = output folder) and text the one error line must hold.
TRANSFORM = "transform {d}/model.onnx -o {o}/m.onnx"
CALIBRATE = "calibrate {d}/model.onnx -o {o}/m.calib --no-progress --dataset"
DEPLOY = "deploy {d}/model.onnx --calibration-table {d}/model.calib -o {o}/m.onnx"
COMPARE = "compare {d}/model.onnx {d}/model.onnx --inputs"

CASES = {
    # model files
    "transform-missing-model": ("transform {d}/nothing.onnx -o {o}/m.onnx", "nothing.onnx"),
    "transform-not-onnx": ("transform {d}/random.onnx -o {o}/m.onnx", "random.onnx"),
    "transform-truncated": ("transform {d}/truncated.onnx -o {o}/m.onnx", "truncated.onnx"),
    "calibrate-missing-model": ("calibrate {d}/nothing.onnx -o {o}/m.calib --dataset "
                                + "{d}/good.npz", "nothing.onnx"),
    "calibrate-truncated": ("calibrate {d}/truncated.onnx -o {o}/m.calib --dataset "
                            + "{d}/good.npz", "truncated.onnx"),
    "deploy-not-onnx": ("deploy {d}/random.onnx --calibration-table {d}/model.calib -o "
                        + "{o}/m.onnx", "random.onnx"),
    "compare-missing-reference": ("compare {d}/nothing.onnx {d}/model.onnx --inputs "
                                  + "{d}/good.npz", "nothing.onnx"),
    "compare-missing-test": ("compare {d}/model.onnx {d}/nothing.onnx --inputs {d}/good.npz",
                             "nothing.onnx"),
    "compare-truncated-test": ("compare {d}/model.onnx {d}/truncated.onnx --inputs "
                               + "{d}/good.npz", "truncated.onnx"),
    # data sets
    "calibrate-empty-npz": (CALIBRATE + " {d}/empty.npz", "empty.npz"),
    "calibrate-empty-folder": (CALIBRATE + " {d}/empty_folder", "empty_folder"),
    "calibrate-missing-dataset": (CALIBRATE + " {d}/none.npz", "none.npz"),
    "calibrate-wrong-key": (CALIBRATE + " {d}/wrong_key.npz", "'input'"),
    "calibrate-wrong-shape": (CALIBRATE + " {d}/wrong_shape.npz", "'input'"),
    "calibrate-nan": (CALIBRATE + " {d}/with_nan.npz", "'input'"),
    "calibrate-bad-num": (CALIBRATE + " {d}/good.npz --num 0", "--num"),
    "transform-empty-npz": (TRANSFORM + " --test-input {d}/empty.npz", "empty.npz"),
    "transform-wrong-shape": (TRANSFORM + " --test-input {d}/wrong_shape.npz",
                              "wrong_shape.npz"),
    "transform-nan": (TRANSFORM + " --test-input {d}/with_nan.npz", "with_nan.npz"),
    "deploy-wrong-key": (DEPLOY + " --test-input {d}/wrong_key.npz", "'input'"),
    "deploy-wrong-shape": (DEPLOY + " --test-input {d}/wrong_shape.npz", "wrong_shape.npz"),
    "deploy-bad-folder-sample": (DEPLOY + " --test-input {d}/bad_folder", "s1.npy"),
    "deploy-nan": (DEPLOY + " --test-input {d}/with_nan.npz", "with_nan.npz"),
    "deploy-nan-with-reference": (DEPLOY + " --test-input {d}/with_nan.npz --test-reference "
                                  + "{d}/short_ref.npz", "with_nan.npz"),
    "deploy-missing-reference": (DEPLOY + " --test-input {d}/good.npz --test-reference "
                                 + "{d}/none.npz", "none.npz"),
    "deploy-reference-lacks-output": (DEPLOY + " --test-input {d}/good.npz --test-reference "
                                      + "{d}/wrong_ref.npz", "logits"),
    "deploy-reference-wrong-shape": (DEPLOY + " --test-input {d}/good.npz --test-reference "
                                     + "{d}/short_ref.npz", "logits"),
    "deploy-reference-without-input": (DEPLOY + " --test-reference {d}/short_ref.npz",
                                       "--test-data"),
    "compare-empty-folder": (COMPARE + " {d}/empty_folder", "empty_folder"),
    "compare-wrong-key": (COMPARE + " {d}/wrong_key.npz", "'input'"),
    "compare-nan": (COMPARE + " {d}/with_nan.npz", "with_nan.npz"),
    # options
    "calibrate-unknown-method": (CALIBRATE + " {d}/good.npz --method median", "median"),
    "deploy-missing-table": ("deploy {d}/model.onnx --calibration-table {d}/none.calib -o "
                             + "{o}/m.onnx", "none.calib"),
    "deploy-foreign-table": ("deploy {d}/model.onnx --calibration-table {d}/other.calib -o "
                             + "{o}/m.onnx", "other.calib"),
    "deploy-bad-tolerance": (DEPLOY + " --test-input {d}/good.npz --tolerance 0.99;0.9",
                             "0.99;0.9"),
    "deploy-tolerance-out-of-range": (DEPLOY + " --test-input {d}/good.npz --tolerance 1.5,0.9",
                                      "1.5"),
    "compare-bad-tolerance": (COMPARE + " {d}/good.npz --tolerance 0.99", "0.99"),
    "transform-unknown-input-shape": (TRANSFORM + " --input-shapes image:1,3,16,16", "image"),
    "transform-wrong-rank-shape": (TRANSFORM + " --input-shapes input:1,3,16", "input"),
    "transform-malformed-shape": (TRANSFORM + " --input-shapes [[1,3,", "[[1,3,"),
    "calibrate-unknown-input-shape": (CALIBRATE + " {d}/good.npz --input-shapes image:1,3,16,16",
                                      "image"),
    "deploy-unknown-input-shape": (DEPLOY + " --input-shapes image:1,3,16,16", "image"),
    "deploy-unknown-precision": (DEPLOY + " --quantize INT3", "INT3"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, expected = CASES[case]
    out = tmp_path / "out"
    argv = [part.format(d=files, o=out) for part in template.split()]
    code = run_cli(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {captured.err}; stdout: {captured.out}"
    assert len(lines) == 1, captured.err
    assert f"lowbit {argv[0]}" in lines[0] and "error" in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == []
    assert not (files / "ref_outputs.npz").exists()


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([]) == 2
    assert "transform" in capsys.readouterr().out


def test_real_process_shows_no_traceback(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.calib"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "lowbit.cli.main", "calibrate", str(files / "truncated.onnx"),
         "--dataset", str(files / "good.npz"), "-o", str(out)],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "truncated.onnx" in lines[0], done.stderr
    assert not out.exists()
