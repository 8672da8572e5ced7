"""Per-op INT8 rules, one family per module, found through the registry."""

from lowbit.quantize.int8.rules import (  # noqa: F401 - importing registers the rules
    activation,
    concat,
    conv,
    eltwise,
    matmul,
    pool,
    shape,
    softmax,
)
from lowbit.quantize.int8.rules.registry import (
    InputRole,
    OpRule,
    OutputMode,
    Role,
    rule_for,
    supported_ops,
)

__all__ = ["InputRole", "OpRule", "OutputMode", "Role", "rule_for", "supported_ops"]
