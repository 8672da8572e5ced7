"""Hostile versions of lowbit's input files, drawn by hypothesis.

    data = draw(onnx_mutations(model_bytes))      # (what, bytes of a broken model)
    data = draw(npz_mutations())                  # (what, bytes of a broken data set)
    text = draw(table_mutations(table_text))      # (what, a broken calibration table)

ONNX: fields deleted (inputs, outputs, initializers, node inputs, attributes), dims and
dtypes changed (zero, negative, 2**62, unknown types), graph edges rewired (dangling
names, cycles, duplicate producers), opsets and IR versions out of range, initializers
moved to external data that is missing, outside the model's folder or shorter than
claimed, and the bytes truncated or flipped. npz: headers announcing other shapes or
10**12 samples, object/complex/string/structured dtypes, Fortran order, compression,
missing keys, zero samples, NaN, truncation, random bytes. Tables and qtables: numbers
that do not parse or are not finite, missing and extra columns, unknown names, broken
sections; recipes: unknown keys, wrong types, invalid TOML.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto


class Mutated(bytes):
    """A mutated file's bytes that print as their size (hypothesis prints every draw)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"

DIMS = [0, -1, 1, 2, 3, 17, 2**31, 2**62]
ELEM_TYPES = [0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 17, 23, 99]
OP_TYPES = ["Foo", "", "Conv", "Relu", "If", "Loop", "QuantizeLinear", "MatMulNBits", "Gemm"]
NAMES = ["", "missing", "input", "logits", "c0", "x" * 2000]
EXTERNAL = ["missing.bin", "../../../etc/passwd", "/etc/passwd", "x" * 300, "model.calib",
            "."]


@st.composite
def onnx_mutations(draw: st.DrawFn, model_bytes: bytes) -> tuple[str, Mutated]:
    """(what was done, the model's bytes after it)."""
    kind = draw(st.sampled_from(["drop_node_input", "rewire", "drop_initializer",
                                 "drop_graph_io", "op_type", "dims", "dtype", "init_shape",
                                 "external", "opset", "ir_version", "attribute", "duplicate",
                                 "truncate", "bitflip", "empty"]))
    if kind == "truncate":
        return kind, Mutated(model_bytes[:draw(st.integers(0, len(model_bytes) - 1))])
    if kind == "empty":
        return kind, Mutated(b"")
    if kind == "bitflip":
        data = bytearray(model_bytes)
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        return kind, Mutated(bytes(data))
    model = onnx.ModelProto.FromString(model_bytes)
    graph = model.graph
    nodes = list(graph.node)
    node = graph.node[draw(st.integers(0, len(nodes) - 1))]
    if kind == "drop_node_input" and node.input:
        del node.input[draw(st.integers(0, len(node.input) - 1))]
    elif kind == "rewire" and node.input:
        tensors = [o for n in nodes for o in n.output] + NAMES
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(tensors))
    elif kind == "drop_initializer" and graph.initializer:
        del graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
    elif kind == "drop_graph_io":
        field = draw(st.sampled_from(["input", "output", "value_info"]))
        values = getattr(graph, field)
        if values:
            del values[draw(st.integers(0, len(values) - 1))]
    elif kind == "op_type":
        node.op_type = draw(st.sampled_from(OP_TYPES))
    elif kind == "dims":
        value = draw(st.sampled_from([*graph.input, *graph.output, *graph.value_info]))
        dims = value.type.tensor_type.shape.dim
        action = draw(st.sampled_from(["set", "param", "add", "remove"]))
        if action == "add" or not dims:
            dims.add().dim_value = draw(st.sampled_from(DIMS[:6]))
        elif action == "remove":
            del dims[draw(st.integers(0, len(dims) - 1))]
        elif action == "param":
            dims[draw(st.integers(0, len(dims) - 1))].dim_param = draw(st.sampled_from(NAMES))
        else:
            dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from(DIMS))
    elif kind == "dtype":
        target = draw(st.sampled_from(["io", "initializer"]))
        if target == "initializer" and graph.initializer:
            init = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
            init.data_type = draw(st.sampled_from(ELEM_TYPES))
        else:
            value = draw(st.sampled_from([*graph.input, *graph.output]))
            value.type.tensor_type.elem_type = draw(st.sampled_from(ELEM_TYPES))
    elif kind == "init_shape" and graph.initializer:
        init = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        init.dims[:] = draw(st.lists(st.sampled_from(DIMS), max_size=5))
    elif kind == "external" and graph.initializer:
        init = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        entry = init.external_data.add()
        entry.key, entry.value = "location", draw(st.sampled_from(EXTERNAL))
        for key in draw(st.lists(st.sampled_from(["offset", "length", "checksum"]),
                                 max_size=2, unique=True)):
            extra = init.external_data.add()
            extra.key = key
            extra.value = draw(st.sampled_from(["0", "-1", "1", str(2**62), "abc"]))
    elif kind == "opset":
        model.opset_import[0].version = draw(st.sampled_from([0, 1, 7, 10, 12, 22, 99, 10**6]))
        if draw(st.booleans()):
            model.opset_import[0].domain = draw(st.sampled_from(["x", "ai.onnx.ml", "com.x"]))
    elif kind == "ir_version":
        model.ir_version = draw(st.sampled_from([0, 1, 3, 11, 99, 2**40]))
    elif kind == "attribute" and node.attribute:
        attribute = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        if draw(st.booleans()):
            node.attribute.remove(attribute)
        else:
            attribute.ints[:] = draw(st.lists(st.sampled_from([-1, 0, 1, 2**31]), max_size=4))
    elif kind == "duplicate" and len(nodes) > 1:
        other = graph.node[draw(st.integers(0, len(nodes) - 1))]
        if other.output and node.output:
            other.output[0] = node.output[0]
    return kind, Mutated(model.SerializeToString())


def _npy(header: dict[str, object], payload: bytes) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + payload


@st.composite
def npz_mutations(draw: st.DrawFn, name: str = "input",
                  shape: tuple[int, ...] = (3, 16, 16)) -> tuple[str, Mutated]:
    """(what was done, the bytes of a broken data set for input ``name``)."""
    kind = draw(st.sampled_from(["claims", "dtype", "fortran", "rank", "missing_key",
                                 "zero_samples", "nan", "labels", "truncate", "garbage",
                                 "empty", "not_npy", "good"]))
    samples = draw(st.sampled_from([1, 2, 5]))
    values = np.random.default_rng(0).uniform(0, 1, (samples, *shape)).astype(np.float32)
    members: dict[str, bytes] = {}
    if kind == "claims":
        claimed = draw(st.sampled_from([(10**12, *shape), (samples * 2, *shape),
                                        (samples, 3, 16, 17), (2**62,), ()]))
        members[name] = _npy({"descr": "<f4", "fortran_order": False, "shape": claimed},
                             values.tobytes())
    elif kind == "dtype":
        descr = draw(st.sampled_from(["|O", "<c8", "<U3", "|S2", "<f8", "|u1", "|b1", ">f4",
                                      "<f2", "<i8", "|V4", [("a", "<f4")]]))
        dtype = np.dtype(descr)
        payload = np.zeros(samples * int(np.prod(shape)), dtype).tobytes() \
            if not dtype.hasobject else b"\x80\x04N."
        members[name] = _npy({"descr": np.lib.format.dtype_to_descr(dtype),
                              "fortran_order": False, "shape": (samples, *shape)}, payload)
    elif kind == "fortran":
        members[name] = _npy({"descr": "<f4", "fortran_order": True,
                              "shape": (samples, *shape)}, values.tobytes(order="F"))
    elif kind == "rank":
        other = draw(st.sampled_from([(samples,), (samples, 3), (samples, 1, 3, 16, 16, 1)]))
        members[name] = _npy({"descr": "<f4", "fortran_order": False, "shape": other},
                             np.zeros(other, np.float32).tobytes())
    elif kind == "missing_key":
        members["other"] = _npy({"descr": "<f4", "fortran_order": False,
                                 "shape": values.shape}, values.tobytes())
    elif kind == "zero_samples":
        members[name] = _npy({"descr": "<f4", "fortran_order": False, "shape": (0, *shape)}, b"")
    elif kind == "nan":
        values.reshape(-1)[draw(st.integers(0, values.size - 1))] = \
            draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38]))
        members[name] = _npy({"descr": "<f4", "fortran_order": False,
                              "shape": values.shape}, values.tobytes())
    elif kind == "labels":
        members[name] = _npy({"descr": "<f4", "fortran_order": False,
                              "shape": values.shape}, values.tobytes())
        labels = draw(st.sampled_from([np.arange(samples + 3), np.full(samples, np.nan),
                                       np.full(samples, -5), np.full((samples, 2), 1),
                                       np.array(["a"] * samples)]))
        members["label"] = _npy({"descr": np.lib.format.dtype_to_descr(labels.dtype),
                                 "fortran_order": False, "shape": labels.shape},
                                labels.tobytes())
    elif kind in ("truncate", "good"):
        members[name] = _npy({"descr": "<f4", "fortran_order": False,
                              "shape": values.shape}, values.tobytes())
    elif kind == "garbage":
        return kind, Mutated(draw(st.binary(min_size=1, max_size=200)))
    elif kind == "empty":
        return kind, Mutated(b"")
    elif kind == "not_npy":
        members[name] = b"hello"
    compress = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", compression=compress) as archive:
        for key, data in members.items():
            archive.writestr(f"{key}.npy", data)
    data = stream.getvalue()
    if kind == "truncate":
        data = data[:draw(st.integers(1, len(data) - 1))]
    return f"{kind} ({'deflated' if compress else 'stored'})", Mutated(data)


BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e300", "1e-300", "abc", "", "1e400",
               "0x10", "9" * 400]


@st.composite
def table_mutations(draw: st.DrawFn, text: str) -> tuple[str, str]:
    """(what was done, a calibration table's text after it)."""
    lines = text.splitlines()
    body = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    kind = draw(st.sampled_from(["number", "columns", "name", "header", "section", "empty",
                                 "binary", "duplicate", "long"]))
    if kind == "number" and body:
        i = draw(st.sampled_from(body))
        parts = lines[i].split()
        parts[draw(st.integers(1, len(parts) - 1))] = draw(st.sampled_from(BAD_NUMBERS))
        lines[i] = " ".join(parts)
    elif kind == "columns" and body:
        i = draw(st.sampled_from(body))
        parts = lines[i].split()
        lines[i] = " ".join(parts[:draw(st.integers(0, len(parts) - 1))]) \
            if draw(st.booleans()) else lines[i] + " 1 2 3"
    elif kind == "name" and body:
        i = draw(st.sampled_from(body))
        parts = lines[i].split()
        parts[0] = draw(st.sampled_from(["missing_tensor", "input", "#", "\u00e9"]))
        lines[i] = " ".join(parts)
    elif kind == "header":
        lines[0] = draw(st.sampled_from(["# lowbit calibration table v99", "", "garbage",
                                         "# bins: -5", "# samples: abc"]))
    elif kind == "section":
        lines.append(draw(st.sampled_from(["#lowbit_input_means", "#lowbit_channel_ranges",
                                           "#lowbit_nope"])))
        lines.append(draw(st.sampled_from(["fc 3 1 2 3", "fc 2,2 1", "x", "fc 10 " +
                                           " ".join(["nan"] * 10)])))
    elif kind == "empty":
        return kind, ""
    elif kind == "binary":
        return kind, "\x00\x01PK\x03\x04\ufffd\u00e9"
    elif kind == "duplicate" and body:
        lines.append(lines[draw(st.sampled_from(body))].replace("1", "7"))
    elif kind == "long":
        lines.append("t " + " ".join(["1"] * 20000))
    return kind, "\n".join(lines) + "\n"


@st.composite
def qtable_mutations(draw: st.DrawFn) -> tuple[str, str]:
    op = draw(st.sampled_from(["fc", "stem_conv", "conv1", "missing_op", "", "#"]))
    precision = draw(st.sampled_from(["F32", "F16", "BF16", "INT8", "INT4", "f32", "", "x"]))
    extra = draw(st.sampled_from(["", " 1", " F32"]))
    header = draw(st.sampled_from(["# lowbit qtable v1\n", "", "# lowbit qtable v9\n"]))
    return "qtable", f"{header}{op} {precision}{extra}\n"


@st.composite
def recipe_mutations(draw: st.DrawFn) -> tuple[str, str]:
    lines = draw(st.lists(st.sampled_from([
        'precision = "INT8"', "precision = 8", 'precision = "INT4"', "[int8]",
        'activation = "uint8"', "activation = 1", "per_channel = 3", "[smooth]",
        "alpha = 2.0", 'alpha = "auto"', "[nope]", "x = 1", "[adaround]", "iterations = -1",
        "iterations = 100000000000000000000", "[validation]", 'tolerance = "2,1"',
        "tolerance = [0.9]", 'calibration_table = ""', "= broken", "[[int8]]",
        'input_shapes = "garbage"', "input_shapes = [[0]]"]), max_size=6))
    return "recipe", "\n".join(lines) + "\n"
