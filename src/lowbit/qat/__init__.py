"""Quantization-aware training: fine-tune a model lowbit quantized, so INT8 (or W4A8) agrees
with float where post-training quantization falls short. Needs torch (the torch extra).

    import lowbit.qat as qat
    f32 = qat.export_float(module, torch.zeros(1, 3, 224, 224), "work/model.f32.onnx")
    setup = qat.prepare(f32, calibration_table="work/model.calib", weight_bits=4)
    report = qat.distill(setup.student, setup.teacher, qat.batches(photos, 16),
                         qat.DistillSettings(steps=2000, step_learning_rate=0.02))
    qat.export(setup.student, "work/model.qat.onnx", report)
    # lowbit deploy work/model.qat.onnx --float-model work/model.f32.onnx --test-data x.npz -o m.onnx

The student is the QDQ model lowbit deploy wrote from the calibration table, run in torch
(lowbit.qat.student): its fake quantizations are deploy's own Q/DQ pairs — the same op
coverage, uint8 activations with the table's ranges as starting scales, per-channel int8
weights on this CPU's grid (full range with VNNI, paired or 7-bit without, ±7 for W4A8) —
with learned scales, latent weights and biases. Distillation (lowbit.qat.distillation) trains
it towards the float model's outputs and the inner tensors both compute (prepare taps
them; ``features=False`` leaves them out), so unlabeled inputs (photos) are enough. The export
is the same graph with the learned values: ``lowbit deploy`` recognises it as a model that
arrives quantized, keeps its scales, validates it against the float model and explains it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lowbit.errors import UsageError, install_hint

_WHERE = {
    "TorchGraph": "lowbit.qat.student", "shared_features": "lowbit.qat.student",
    "DistillSettings": "lowbit.qat.distillation", "DistillReport": "lowbit.qat.distillation",
    "distill": "lowbit.qat.distillation", "batches": "lowbit.qat.distillation",
    "QatSetup": "lowbit.qat.workflow", "prepare": "lowbit.qat.workflow",
    "from_deployed": "lowbit.qat.workflow", "teacher_of": "lowbit.qat.workflow",
    "export": "lowbit.qat.workflow", "export_float": "lowbit.qat.workflow",
}
__all__ = [
    "DistillReport", "DistillSettings", "QatSetup", "TorchGraph", "batches", "distill",
    "export", "export_float", "from_deployed", "prepare", "require_torch", "shared_features",
    "teacher_of",
]


def require_torch() -> Any:
    """torch, or a UsageError with the install hint (the CLI: one line, exit 2)."""
    try:
        import torch
    except ImportError as err:
        raise UsageError(f"lowbit.qat needs torch, which is not installed: "
                         f"{install_hint('torch')}") from err
    return torch


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lowbit.qat' has no attribute {name!r}")
    require_torch()
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from lowbit.qat.distillation import DistillReport, DistillSettings, batches, distill
    from lowbit.qat.student import TorchGraph, shared_features
    from lowbit.qat.workflow import (
        QatSetup,
        export,
        export_float,
        from_deployed,
        prepare,
        teacher_of,
    )
