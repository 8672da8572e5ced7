"""Target host: every ONNX Runtime optimization baked in, guarded by the NCHWc probe."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lowbit.api import package
from lowbit.runtime import create_session
from lowbit_run import bundle as fmt
from lowbit_run.cli import main
from lowbit_run.session import open_session
from tests.package_work import Work


@pytest.fixture(scope="module")
def host_bundle(work: Work, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package(work.f32, tmp_path_factory.mktemp("host") / "host.lowbit",
                   target_platform="host", test_input=work.x).path


def test_host_bundle_is_fixed_style_with_its_probe(host_bundle: Path, work: Work,
                                                   tmp_path) -> None:
    bundle = fmt.read_bundle(host_bundle)
    assert bundle.model.optimization_style == "fixed"
    assert {fmt.PROBE_MODEL, fmt.PROBE_DATA} <= set(bundle.members)
    assert bundle.report["validation"]["passed"]
    out = tmp_path / "y.npz"
    assert main([str(host_bundle), "--input", str(work.x), "--output", str(out)]) == 0
    x = np.load(work.x)["input"]
    session = create_session(work.f32)  # ORT's default: every optimization, this CPU
    expected = np.concatenate([session.run(None, {"input": x[i:i + 1]})[0]
                               for i in range(len(x))])
    np.testing.assert_allclose(np.load(out)["logits"], expected, rtol=1e-6, atol=1e-6)


def test_a_cpu_that_computes_the_probe_differently_is_refused(host_bundle: Path, tmp_path,
                                                              capsys) -> None:
    """As a CPU with another NCHWc block width would: the probe's output differs."""
    bundle = fmt.read_bundle(host_bundle)
    members = dict(bundle.members)
    with np.load(io.BytesIO(members[fmt.PROBE_DATA])) as data:
        x, y = data["x"], data["y"]
    stream = io.BytesIO()
    np.savez(stream, x=x, y=y[:, ::-1].copy())  # channels in another order
    members[fmt.PROBE_DATA] = stream.getvalue()
    other = tmp_path / "other.lowbit"
    other.write_bytes(fmt.bundle_bytes(members, bundle.model, created=bundle.created))
    with pytest.raises(fmt.BundleError, match="NCHWc weight layout"):
        open_session(fmt.read_bundle(other))
    np.savez(tmp_path / "x.npz", input=np.zeros((1, 3, 16, 16), np.float32))
    assert main([str(other), "--input", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--target-platform amd64" in err


def test_a_fixed_bundle_without_its_probe_is_refused(host_bundle: Path, tmp_path) -> None:
    bundle = fmt.read_bundle(host_bundle)
    members = {k: v for k, v in bundle.members.items() if k != fmt.PROBE_DATA}
    other = tmp_path / "noprobe.lowbit"
    other.write_bytes(fmt.bundle_bytes(members, bundle.model, created={}))
    with pytest.raises(fmt.BundleError, match="lacks the probe"):
        open_session(fmt.read_bundle(other))
    assert zipfile.is_zipfile(other)
