"""The QAT flow's ends: a student from a calibration table (or a deployed QDQ model), and
the QDQ export deploy keeps as it is.

    f32 = export_float(module, torch.zeros(1, 3, 224, 224), "work/model.f32.onnx")
    setup = prepare(f32, calibration_table="work/model.calib", weight_bits=4)
    report = distill(setup.student, setup.teacher, batches(photos, 16))
    export(setup.student, "work/model.qat.onnx", report)
    # lowbit deploy work/model.qat.onnx --float-model work/model.f32.onnx --test-data x.npz -o ...

``prepare`` runs lowbit deploy on the float model with the table (any deploy keyword:
``weight_bits=4``, ``weight_range``, ``adaround``, ...; the speed guard off unless asked),
so the student quantizes exactly the tensors deploy does, with deploy's rules and grids;
its scales, integers and biases start from deploy's. ``from_deployed`` does the same for a
QDQ model deploy (or another quantizer) already wrote.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from lowbit.graph import check_qdq_params, is_qdq
from lowbit.io.model import load_model, save_model
from lowbit.qat.distillation import DistillReport
from lowbit.qat.student import TorchGraph, shared_features
from lowbit.recipe.provenance import PREFIX, read_provenance

QAT_KEY = "lowbit-qat"  # metadata kept when deploy stamps its own provenance
OPSET = 17


@dataclass
class QatSetup:
    """A student, its float teacher, and the files they came from."""

    student: TorchGraph
    teacher: TorchGraph
    float_model: Path
    deployed: Path | None = None


def teacher_of(float_model: str | Path | onnx.ModelProto) -> TorchGraph:
    """The float model as a torch module (no gradients)."""
    model = float_model if isinstance(float_model, onnx.ModelProto) else \
        load_model(float_model)
    teacher = TorchGraph(model)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def from_deployed(qdq: str | Path | onnx.ModelProto,
                  float_model: str | Path | onnx.ModelProto | None = None) -> TorchGraph:
    """The student of a QDQ model: deploy's recorded recipe chooses the weight grids (for a
    model made elsewhere, they are read off its integers); latent weights start from
    ``float_model``'s where they round to the deployed integers."""
    model = qdq if isinstance(qdq, onnx.ModelProto) else load_model(qdq)
    where = "the model" if isinstance(qdq, onnx.ModelProto) else str(qdq)
    if not is_qdq(model):
        from lowbit.errors import ModelError

        raise ModelError(f"{where} has no QuantizeLinear/DequantizeLinear: lowbit.qat trains "
                         "a QDQ model (lowbit deploy's INT8)")
    check_qdq_params(model, where)
    recipe = read_provenance(model, where).recipe
    settings = recipe.int8.settings() if recipe is not None and recipe.precision == "INT8" \
        else None
    floats = None if float_model is None else (
        float_model if isinstance(float_model, onnx.ModelProto) else load_model(float_model))
    return TorchGraph(model, float_model=floats, settings=settings)


def prepare(model: str | Path, *, calibration_table: str | Path | None = None,
            calibration_data: str | Path | None = None, output_dir: str | Path | None = None,
            features: bool = True, **deploy_options: Any) -> QatSetup:
    """Deploy ``model`` (a float ONNX model) to INT8 with ``calibration_table`` (or a table
    lowbit calibrate makes from ``calibration_data``) and deploy's keywords, and return the
    student of the result with its float teacher. The deployed model and table are written
    to ``output_dir`` (default: a temporary folder). ``features`` (the default): both also
    return the inner tensors they share (lowbit.qat.student.shared_features), which
    distillation matches at ``DistillSettings.feature_weight``; False: outputs only."""
    import lowbit

    model = Path(model)
    with tempfile.TemporaryDirectory(prefix="lowbit-qat-") as tmp:
        folder = Path(output_dir) if output_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if calibration_table is None:
            if calibration_data is None:
                from lowbit.errors import UsageError

                raise UsageError("lowbit.qat.prepare needs a calibration_table (lowbit "
                                 "calibrate) or calibration_data to make one")
            calibration_table = folder / f"{model.stem}.calib"
            lowbit.calibrate(model, calibration_data, output=calibration_table, progress=False)
        deploy_options.setdefault("speed", "off")
        deployed = lowbit.deploy(model, calibration_table=calibration_table,
                                 output=folder / f"{model.stem}.int8.onnx", **deploy_options)
        student, teacher = from_deployed(deployed.path, model), teacher_of(model)
        if features:
            names = shared_features(student, teacher)
            student.tap(names)
            teacher.tap(names)
        return QatSetup(student, teacher, model,
                        deployed.path if output_dir is not None else None)


def export(student: TorchGraph, output: str | Path, report: DistillReport | None = None
           ) -> Path:
    """Write the student's QDQ model (lowbit deploy then keeps its scales); the metadata
    ``lowbit-qat`` records the distillation, and the provenance of the deploy it started
    from is dropped (its recipe no longer makes this model)."""
    model = student.export()
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)
            and p.key != QAT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if report is not None:
        model.metadata_props.add(key=QAT_KEY, value=json.dumps(
            {"steps": report.steps, "samples": report.samples,
             "seconds": round(report.seconds, 1), "first_loss": report.first_loss,
             "last_loss": report.last_loss}))
    return save_model(model, output)


def export_float(module: torch.nn.Module, example: torch.Tensor, output: str | Path
                 ) -> Path:
    """A PyTorch module as the float ONNX model lowbit calibrates and QAT starts from
    (opset 17, input "input" with a free batch, lowbit transform's clean-up: BN folded)."""
    import lowbit

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    raw = output.with_name(output.stem + ".raw.onnx")
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(raw), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    path = lowbit.transform(raw, output).path
    raw.unlink()
    return path
