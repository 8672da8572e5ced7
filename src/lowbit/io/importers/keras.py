"""Keras models: the ``.keras`` zip (Keras 3) and legacy HDF5 ``.h5``, via tf2onnx.

    imported = import_model("model.keras")
    imported = import_model("model.h5")
    imported.notes   # ("converted with tf2onnx (from_keras, opset 17)", "layout NHWC kept ...")

A ``.keras`` file is a zip holding ``config.json`` and ``model.weights.h5``; an HDF5
file starts with the 8-byte HDF5 signature. Both load with
``keras.models.load_model(compile=False)`` (no optimizer or custom losses needed) and
convert with ``tf2onnx.convert.from_keras``, whose ONNX inputs and outputs take the
Keras layer names. A weights-only HDF5 file (``save_weights``) holds no architecture
and is refused.
"""

from __future__ import annotations

from pathlib import Path

from lowbit.io.importers.base import ImportedModel, Importer, ImportOptions, refuse_names, register
from lowbit.io.importers.tf_common import (
    TF_MODULES,
    convert_with_tf2onnx,
    load_quietly,
    load_tensorflow,
)
from lowbit.io.sniff import head, zip_entries

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_keras_zip(path: Path) -> bool:
    entries = zip_entries(path)
    return entries is not None and {"config.json", "model.weights.h5"} <= entries


def is_hdf5(path: Path) -> bool:
    return head(path, len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def convert_keras(path: Path, options: ImportOptions) -> ImportedModel:
    refuse_names(options, "a Keras model")
    load_tensorflow()
    import keras

    hint = (" (an HDF5 file of weights only? it needs the architecture too: "
            "model.save('model.h5'), not save_weights)" if is_hdf5(path) else "")
    model = load_quietly(lambda: keras.models.load_model(str(path), compile=False),
                         f"{path} is not a loadable Keras model{hint}")
    kind = "Keras HDF5" if is_hdf5(path) else "Keras v3 (.keras)"
    return convert_with_tf2onnx(
        lambda tf2onnx, opset: tf2onnx.convert.from_keras(model, opset=opset), options,
        what=f"the Keras model {path}", source=str(path), source_format="keras",
        exporter="tf2onnx.from_keras",
        notes=(f"{kind} model '{model.name}', Keras {keras.__version__}",))


register(Importer(name="keras", label="Keras (.keras)", detect=is_keras_zip,
                  convert=convert_keras, extra="tf", modules=(*TF_MODULES, "keras")))
register(Importer(name="keras-h5", label="Keras HDF5 (.h5)", detect=is_hdf5,
                  convert=convert_keras, extra="tf", modules=(*TF_MODULES, "keras")))
