"""The terminal summaries stay readable on big models."""

from lowbit.cli.render import left_float_lines
from lowbit.quantize.int8.qdq import NodeDecision


def test_left_float_groups_ops_by_type_and_reason() -> None:
    decisions = [NodeDecision(f"add_{i}", "Add", "residual add kept float") for i in range(40)]
    decisions += [NodeDecision("ln_0", "LayerNormalization", "kept float in transformers"),
                  NodeDecision("sm_0", "Softmax", "kept float"),
                  NodeDecision("sm_1", "Softmax", "kept float")]
    lines = left_float_lines(decisions)
    assert lines == [
        "  40 Add (add_0, add_1, add_2, … (+37)): residual add kept float",
        "  LayerNormalization ln_0: kept float in transformers",
        "  2 Softmax (sm_0, sm_1): kept float",
    ]


def _printed(table: object) -> str:
    import io

    from rich.console import Console

    text = io.StringIO()
    Console(file=text, width=80, force_terminal=False).print(table)
    return text.getvalue()


LONG = "/backbone/features.12/conv/conv.2/BatchNormalization_output_0_of_a_long_name"


def test_tables_at_80_columns_fold_names_and_never_cut_a_number() -> None:
    """Every figure users read appears whole at 80 columns; long names fold instead."""
    from lowbit.analysis.layerwise import LayerDiff, LayerReport, Status
    from lowbit.analysis.report import ReportRow
    from lowbit.analysis.validate import OutputCheck, Tolerance, ValidationReport
    from lowbit.cli.render import layer_table, loss_table, report_table, validation_table
    from lowbit.quantize.mixed.qtable import LossRow

    diff = LayerDiff(LONG, "BatchNormalization", (1, 1280, 112, 112), 0.999987, 0.996543,
                     45.123, 0.001234, Status.SIMILAR)
    check = OutputCheck(LONG, (32, 1000), 0.999997, 0.997484, 51.98, 0.05419, True)
    row = ReportRow("INT8", "m.int8.onnx", 13.1, 97.9, 100.0, 1.539, 1907.0, 32, 1.63,
                    0.999997)
    loss = LossRow(1, LONG, "Conv", 41.25, 0.999912)
    cases = [
        (layer_table(LayerReport((diff,), 0, Tolerance(), 8)),
         ["0.999987", "0.996543", "45.12", "0.001234", "SIMILAR"]),
        (validation_table(ValidationReport(Tolerance(), (check,))),
         ["0.999997", "0.997484", "51.98", "0.05419", "PASSED"]),
        (report_table([row]), ["13.10", "97.90", "100.00", "1.539", "1907", "1.63x",
                               "0.999997"]),
        (loss_table([loss]), ["41.25", "0.999912"]),
    ]
    for table, figures in cases:
        text = _printed(table)
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert "…" not in text, text
        for figure in figures:
            assert figure in text, (figure, text)
