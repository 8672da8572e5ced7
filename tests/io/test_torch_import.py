"""PyTorch sources: a module through both exporters, a ScriptModule, a TorchScript file.

Each exported graph runs on ONNX Runtime and must give torch's outputs within float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.errors import UsageError
from lowbit.io.importers import import_model
from lowbit.runtime import create_session

torch = pytest.importorskip("torch")


class SmallNet(torch.nn.Module):
    """Conv-BN-ReLU, a residual Conv, global pooling and a Linear head: NCHW [1,3,16,16]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)
        with torch.no_grad():   # non-trivial running statistics, so folding BN matters
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(image)))
        y = torch.relu(y + self.conv2(y))
        return self.fc(y.mean(dim=(2, 3)))


class Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export cannot capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


def _example() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _assert_matches_torch(model: onnx.ModelProto, module: torch.nn.Module,
                          x: torch.Tensor) -> None:
    onnx.checker.check_model(model, full_check=True)
    session = create_session(model)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = module.eval()(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def net() -> SmallNet:
    return SmallNet().eval()


def test_module_with_the_torchscript_exporter(net: SmallNet) -> None:
    imported = import_model(net, example=_example(), exporter="torchscript",
                            output_names=["logits"])
    assert imported.source_format == "torch-module"
    assert imported.exporter == "torch.onnx torchscript"
    assert imported.opset == 17
    assert imported.notes[0].startswith("exported with torch.onnx (TorchScript exporter, "
                                        "opset 17)")
    assert [i.name for i in imported.model.graph.input] == ["image"]   # forward's argument
    assert [o.name for o in imported.model.graph.output] == ["logits"]
    _assert_matches_torch(imported.model, net, _example())


def test_auto_exports_a_module_with_dynamo(net: SmallNet) -> None:
    net.train()   # exported in eval mode, and left as it was found
    imported = import_model(net, example=_example())
    assert net.training
    assert imported.exporter == "torch.onnx dynamo"
    assert imported.opset == 18   # dynamo's lowest; above the target, so kept
    assert "dynamo exporter, opset 18" in imported.notes[0]
    assert "ONNX opset 18 kept (above lowbit's target 17)" in imported.notes
    _assert_matches_torch(imported.model, net, _example())


def test_auto_falls_back_to_torchscript_when_torch_export_fails() -> None:
    x = torch.ones(2, 3)
    imported = import_model(Branchy(), example=x)
    assert imported.exporter == "torch.onnx torchscript"
    assert any("torch.export could not capture Branchy" in n and "fell back" in n
               for n in imported.notes)
    _assert_matches_torch(imported.model, Branchy(), x)


def test_script_module_object_uses_the_torchscript_exporter(net: SmallNet) -> None:
    scripted = torch.jit.trace(net, _example())
    imported = import_model(scripted, example=_example())
    assert imported.source_format == "torchscript"
    assert imported.exporter == "torch.onnx torchscript"
    _assert_matches_torch(imported.model, net, _example())
    with pytest.raises(UsageError, match="torch.export does not capture TorchScript"):
        import_model(scripted, example=_example(), exporter="dynamo")


def test_torchscript_file_needs_and_uses_input_shapes(net: SmallNet, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.jit.trace(net, _example()).save(str(path))
    with pytest.raises(UsageError, match=r"TorchScript file: exporting it needs the input "
                                         r"shapes, e.g. input_shapes \[\[1,3,224,224\]\]"):
        import_model(path)
    imported = import_model(path, input_shapes=[(1, 3, 16, 16)])
    assert imported.source_format == "torchscript"
    dims = [d.dim_value for d in imported.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]
    _assert_matches_torch(imported.model, net, _example())


def test_module_errors_are_usage_errors(net: SmallNet) -> None:
    with pytest.raises(UsageError, match="needs example="):
        import_model(net)
    with pytest.raises(UsageError, match="must be a tensor or a tuple of tensors"):
        import_model(net, example="an image")
    with pytest.raises(UsageError, match="input_names names 2 input"):
        import_model(net, example=_example(), input_names=["a", "b"], exporter="torchscript")


def test_cli_transform_of_a_torchscript_file_then_int8(net: SmallNet, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    import lowbit
    from lowbit.analysis.metrics import cosine
    from lowbit.cli.main import main

    torch.jit.trace(net, _example()).save(str(tmp_path / "net.pt"))
    f32 = tmp_path / "work" / "net.f32.onnx"
    code = main(["transform", str(tmp_path / "net.pt"), "-o", str(f32),
                 "--input-shapes", "[[1,3,16,16]]"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "TorchScript exporter, opset 17" in printed
    model = onnx.load(f32)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}

    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", image=rng.normal(size=(16, 3, 16, 16)).astype(np.float32))
    lowbit.calibrate(f32, tmp_path / "calib.npz", method="minmax",
                     output=tmp_path / "work" / "net.calib", progress=False)
    result = lowbit.deploy(f32, quantize="INT8", calibration_table=tmp_path / "work" / "net.calib",
                           output=tmp_path / "work" / "net.int8.onnx")
    int8 = onnx.load(result.path)
    assert "QuantizeLinear" in {n.op_type for n in int8.graph.node}
    x = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    float_out = create_session(f32).run(None, {"image": x})[0]
    int8_out = create_session(result.path).run(None, {"image": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(float_out, net(torch.from_numpy(x)).numpy(), rtol=1e-4,
                                   atol=1e-5)
    assert cosine(int8_out, float_out) >= 0.99


def test_python_transform_of_a_module_object(net: SmallNet, tmp_path: Path) -> None:
    import json

    import lowbit

    out = tmp_path / "net.f32.onnx"
    result = lowbit.transform(net, out, example=_example(), exporter="torchscript")
    assert result.path == out
    assert any("TorchScript exporter" in note for note in result.imported_notes)
    _assert_matches_torch(onnx.load(out), net, _example())
    source = json.loads((tmp_path / "net.meta.json").read_text())["source"]
    assert source["path"] is None   # an object in memory, not a file
    assert source["format"] == "torch-module"
    assert source["exporter"] == "torch.onnx torchscript"
