"""The qtable file: round trip, tpu-mlir files, errors naming file and line, model check."""

import pytest

from lowbit.errors import CalibrationError, UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.mixed.qtable import (
    VERSION_LINE,
    LossRow,
    QTable,
    read_qtable,
    resolve_qtable,
    write_qtable,
)
from tests.models import small_resnet


def test_round_trip_with_loss_rows(tmp_path):
    loss = [LossRow(1, "conv1", "Conv", 41.25, 0.99993), LossRow(2, "fc", "Gemm", float("inf"),
                                                                  1.0)]
    table = QTable({"conv1": "F32", "fc": "F16", "gap": "BF16", "conv2": "INT8"}, loss)
    path = write_qtable(table, tmp_path / "sub" / "model.qtable")
    assert path.read_text().splitlines()[0] == VERSION_LINE
    again = read_qtable(path)
    assert again == table
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


def test_tpu_mlir_qtable_with_output_tensor_names(tmp_path):
    path = tmp_path / "tpu.qtable"
    path.write_text("# genetated time: 2023-01-01 00:00:00\n# chip: bm1684x  mix_mode: F16\n"
                    "###\n# op_name   quantize_mode\n\nb1 F16\nlogits f32\n")
    table = read_qtable(path)
    assert table.precisions == {"b1": "F16", "logits": "F32"} and table.loss is None
    model, _ = canonicalize(small_resnet())
    # b1 is conv1's output (BN folded, the conv takes the BN output's name); logits is fc's.
    assert resolve_qtable(table, model) == {"conv1": "F16", "fc": "F32"}


def test_node_names_win_and_int8_rows_drop():
    model, _ = canonicalize(small_resnet())
    assert resolve_qtable({"conv2": "F32", "conv1": "INT8"}, model) == {"conv2": "F32"}


def test_unknown_names_raise_usage_error_naming_them():
    model, _ = canonicalize(small_resnet())
    with pytest.raises(UsageError, match="not in the model: nope, ghost"):
        resolve_qtable(QTable({"nope": "F32", "ghost": "F16", "fc": "F32"}), model)


@pytest.mark.parametrize(("text", "message"), [
    ("conv1 F32\nconv2 F8\n", r"model\.qtable:2: unknown precision 'F8' .*valid: F32, F16, BF16"),
    ("conv1\n", r"model\.qtable:1: expected 'op_name PRECISION'"),
    ("conv1 F32 extra\n", r"model\.qtable:1: expected"),
    ("conv1 F32\nconv1 F16\n", r"model\.qtable:2: 'conv1' is listed twice"),
    ("# loss 1 conv1 Conv x 0.9\n", r"model\.qtable:1: expected '# loss ORDER"),
])
def test_bad_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "model.qtable"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        read_qtable(path)


def test_missing_file_and_bad_table_values(tmp_path):
    with pytest.raises(CalibrationError, match="qtable not found"):
        read_qtable(tmp_path / "none.qtable")
    with pytest.raises(UsageError, match="choose one of F32, F16, BF16, INT8"):
        QTable({"conv1": "FP16"})
    with pytest.raises(UsageError, match="white space"):
        QTable({"conv 1": "F32"})
