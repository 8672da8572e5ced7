"""quantize_embeddings remembers the tables it quantized by their bytes: the same table
gives the same int8 form, and any other table (other values, other shape) its own."""

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.passes import canonicalize
from lowbit.quantize.int8.embeddings import quantize_embeddings
from tests.quantize.int8.tiny_transformer import tiny_block


def _with_table(model: onnx.ModelProto, values: np.ndarray) -> onnx.ModelProto:
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    gather = next(n for n in changed.graph.node if n.name == "embed")
    index = next(i for i, t in enumerate(changed.graph.initializer)
                 if t.name == gather.input[0])
    changed.graph.initializer[index].CopyFrom(numpy_helper.from_array(values, gather.input[0]))
    return changed


def _stored(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.name.startswith("emb_")}  # the table "emb": emb_quantized, emb_scale, …


def _table(model: onnx.ModelProto) -> np.ndarray:
    gather = next(n for n in model.graph.node if n.name == "embed")
    return numpy_helper.to_array(next(t for t in model.graph.initializer
                                      if t.name == gather.input[0]))


def test_the_same_table_quantizes_alike_and_another_table_to_its_own_values():
    model = canonicalize(tiny_block())[0]
    values = _table(model)
    first, again = _with_table(model, values), _with_table(model, values)
    doubled = _with_table(model, values * 2)
    quantize_embeddings(first, min_elements=0)
    quantize_embeddings(doubled, min_elements=0)
    quantize_embeddings(again, min_elements=0)
    a, b, c = _stored(first), _stored(doubled), _stored(again)
    assert a.keys() == b.keys() == c.keys() and len(a) == 3  # int8, scale, zero point
    for name in a:
        np.testing.assert_array_equal(a[name], c[name])
    scale = next(name for name in a if a[name].dtype == np.float32)
    np.testing.assert_allclose(b[scale], 2 * a[scale], rtol=1e-6)  # not the remembered one


def test_a_table_with_the_same_bytes_in_another_shape_is_quantized_for_its_shape():
    model = canonicalize(tiny_block())[0]
    values = _table(model)  # [50, 32]: one scale per hidden channel
    vocab, hidden = values.shape
    reshaped = values.reshape(hidden, vocab).copy()
    square = _with_table(model, values)
    quantize_embeddings(square, min_elements=0)
    # The same bytes read as [32, 50] would need 50 scales, not the 32 remembered.
    other = _with_table(model, reshaped)
    quantize_embeddings(other, min_elements=0)
    scales = [v for v in _stored(other).values() if v.dtype == np.float32]
    assert [s.shape for s in scales] == [(vocab,)]
