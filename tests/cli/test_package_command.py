"""`lowbit package`: what it prints and writes, exit 1 on a failed gate, exit 2 refusals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lowbit.cli.main import main
from tests.package_work import Work, build_work


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    return build_work(tmp_path_factory.mktemp("package_command"))


def _run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_package_writes_the_bundle_and_prints_its_members(work: Work, tmp_path, capsys):
    out = tmp_path / "m.lowbit"
    code, printed, err = _run(["package", work.int8, "-o", out], capsys)
    assert code == 0, err
    assert "packaged INT8 model (ORT format, amd64, runtime optimizations)" in printed
    for name in ("model.ort", "meta.json", "report.json"):
        assert name in printed
    assert "PASSED" in printed and f"wrote {out}" in printed
    assert "max |diff| 0" in printed
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("report.json"))["validation"]["passed"]


def test_openvino_format_writes_xml_and_bin(work: Work, tmp_path, capsys):
    pytest.importorskip("openvino")
    code, printed, err = _run(["package", work.f32, "--format", "openvino", "-o",
                               tmp_path / "m.xml", "--test-data", work.x], capsys)
    assert code == 0, err
    assert "weights: " in printed and "f16" not in printed
    assert (tmp_path / "m.bin").exists() and (tmp_path / "m.xml").exists()


def test_a_missed_tolerance_is_exit_1_and_the_bundle_is_written(work: Work, tmp_path, capsys):
    out = tmp_path / "m.lowbit"
    code, printed, _ = _run(["package", work.int8, "-o", out, "--test-input", work.x,
                             "--test-reference", work.reference, "--tolerance", "1.0,1.0"],
                            capsys)
    assert code == 1
    assert "FAILED" in printed and out.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--target-platform", "riscv"], "invalid choice: 'riscv'"),
    (["--format", "tflite"], "invalid choice: 'tflite'"),
    (["--format", "openvino"], "written to an .xml file"),
    (["--test-reference", "{reference}"], "--test-reference needs --test-data"),
    (["--labels", "{labels}"], "gives 2 class names but the model's first output has 10"),
    (["--test-data", "{root}/missing.npz"], "not found"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(work: Work, tmp_path, capsys, args,
                                                        needle):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = tmp_path / "out" / "m.lowbit"
    values = {"reference": work.reference, "labels": labels, "root": work.root}
    code, _, err = _run(["package", work.int8, "-o", out,
                         *(a.format(**values) for a in args)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err
    assert not out.exists() and not (tmp_path / "out").exists()


def test_output_on_the_model_is_refused(work: Work, capsys):
    before = work.int8.read_bytes()
    code, _, err = _run(["package", work.int8, "-o", work.int8], capsys)
    assert code == 2 and "the same file as MODEL" in err
    assert work.int8.read_bytes() == before


def test_a_missing_model_is_refused(tmp_path: Path, capsys):
    code, _, err = _run(["package", tmp_path / "nope.onnx", "-o", tmp_path / "m.lowbit"],
                        capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_json_and_the_old_spelling_of_test_data(work: Work, tmp_path, capsys):
    code, printed, err = _run(["package", work.f32, "-o", tmp_path / "m.lowbit",
                               "--test-input", work.x, "--json"], capsys)
    assert code == 0, err
    found = json.loads(printed)
    assert found["passed"] is True and found["precision"] == "F32"
    assert found["validation"]["checks"][0]["name"] == "logits"
    assert dict(found["members"])["model.ort"] > 0


def test_the_command_offers_what_the_api_accepts():
    from lowbit.api.package import FORMATS, TARGET_PLATFORMS
    from lowbit.cli import package as command

    assert command.FORMATS == FORMATS and command.TARGET_PLATFORMS == TARGET_PLATFORMS
