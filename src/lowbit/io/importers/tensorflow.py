"""TensorFlow SavedModel directories and frozen GraphDef ``.pb`` files, via tf2onnx.

    imported = import_model("saved_model_dir/")      # its serving signature
    imported = import_model("frozen.pb", input_names=["x"], output_names=["Identity"])

A SavedModel is a directory holding ``saved_model.pb`` (a path to that file inside
such a directory means the directory). Its ``serving_default`` signature (or its only
one) is converted with ``tf2onnx.convert.from_function``; the ONNX inputs and
outputs take the signature's names.

A frozen GraphDef is a protobuf whose top-level fields are GraphDef's (``node``,
``library``, ``versions``) — told from ONNX by the wire types alone, without
importing TensorFlow. It carries no signature, so ``input_names``/``output_names``
(CLI ``--inputs``/``--outputs``) are required; ``x`` means tensor ``x:0``. A missing
or unknown name is an error that lists the graph's placeholders or its final nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lowbit.errors import ModelError, UsageError
from lowbit.io.importers.base import (
    ImportedModel,
    Importer,
    ImportOptions,
    first_line,
    refuse_names,
    register,
)
from lowbit.io.importers.tf_common import (
    TF_MODULES,
    convert_with_tf2onnx,
    load_quietly,
    load_tensorflow,
)
from lowbit.io.sniff import LEN, VARINT, protobuf_fields

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_GRAPH_DEF_FIELDS = {1: LEN, 2: LEN, 3: VARINT, 4: LEN}   # node, library, version, versions
_NOT_OUTPUTS = {"NoOp", "Const", "Placeholder", "Assert", "SaveV2", "RestoreV2"}


def _saved_model_dir(path: Path) -> Path | None:
    if path.is_dir() and any((path / name).is_file() for name in SAVED_MODEL_FILES):
        return path
    if path.is_file() and path.name in SAVED_MODEL_FILES:
        return path.parent
    return None


def is_saved_model(path: Path) -> bool:
    return _saved_model_dir(path) is not None


def convert_saved_model(path: Path, options: ImportOptions) -> ImportedModel:
    refuse_names(options, "a SavedModel")
    directory = _saved_model_dir(path)
    assert directory is not None
    tf, _ = load_tensorflow()
    loaded = load_quietly(lambda: tf.saved_model.load(str(directory)),
                          f"{directory} is not a loadable SavedModel")
    name, function = _serving_signature(loaded, directory)
    args, specs = function.structured_input_signature
    if args:
        raise ModelError(f"{directory}: signature '{name}' takes positional inputs; lowbit "
                         "converts keyword signatures (as tf.saved_model.save writes them)")
    keys = sorted(specs)
    signature = [tf.TensorSpec(specs[k].shape, specs[k].dtype, name=k) for k in keys]

    @tf.function(input_signature=signature)
    def serve(*tensors: Any) -> Any:
        return function(**dict(zip(keys, tensors, strict=True)))

    return convert_with_tf2onnx(
        lambda tf2onnx, opset: tf2onnx.convert.from_function(
            serve, input_signature=signature, opset=opset), options,
        what=f"{directory} (signature '{name}')", source=str(directory),
        source_format="savedmodel", exporter="tf2onnx.from_function",
        notes=(f"SavedModel signature '{name}'",))


def _serving_signature(loaded: Any, directory: Path) -> tuple[str, Any]:
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if "serving_default" in signatures:
        return "serving_default", signatures["serving_default"]
    if len(signatures) == 1:
        return next(iter(signatures.items()))
    if not signatures:
        raise ModelError(f"{directory} has no signatures to convert; save it with "
                         "tf.saved_model.save(obj, dir, signatures=...) or model.export(dir)")
    raise ModelError(f"{directory} has no 'serving_default' signature and several others "
                     f"({', '.join(sorted(signatures))}); re-save with one as serving_default")


def is_graph_def(path: Path) -> bool:
    if not path.is_file() or path.name in SAVED_MODEL_FILES:
        return False
    found = protobuf_fields(path)
    if found.invalid or not found.fields or found.fields[0] != (1, LEN):
        return False
    return all(_GRAPH_DEF_FIELDS.get(number) == wire for number, wire in found.fields)


def convert_graph_def(path: Path, options: ImportOptions) -> ImportedModel:
    tf, _ = load_tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as err:
        raise ModelError(f"{path} is not a readable TensorFlow GraphDef: {first_line(err)}"
                         ) from err
    if not graph_def.node:
        raise ModelError(f"{path} is a GraphDef with no nodes")
    nodes = {node.name: node for node in graph_def.node}
    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    finals = _final_nodes(graph_def)
    inputs = _tensor_names(options.input_names, "{input_names}", path, nodes, placeholders,
                           "placeholders")
    outputs = _tensor_names(options.output_names, "{output_names}", path, nodes, finals,
                            "final nodes")
    return convert_with_tf2onnx(
        lambda tf2onnx, opset: tf2onnx.convert.from_graph_def(
            graph_def, input_names=inputs, output_names=outputs, opset=opset),
        options, what=str(path), source=str(path), source_format="graphdef",
        exporter="tf2onnx.from_graph_def",
        notes=(f"frozen GraphDef, inputs {', '.join(inputs)}, outputs {', '.join(outputs)}",))


def _final_nodes(graph_def: Any) -> list[str]:
    """Nodes no other node reads: the likely outputs."""
    consumed = {name.lstrip("^").split(":")[0] for node in graph_def.node for name in node.input}
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]


def _tensor_names(given: tuple[str, ...] | None, option: str, path: Path,
                  nodes: dict[str, Any], candidates: list[str], what: str) -> list[str]:
    listed = ", ".join(candidates[:12]) + (" …" if len(candidates) > 12 else "")
    if not given:
        raise UsageError(f"{path} is a frozen GraphDef: give {option} (its {what}: "
                         f"{listed or 'none found'})")
    names = []
    for name in given:
        node = name.split(":")[0]
        if node not in nodes:
            raise UsageError(f"{option} {name}: {path} has no node '{node}' (its {what}: "
                             f"{listed or 'none found'})")
        names.append(name if ":" in name else f"{name}:0")
    return names


register(Importer(name="savedmodel", label="TensorFlow SavedModel (directory)",
                  detect=is_saved_model, convert=convert_saved_model, extra="tf",
                  modules=TF_MODULES))
register(Importer(name="graphdef", label="frozen TensorFlow GraphDef (.pb)",
                  detect=is_graph_def, convert=convert_graph_def, extra="tf",
                  modules=TF_MODULES))
