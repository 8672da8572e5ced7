"""check_distinct: an output may not be an input, another output, or land in an input folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lowbit.errors import UsageError
from lowbit.outputs import OutputDir, check_distinct


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"model")
    return path


def test_distinct_paths_pass(tmp_path: Path, model: Path) -> None:
    check_distinct({"MODEL": model, "--dataset": None},
                   {"-o": tmp_path / "model.calib", "--csv": None})


def test_the_same_path(model: Path) -> None:
    with pytest.raises(UsageError, match=r"-o .*model\.onnx is the same file as MODEL "
                                         r".*model\.onnx"):
        check_distinct({"MODEL": model}, {"-o": model})


def test_relative_and_absolute_spellings(tmp_path: Path, model: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for spelled in ("model.onnx", "./model.onnx", str(tmp_path / "sub" / ".." / "model.onnx")):
        with pytest.raises(UsageError, match="is the same file as MODEL"):
            check_distinct({"MODEL": str(model)}, {"-o": spelled})


def test_a_symlink_to_the_input(tmp_path: Path, model: Path) -> None:
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    with pytest.raises(UsageError, match="link.onnx is the same file as MODEL"):
        check_distinct({"MODEL": model}, {"-o": link})


def test_a_symlinked_folder(tmp_path: Path, model: Path) -> None:
    (tmp_path / "alias").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="is the same file as --test-input"):
        check_distinct({"--test-input": model}, {"-o": tmp_path / "alias" / "model.onnx"})


def test_a_hard_link_to_the_input(tmp_path: Path, model: Path) -> None:
    twin = tmp_path / "twin.onnx"
    os.link(model, twin)
    with pytest.raises(UsageError, match="twin.onnx is the same file as MODEL"):
        check_distinct({"MODEL": model}, {"-o": twin})


def test_two_outputs_on_one_new_file(tmp_path: Path, model: Path) -> None:
    out = tmp_path / "new" / "layers.out"
    with pytest.raises(UsageError, match=r"--plot .* and --csv .* are the same file; give "
                                         r"--plot and --csv different paths"):
        check_distinct({"MODEL": model}, {"--csv": out, "--plot": tmp_path / "new/./layers.out"})


def test_a_folder_output_counts_the_files_it_writes(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    inputs = dump / "test.npz"
    inputs.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"--dump .*dump \(its test.npz\) is the same file as "
                                         r"--inputs"):
        check_distinct({"--inputs": inputs},
                       {"--dump": OutputDir(dump, ("reference.npz", "test.npz"))})
    check_distinct({"--inputs": dump / "other.npz"},
                   {"--dump": OutputDir(dump, ("reference.npz", "test.npz"))})


def test_a_folder_output_against_a_file_output(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="are the same file"):
        check_distinct({}, {"--csv": tmp_path / "d" / "reference.npz",
                            "--dump": OutputDir(tmp_path / "d", ("reference.npz",))})


def test_an_output_inside_an_input_folder(tmp_path: Path, model: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UsageError, match=r"-o .* is inside the --dataset folder .*images; "
                                         r"writing it would add a file to that input"):
        check_distinct({"MODEL": model, "--dataset": images},
                       {"-o": OutputDir(images / "report", ("report.md",))})


def test_an_output_that_is_an_input_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UsageError, match="is the same file as --dataset"):
        check_distinct({"--dataset": images}, {"-o": images})
