"""Every number is bounded and every parse caught: one line, exit 2, the flag and its limit,
nothing written. The same mistakes through the Python API name the keyword instead."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.cli.main import build_parser
from lowbit.cli.names import command_parser, flag_namer
from tests.cli.test_flow import run_cli
from tests.models import small_resnet


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bounds")
    onnx.save(small_resnet(), folder / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "x.npz", input=rng.normal(size=(4, 3, 16, 16)).astype(np.float32))
    (folder / "empty.npz").write_bytes(b"")
    return folder


def _parser(command: str) -> argparse.ArgumentParser:
    parser = command_parser(build_parser([command]), command)
    assert parser is not None
    return parser


def _data_flag(command: str) -> str:
    """The data-set option as this build spells it (--data, or --dataset before)."""
    return flag_namer(_parser(command), command)("dataset")


def test_keywords_are_named_as_each_command_spells_its_options() -> None:
    name = flag_namer(_parser("calibrate"), "calibrate")
    assert name("num") == "--num" and name("output") == "-o" and name("model") == "MODEL"
    assert name("progress") == "--no-progress"  # a switch the CLI turns off
    assert name("dataset") in ("--data", "--dataset")
    assert name("not_an_option") == "--not-an-option"
    assert flag_namer(_parser("bench"), "bench")("batches") == "--batch"
    assert flag_namer(_parser("eval"), "eval")("metrics") == "--metric"
    assert flag_namer(_parser("report"), "report")("variants") == "MODELS"


def _refused(argv: list[object], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code, text = run_cli(argv, capsys)
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


def test_input_shapes_text_is_bounded(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "t.onnx"
    for text, expected in (("[" * 70000, "is 70000 characters long; at most 65536"),
                           ("[" * 60000, "is not a list such as"),  # nested past recursion
                           ("[[" + "9" * 5000 + ",3,16,16]]", "is not a list such as"),
                           ("[[99999999999999999999,3,16,16]]", "from 1 to 2147483647"),
                           ("input:" + "9" * 5000, "whole numbers from 1 to 2147483647"),
                           ("[[100000,3,28000,28000]]", "would take about")):
        _refused(["transform", work / "model.onnx", "-o", out, "--input-shapes", text], capsys,
                 "--input-shapes", expected)
    assert not out.exists()


def test_counts_and_bins_are_bounded(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "c.calib"
    data = _data_flag("calibrate")
    base = ["calibrate", work / "model.onnx", data, work / "x.npz", "-o", out]
    _refused([*base, "--num", str(10**30)], capsys, "--num must be from 1 to 2147483647")
    _refused([*base, "--bins", "2000000000"], capsys, "--bins must be from 128 to 65536")
    _refused([*base, "--threads", "-3"], capsys, "--threads must be from 1 to 1024")
    _refused([*base, "--percentile", "nan", "--method", "percentile"], capsys,
             "--percentile must lie in (0, 100]")
    assert not out.exists()


def test_bench_batch_that_cannot_fit(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["bench", work / "model.onnx", "--batch", "2000000000"], capsys,
             "--batch: batch 2000000000 of model.onnx", "would take about",
             "more than")
    _refused(["bench", work / "model.onnx", "--batch", str(10**20)], capsys,
             "--batch", "whole numbers from 1 to 2147483647")


def test_an_empty_npz_is_one_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["report", work / "model.onnx", _data_flag("report"), work / "empty.npz", "-o",
              work / "report"], capsys, "empty.npz is not a readable .npz archive")
    assert not (work / "report").exists()


def test_a_folder_output_that_is_a_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = work / "blocker.txt"
    blocker.write_text("keep me\n")
    _refused(["report", work / "model.onnx", _data_flag("report"), work / "x.npz", "-o",
              blocker, "--repeats", "1"], capsys, "-o", "is a file; give a folder")
    _refused(["compare", work / "model.onnx", work / "model.onnx", _data_flag("compare"),
              work / "x.npz", "--dump", blocker], capsys, "--dump", "is a file")
    assert blocker.read_text() == "keep me\n"
