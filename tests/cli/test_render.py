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
