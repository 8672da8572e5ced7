"""lowbit.qat on a tiny ResNet: fake quantization on ONNX's grid, a student that is deploy's
QDQ model (its scales from the calibration table), distillation from the float teacher
without labels, and a QDQ export whose scales lowbit deploy keeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import lowbit
from tests.models import small_resnet

torch = pytest.importorskip("torch")
lq = pytest.importorskip("lowbit.qat")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qat")
    onnx.save(small_resnet(), root / "model.onnx")
    f32 = lowbit.transform(root / "model.onnx", root / "model.f32.onnx").path
    rng = np.random.default_rng(0)
    np.savez(root / "calib.npz", input=rng.normal(size=(32, 3, 16, 16)).astype(np.float32))
    np.savez(root / "x.npz", input=rng.normal(size=(48, 3, 16, 16)).astype(np.float32))
    lowbit.calibrate(f32, root / "calib.npz", output=root / "model.calib", progress=False)
    return root


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _sqnr(reference: np.ndarray, value: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / ((reference - value) ** 2).sum()))


def _inputs(work: Path) -> np.ndarray:
    with np.load(work / "x.npz") as data:
        return data["input"]


def test_fake_quant_is_quantize_then_dequantize_with_a_straight_through_gradient():
    from lowbit.qat.fake_quant import fake_quant, fake_quant_weight

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(0, 2, 4000).astype(np.float32)).requires_grad_(True)
    scale, zero = 0.02, 100
    y = fake_quant(x, torch.tensor(scale).log(), zero, 0, 255)
    # ONNX QuantizeLinear → DequantizeLinear: round half to even, saturate at 0..255
    codes = np.clip(np.rint(x.detach().numpy() / np.float32(scale)) + zero, 0, 255)
    expected = (codes - zero) * np.float32(scale)
    assert np.abs(y.detach().numpy() - expected).max() <= scale / 1000
    y.sum().backward()
    ratio = x.detach().numpy() / scale + zero
    inside, outside = (ratio > 1) & (ratio < 254), (ratio < -1) | (ratio > 256)
    assert np.all(x.grad.numpy()[inside] == 1) and np.all(x.grad.numpy()[outside] == 0)
    assert inside.mean() > 0.5 and outside.mean() > 0.05  # both sides were exercised
    w = torch.from_numpy(rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    per_channel = torch.from_numpy(np.abs(w.numpy()).reshape(6, -1).max(1) / 7).log()
    q = fake_quant_weight(w, per_channel, 0, 7).detach().numpy()
    steps = q / per_channel.exp().numpy().reshape(6, 1, 1, 1)
    assert np.allclose(steps, np.rint(steps), atol=1e-4) and np.abs(steps).max() <= 7 + 1e-4
    assert len(np.unique(np.rint(steps))) == 15  # the whole W4 grid, -7..7


def test_the_student_is_deploys_qdq_model_with_the_tables_scales(work, tmp_path):
    setup = lq.prepare(work / "model.f32.onnx", calibration_table=work / "model.calib",
                       output_dir=tmp_path)
    deployed = onnx.load(setup.deployed)
    values = {i.name: numpy_helper.to_array(i) for i in deployed.graph.initializer}
    activations = [n.input[1] for n in deployed.graph.node if n.op_type == "QuantizeLinear"]
    assert activations and set(activations) == set(setup.student.activations)
    for name in activations:  # learned scales start at deploy's, i.e. the table's ranges
        key = setup.student._param_key(name)
        assert np.isclose(float(setup.student.log_scales[key].detach().exp()),
                          float(values[name]),
                          rtol=1e-6)
    assert {s.grid for s in setup.student.weights.values()} <= {"full", "paired", "reduced"}
    x = _inputs(work)
    with torch.no_grad():
        student = setup.student({"input": torch.from_numpy(x)})[0].numpy()
        teacher = setup.teacher({"input": torch.from_numpy(x)})[0].numpy()
    qdq, f32 = _run(setup.deployed, x), _run(work / "model.f32.onnx", x)
    assert _sqnr(qdq, student) > 30  # the student runs what ONNX Runtime runs
    assert np.abs(teacher - f32).max() < 1e-4


def test_distillation_without_labels_and_an_export_deploy_keeps(work, tmp_path):
    """A table calibrated on inputs a quarter as large clips every activation: W4A8 PTQ
    with it is poor; distillation towards the float model learns the scales back."""
    f32 = work / "model.f32.onnx"
    with np.load(work / "calib.npz") as data:
        photos = data["input"]  # unlabeled inputs: no labels anywhere
    np.savez(tmp_path / "narrow.npz", input=photos / 4)
    lowbit.calibrate(f32, tmp_path / "narrow.npz", output=tmp_path / "narrow.calib",
                     method="minmax", progress=False)
    setup = lq.prepare(f32, calibration_table=tmp_path / "narrow.calib", weight_bits=4,
                       output_dir=tmp_path)
    assert {s.qmax for s in setup.student.weights.values()} == {7}
    start = {n: float(setup.student.log_scales[setup.student._param_key(n)].detach())
             for n in setup.student.activations}
    x = _inputs(work)
    before = _sqnr(_run(f32, x), _run(setup.deployed, x))
    report = lq.distill(setup.student, setup.teacher, lq.batches(photos, 8),
                        lq.DistillSettings(steps=40, step_learning_rate=0.05,
                                           scale_learning_rate=1e-2, loss="mse", threads=1,
                                           log_every=10))
    assert report.steps == 40 and report.samples == 320
    assert report.last_loss < report.first_loss
    exported = lq.export(setup.student, tmp_path / "model.qat.onnx", report)
    after = _sqnr(_run(f32, x), _run(exported, x))  # on inputs it did not train on
    assert after > before + 10, (before, after)
    grown = [float(setup.student.log_scales[setup.student._param_key(n)].detach()) > s
             for n, s in start.items()]
    assert np.mean(grown) > 0.5  # the clipped ranges widened
    kept = lowbit.deploy(exported, output=tmp_path / "kept.onnx", float_model=f32,
                         test_input=work / "x.npz")
    assert kept.steps == ("keep_scales",)
    mine = {i.name: i.SerializeToString() for i in onnx.load(exported).graph.initializer}
    theirs = {i.name: i.SerializeToString() for i in onnx.load(kept.path).graph.initializer}
    assert mine == theirs  # every learned scale and integer as QAT wrote it
    codes = [numpy_helper.to_array(i) for i in onnx.load(exported).graph.initializer
             if i.name in setup.student.weights]
    assert codes and all(np.abs(c.astype(np.int64)).max() <= 7 for c in codes)
    assert "lowbit-qat" in {p.key for p in onnx.load(exported).metadata_props}


def test_the_student_of_an_adaround_model_starts_at_its_integers(work, tmp_path):
    """AdaRound rounds some weights up where nearest rounds down: the student keeps those
    integers (its latent weights start inside their cells), so QAT starts where AdaRound
    ended, not at nearest rounding."""
    setup = lq.prepare(work / "model.f32.onnx", calibration_table=work / "model.calib",
                       output_dir=tmp_path)
    model = onnx.load(setup.deployed)
    floats = {k[0]: v for k, v in _float_weights(work)}
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    flipped = 0
    for node in model.graph.node:
        slot = setup.student.weights.get(node.input[0]) if node.op_type == \
            "DequantizeLinear" else None
        user = next((u for u in model.graph.node if node.output[0] in u.input), None)
        if slot is None or user is None or user.name not in floats:
            continue
        codes, scale = values[slot.codes], values[slot.scale]
        ratio = floats[user.name] / scale.reshape(-1, *[1] * (codes.ndim - 1))
        other = codes.astype(np.int64) + np.sign(ratio - codes).astype(np.int64)
        pick = (np.random.default_rng(0).random(codes.shape) < 0.3) & (np.abs(other) <= 127)
        changed = np.where(pick, other, codes).astype(codes.dtype)
        flipped += int((changed != codes).sum())
        for i, init in enumerate(model.graph.initializer):
            if init.name == slot.codes:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(changed,
                                                                            slot.codes))
    assert flipped > 100
    student = lq.from_deployed(model, work / "model.f32.onnx")
    exported = {i.name: numpy_helper.to_array(i) for i in student.export().graph.initializer}
    for name in student.weights:
        expected = next(numpy_helper.to_array(i) for i in model.graph.initializer
                        if i.name == name)
        assert np.array_equal(exported[name], expected), name


def _float_weights(work: Path) -> list[tuple[tuple[str, str], np.ndarray]]:
    from lowbit.qat.student import _float_weights as weights

    return list(weights(onnx.load(work / "model.f32.onnx")).items())


def test_a_step_learning_rate_moves_every_weight_by_that_fraction_of_its_step(work,
                                                                              tmp_path):
    setup = lq.prepare(work / "model.f32.onnx", calibration_table=work / "model.calib",
                       output_dir=tmp_path)
    sizes = setup.student.step_sizes()
    before = [p.detach().clone() for p, _ in sizes]
    lq.distill(setup.student, setup.teacher, lq.batches(_inputs(work), 8),
               lq.DistillSettings(steps=1, step_learning_rate=0.1, scale_learning_rate=0,
                                  threads=1))
    moved = [float((p.detach() - b).abs().max()) / size
             for (p, size), b in zip(sizes, before, strict=True)]
    assert len(moved) == len(setup.student.weights) + len(setup.student.biases)
    assert np.allclose(moved, 0.1, rtol=1e-3), moved  # Adam's first step: the rate itself


def test_without_vnni_the_student_learns_on_deploys_paired_grid(work, tmp_path, monkeypatch):
    from lowbit.quantize.int8.params import WeightQuant, limit_pairs

    monkeypatch.setenv("LOWBIT_FORCE_ISA", "vnni=0")
    setup = lq.prepare(work / "model.f32.onnx", calibration_table=work / "model.calib",
                       output_dir=tmp_path)
    grids = {s.grid for s in setup.student.weights.values()}
    assert "paired" in grids, grids
    report = lq.distill(setup.student, setup.teacher, lq.batches(_inputs(work), 8),
                        lq.DistillSettings(steps=5, step_learning_rate=0.5, threads=1))
    exported = onnx.load(lq.export(setup.student, tmp_path / "paired.onnx", report))
    values = {i.name: numpy_helper.to_array(i) for i in exported.graph.initializer}
    for slot in setup.student.weights.values():
        if slot.pairs is None:
            continue
        codes, scale = values[slot.codes], values[slot.scale]
        again = limit_pairs(WeightQuant(codes, scale.reshape(-1), slot.axis),
                            codes.astype(np.float32) * scale.reshape(-1, *[1] * (
                                codes.ndim - 1)), slot.pairs).q
        assert np.array_equal(again, codes), slot.codes  # already inside the pair limit


NO_TORCH = ("import sys; sys.modules['torch'] = None\n"
            "import lowbit.qat\n"
            "try:\n    lowbit.qat.prepare\n"
            "except Exception as err:\n    print(type(err).__name__, err)\n")


def test_without_torch_the_install_hint():
    done = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True,
                          env={**os.environ}, check=True)
    assert done.stdout.startswith("UsageError lowbit.qat needs torch")
    assert "pip install torch==2.13.0" in done.stdout


def test_feature_distillation_taps_the_tensors_both_models_compute(work, tmp_path):
    """shared_features names inner tensors made by the same op in student and teacher
    (never an output, never a Conv renamed after a folded Relu); tapped, both return them
    after the outputs, and a feature weight adds their error to the loss. prepare taps
    them by default, and the default weight is 3."""
    f32 = work / "model.f32.onnx"
    setup = lq.prepare(f32, calibration_table=work / "model.calib", weight_bits=4,
                       output_dir=tmp_path, features=False)
    assert setup.student.taps == setup.teacher.taps == []
    names = lq.shared_features(setup.student, setup.teacher)
    assert names and not set(names) & set(setup.student.output_names)
    assert names == lq.shared_features(setup.student, onnx.load(f32))
    theirs = setup.teacher.producers()
    assert all(theirs[n] == setup.student.producers()[n] for n in names)
    x = torch.from_numpy(_inputs(work)[:4])
    plain = setup.student({"input": x})
    setup.student.tap(names)
    setup.teacher.tap(names)
    tapped, reference = setup.student({"input": x}), setup.teacher({"input": x})
    assert len(tapped) == len(reference) == len(plain) + len(names)
    torch.testing.assert_close(tapped[0], plain[0])
    for mine, float_value in zip(tapped[1:], reference[1:], strict=True):
        assert mine.shape == float_value.shape
    with pytest.raises(lowbit.errors.ModelError, match="nothing to tap"):
        setup.student.tap(["no such tensor"])
    with np.load(work / "calib.npz") as data:
        photos = data["input"]
    settings = {"steps": 2, "step_learning_rate": 0.01, "loss": "mse", "threads": 1,
                "log_every": 1}
    without = lq.distill(setup.student, setup.teacher, lq.batches(photos, 8),
                         lq.DistillSettings(**settings, feature_weight=0))
    with_features = lq.distill(setup.student, setup.teacher, lq.batches(photos, 8),
                               lq.DistillSettings(**settings, feature_weight=5.0))
    assert with_features.first_loss > without.last_loss  # the features' error counts
    setup.teacher.tap([])
    with pytest.raises(lowbit.errors.UsageError, match="tap the same inner tensors"):
        lq.distill(setup.student, setup.teacher, lq.batches(photos, 8),
                   lq.DistillSettings(**settings))
    with pytest.raises(lowbit.errors.UsageError, match="feature_weight"):
        lq.DistillSettings(feature_weight=-1)
    assert lq.DistillSettings().feature_weight == 3
    tapped_setup = lq.prepare(f32, calibration_table=work / "model.calib", weight_bits=4)
    assert tapped_setup.student.taps == tapped_setup.teacher.taps == names
    setup.student.tap([])  # the export is the QDQ graph either way
    exported = lq.export(setup.student, tmp_path / "features.qat.onnx", with_features)
    assert [o.name for o in onnx.load(exported).graph.output] == setup.student.output_names
    kept = lowbit.deploy(exported, output=tmp_path / "kept.onnx", float_model=f32,
                         test_input=work / "x.npz")
    assert kept.steps == ("keep_scales",)


def test_a_dense_head_with_prelu_and_upsampling_trains_and_deploy_keeps_it(tmp_path):
    """MTCNN's PReLU and an FPN's nearest upsampling (as torch.onnx exports nn.Upsample):
    the student runs them quantized exactly as ONNX Runtime does, distillation learns back
    the ranges a too-narrow table clipped (on inputs it did not train on), and deploy
    keeps the export's scales."""
    nn = torch.nn
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.PReLU(8),
                         nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(8, 2, 1))
    f32 = lq.export_float(head, torch.zeros(1, 3, 16, 16), tmp_path / "head.f32.onnx")
    assert {"PRelu", "Resize"} <= {n.op_type for n in onnx.load(f32).graph.node}
    rng = np.random.default_rng(1)
    train = rng.normal(size=(64, 3, 16, 16)).astype(np.float32)
    held_out = rng.normal(size=(32, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "narrow.npz", input=train[:32] / 4)
    np.savez(tmp_path / "x.npz", input=held_out)
    lowbit.calibrate(f32, tmp_path / "narrow.npz", output=tmp_path / "narrow.calib",
                     method="minmax", progress=False)
    setup = lq.prepare(f32, calibration_table=tmp_path / "narrow.calib", output_dir=tmp_path)
    assert setup.student.taps  # inner tensors matched by default
    with torch.no_grad():
        start = setup.student({"input": torch.from_numpy(held_out)})[0].numpy()
    deployed = _run(setup.deployed, held_out)
    assert _sqnr(deployed, start) > 60  # the student is deploy's model
    before = _sqnr(_run(f32, held_out), deployed)
    report = lq.distill(setup.student, setup.teacher, lq.batches(train, 16),
                        lq.DistillSettings(steps=100, step_learning_rate=0.01,
                                           scale_learning_rate=3e-2, threads=1,
                                           log_every=20))
    setup.student.tap([])
    exported = lq.export(setup.student, tmp_path / "head.qat.onnx", report)
    after = _sqnr(_run(f32, held_out), _run(exported, held_out))
    assert after > before + 6, (before, after)
    kept = lowbit.deploy(exported, output=tmp_path / "kept.onnx", float_model=f32,
                         test_input=tmp_path / "x.npz")
    assert kept.steps == ("keep_scales",)


def test_a_token_mask_leaves_padding_tokens_out_of_the_loss(work):
    """With DistillSettings.token_mask, errors on tokens the mask zeroes (padding, which
    mean pooling ignores) do not count; an input the model lacks is a usage error."""
    from lowbit.qat.distillation import _relative_mse

    target = torch.ones(2, 4, 3)
    output = target.clone()
    output[:, 2:] += 5.0  # wrong only on the last two tokens
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.float32)
    assert float(_relative_mse(output, target, mask)) == 0.0
    assert float(_relative_mse(output, target)) > 1.0
    output[0, 0, 0] = 2.0  # an error on a kept token counts, relative to kept tokens only
    assert float(_relative_mse(output, target, mask)) == pytest.approx(1 / 12)
    attention = torch.ones(2, 5, 4, 4)  # not [N, T, ...] like the mask: plain mean
    assert float(_relative_mse(attention * 2, attention, mask)) == pytest.approx(1.0)
    setup = lq.prepare(work / "model.f32.onnx", calibration_table=work / "model.calib")
    with pytest.raises(lowbit.errors.UsageError, match="token_mask 'attention_mask'"):
        lq.distill(setup.student, setup.teacher, lq.batches(_inputs(work), 8),
                   lq.DistillSettings(steps=1, token_mask="attention_mask"))


def test_the_token_mask_is_found_by_name_unless_told_otherwise():
    from lowbit.qat.distillation import _mask_input, _token_mask

    bert = ["input_ids", "attention_mask", "token_type_ids"]
    assert _mask_input("auto", bert) == "attention_mask"
    assert _mask_input("auto", ["input"]) is None  # an image model: every pixel counts
    assert _mask_input(None, bert) is None
    assert _mask_input("padding", bert) == "padding"
    four_d = {"attention_mask": torch.ones(2, 1, 1, 8)}
    assert _token_mask(four_d, "attention_mask", strict=False) is None  # found, not used
    with pytest.raises(lowbit.errors.UsageError, match=r"must be \[batch, tokens\]"):
        _token_mask(four_d, "attention_mask")
