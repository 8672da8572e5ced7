"""The bundle round trip: what package writes, lowbit-run's reader reads back, checked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.api import package
from lowbit.io.meta import read_meta
from lowbit_run import bundle as fmt
from lowbit_run.session import open_session
from tests.package_work import LABELS, Work


def test_a_bundle_holds_every_member_with_its_checksum(work: Work) -> None:
    with zipfile.ZipFile(work.int8_bundle) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read(fmt.MANIFEST))
        assert names[0] == fmt.MANIFEST
        assert set(names) == {fmt.MANIFEST, *manifest["members"]}
        for name, entry in manifest["members"].items():
            data = archive.read(name)
            assert entry == {"bytes": len(data), "sha256": fmt.sha256(data)}
    assert manifest["format"] == "lowbit bundle v1"
    assert set(manifest["members"]) == {"model.ort", "meta.json", "report.json", "labels.txt"}
    assert manifest["model"]["optimization_style"] == "runtime"
    assert manifest["created"]["lowbit"]


def test_round_trip_gives_back_the_meta_report_labels_and_model(work: Work) -> None:
    bundle = fmt.read_bundle(work.int8_bundle)
    meta = read_meta(work.f32.with_name("model.meta.json"))
    assert bundle.meta["inputs"] == [{"name": "input", "shape": ["N", 3, 16, 16],
                                      "type": "float32"}]
    assert bundle.meta["preprocessing"]["mean"] == list(meta.preprocessing.mean)
    assert bundle.meta["preprocessing"]["resize"] == [20]
    assert bundle.labels == LABELS
    report = bundle.report
    assert report["precision"] == "INT8"
    assert report["graph_precision"] == "INT8 (QDQ)"
    assert report["validation"]["passed"] is True
    assert "ref_outputs.npz" in report["validation"]["against"]  # deploy's reference
    assert report["validation"]["conversion_max_abs_error"] == 0.0
    assert "int8" in report["deploy"]["steps"]
    assert report["source"]["bytes"] == work.int8.stat().st_size
    assert bundle.model_bytes[4:8] == b"ORTM"  # the ORT format's flatbuffer identifier


def test_the_same_members_give_the_same_bytes() -> None:
    entry = fmt.ModelEntry("amd64", "runtime", "1.0")
    members = {"model.ort": b"x" * 10, "meta.json": b"{}", "report.json": b"{}"}
    assert fmt.bundle_bytes(members, entry, created={}) == \
        fmt.bundle_bytes(dict(reversed(members.items())), entry, created={})


def test_the_writer_refuses_a_bundle_without_its_members() -> None:
    with pytest.raises(fmt.BundleError, match="meta.json"):
        fmt.bundle_bytes({"model.ort": b"", "report.json": b"{}"},
                         fmt.ModelEntry("amd64", "runtime", "1.0"), created={})


def test_the_bundle_runs_the_fused_integer_kernels(work: Work) -> None:
    """Replaying the saved runtime optimizations is what makes QLinearConv/QGemm appear:
    the profile of the bundle's session names them, and the float Conv is gone."""
    import onnxruntime as ort

    from lowbit_run.session import session_options

    bundle = fmt.read_bundle(work.int8_bundle)
    options = session_options("runtime", threads=1)
    options.enable_profiling = True
    options.profile_file_prefix = str(work.root / "profile")
    session = ort.InferenceSession(bundle.model_bytes, options,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"input": np.zeros((1, 3, 16, 16), np.float32)})
    events = json.loads(Path(session.end_profiling()).read_text())
    ops = {e["args"].get("op_name") for e in events if e.get("cat") == "Node"}
    assert "QLinearConv" in ops
    assert "Conv" not in ops and "DequantizeLinear" not in ops


def test_f32_bundle_validated_against_the_float_model_itself(work: Work) -> None:
    report = fmt.read_bundle(work.f32_bundle).report
    assert report["precision"] == "F32"
    assert report["validation"]["against"] == "the float model itself"
    assert report["validation"]["conversion_max_abs_error"] < 1e-5


def test_a_model_without_a_meta_file_is_described_from_its_graph(work: Work, tmp_path) -> None:
    model = tmp_path / "bare.onnx"
    onnx.save(onnx.load(work.f32), model)
    result = package(model, tmp_path / "bare.lowbit")
    bundle = fmt.read_bundle(result.path)
    assert bundle.meta["preprocessing"] is None
    assert bundle.meta["outputs"][0]["name"] == "logits"
    assert bundle.labels is None  # 10 scores: no ImageNet names
    assert result.validation is None and "not validated" in result.notes[0]
    open_session(bundle)


def test_arm_bundles_allow_int8_activations(work: Work, tmp_path) -> None:
    result = package(work.int8, tmp_path / "arm.lowbit", target_platform="arm")
    bundle = fmt.read_bundle(result.path)
    assert bundle.model.target_platform == "arm" and result.passed
    assert bundle.report["conversion"]["target_platform"] == "arm"

