"""lowbit.classify: the top classes of one image."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lowbit import arguments
from lowbit.analysis.classify import (
    Classification,
    classify_image,
    draw_predictions,
    read_class_names,
)
from lowbit.data import (
    ImageOptions,
)
from lowbit.errors import UsageError
from lowbit.io.meta import (
    find_meta,
    meta_path,
    resolve_image_options,
)
from lowbit.io.model import load_model
from lowbit.outputs import check_distinct
from lowbit.runtime.backends import check_backend

log = logging.getLogger(__name__)


def classify(
    model: str | Path,
    image: str | Path,
    labels: str | Path | Sequence[str] | None = None,
    top: int = 5,
    *,
    output: str | Path | None = None,
    image_options: ImageOptions | None = None,
    backend: str = "ort",
    threads: int | None = None,
    output_name: str | None = None,
) -> Classification:
    """The ``top`` classes of one image (lowbit.analysis.classify), for F32 and quantized
    models alike, preprocessed with ``image_options`` or as the model's meta file says.

    ``labels``: a text file of one class name per line, or the names themselves;
    default ImageNet-1k's for a 1000-score output. With ``output``, the image is also
    written there with the predictions drawn on it.
    """
    model, image = arguments.path(model, "model"), arguments.path(image, "image")
    if labels is not None and not isinstance(labels, str | os.PathLike):
        labels = arguments.names(labels, "labels")
    elif labels is not None:
        labels = arguments.path(labels, "labels")
    top, threads = arguments.count(top, "top"), arguments.threads(threads)
    output = arguments.optional_path(output, "output")
    output_name = arguments.optional_text(output_name, "output_name")
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    check_backend(arguments.text(backend, "backend")).require()
    check_distinct({"{model}": model, "{image}": image,
                    "{labels}": labels if isinstance(labels, Path) else None},
                   {"{output}": output})
    proto = load_model(model, check=False)
    options = resolve_image_options(model, image_options, proto)
    if options is None:
        found = find_meta(model)
        why = (f"its meta file {found} records no preprocessing" if found is not None else
               f"it has no meta file ({meta_path(model).name})")
        raise UsageError(f"cannot preprocess an image for {model}: {why} and no image "
                         f"options were given; give {{image_options}}, or run lowbit "
                         f"transform with them")
    names: Sequence[str] | None
    if isinstance(labels, str | Path):
        names, source = read_class_names(labels), Path(labels).name
    else:
        names, source = labels, ""
    result = classify_image(model, image, image_options=options, labels=names,
                            labels_source=source, top=top, backend=backend, threads=threads,
                            output_name=output_name)
    if output is not None:
        result = replace(result, drawn=draw_predictions(image, result, output))
    return result
