"""lowbit.transform: import a model, clean it up, record its preprocessing and reference outputs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit import arguments
from lowbit.api.common import check_model, run_bytes, run_samples
from lowbit.data import (
    Dataset,
    ImageFolderDataset,
    ImageOptions,
    open_dataset,
    save_npz_dataset,
)
from lowbit.data.fuse_preprocess import fuse_preprocess as fuse_preprocess_graph
from lowbit.data.images import is_image_file
from lowbit.data.samples import finite_samples
from lowbit.errors import DatasetError, ModelError, UsageError
from lowbit.io.importers import import_model
from lowbit.io.meta import (
    ModelMeta,
    describe_model,
    find_meta,
    load_meta_for,
    meta_path,
    write_meta,
)
from lowbit.io.model import input_specs, readable_model, save_model
from lowbit.outputs import check_distinct
from lowbit.passes import CanonicalizeReport, OptimizeResult, canonicalize, resolve_passes
from lowbit.passes import optimize as optimize_graph
from lowbit.passes.canonical import Shapes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransformResult:
    """What transform wrote: the model, its meta file and, with a test input, the exact
    inputs fed (``reference_input_path``) and the outputs they gave (``reference_path``)."""

    path: Path
    report: CanonicalizeReport
    reference_path: Path | None = None
    meta_path: Path | None = None
    meta: ModelMeta | None = None
    reference_input_path: Path | None = None
    fused_ops: tuple[str, ...] = ()  # the ops --fuse-preprocess put in front of the graph
    imported_notes: tuple[str, ...] = ()
    optimized: OptimizeResult | None = None  # the graph passes run, with node counts


def transform(
    model: str | Path | Any,
    output: str | Path,
    *,
    example: Any = None,
    input_shapes: Shapes | None = None,
    test_input: str | Path | None = None,
    reference_output: str | Path | None = None,
    image_options: ImageOptions | None = None,
    fuse_preprocess: bool = False,
    fused_layout: str = "nhwc",
    reference_input: str | Path | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    optimize: bool = True,
    passes: Sequence[str] | str | None = None,
) -> TransformResult:
    """Import a model (ONNX, PyTorch, TensorFlow: lowbit.io.importers), clean it up (see
    lowbit.passes.canonicalize), run the graph passes (``passes``, default
    lowbit.passes.DEFAULT_PASSES; none when ``optimize`` is False; ``result.optimized``
    has the node counts of each), and write it with its meta file (lowbit.io.meta:
    inputs, outputs, source and the preprocessing in ``image_options``).

    ``fuse_preprocess`` puts mean/scale, the channel order and the layout change into
    the graph (lowbit.data.fuse_preprocess): the model then takes uint8 pixels in
    ``fused_layout``. ``test_input`` (an image file, preprocessed with ``image_options``
    into one sample, or a data set) is run through the written model; the tensors fed go
    to ``reference_input`` and the outputs to ``reference_output`` (default
    ref_inputs.npz / ref_outputs.npz beside ``output``). Everything is checked before
    anything is written.

    ``model`` may also be a torch ``nn.Module`` or ``ScriptModule`` object, exported on
    ``example`` (a tensor or tuple of tensors; see lowbit.io.importers.pytorch).
    """
    torch = sys.modules.get("torch")  # a module object needs torch imported already
    if torch is None or not isinstance(model, torch.nn.Module):
        model = arguments.path(model, "model")
    output = arguments.path(output, "output")
    input_shapes = arguments.shapes(input_shapes)
    test_input, reference_output, reference_input = (
        arguments.optional_path(value, name) for name, value in (
            ("test_input", test_input), ("reference_output", reference_output),
            ("reference_input", reference_input)))
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    arguments.flag(fuse_preprocess, "fuse_preprocess")
    arguments.flag(optimize, "optimize")
    arguments.choice(fused_layout, ("nhwc", "nchw"), "fused_layout")
    input_names = arguments.names(input_names, "input_names")
    output_names = arguments.names(output_names, "output_names")
    if passes is not None and not isinstance(passes, str):
        arguments.names(passes, "passes")
    chosen = resolve_passes(passes) if optimize else []  # an unknown name fails first
    _check_outputs(model, output, test_input, reference_input, reference_output)
    imported = import_model(model, example=example, input_names=input_names,
                            output_names=output_names, input_shapes=input_shapes, opset=opset,
                            exporter=exporter)
    source = model if isinstance(model, str | Path) else None  # a module object: no file
    where = str(model) if source is not None else f"the {type(model).__name__} module"
    canonical, report = canonicalize(imported.model, input_shapes=input_shapes)
    if input_shapes:
        _check_runs_at_shapes(canonical, input_shapes)
    optimized = None
    if optimize:
        optimized = optimize_graph(canonical, [p.name for p in chosen])
        canonical = optimized.model
    check_model(canonical, where)
    test_path = Path(test_input) if test_input is not None else None
    image_test = test_path is not None and test_path.is_file() and is_image_file(test_path)
    preprocessing = None
    carried = _carried_meta(source, image_options, fuse_preprocess)
    if carried is not None and fuse_preprocess:  # fuse what the meta file records
        image_options, carried = carried.preprocessing, None
    if carried is not None:  # a model lowbit wrote, transformed again: keep what it says
        preprocessing = carried.preprocessing
    elif image_options is not None or fuse_preprocess or image_test:
        preprocessing = _preprocessing_for(canonical, image_options, where)
    final = canonical
    fused_ops: tuple[str, ...] = ()
    if carried is not None and carried.fused:
        fuse_preprocess, fused_layout = True, carried.fused_layout or fused_layout
        fused_ops = ("already in the graph (its meta file says so)",)
    elif fuse_preprocess:
        assert preprocessing is not None
        fused = fuse_preprocess_graph(canonical, preprocessing, layout=fused_layout)
        final, _ = canonicalize(fused.model)
        fused_ops = fused.added
        check_model(final, "the model with fused preprocessing")
    meta = describe_model(final, preprocessing=preprocessing, fused=fuse_preprocess,
                          fused_layout=fused_layout if fuse_preprocess else None,
                          source=source, source_format=imported.source_format,
                          exporter=imported.exporter, notes=imported.notes)
    path = Path(output)
    fed = reference = None
    if test_path is not None:
        samples = _test_samples(final, test_path, meta.feed_options(), image_test)
        fed = _stack_samples(samples)
        reference = run_samples(final, samples)
    save_model(final, path, check=readable_model)
    written_meta = write_meta(meta, meta_path(path))
    reference_path = reference_input_path = None
    if fed is not None and reference is not None:
        reference_input_path, reference_path = _reference_paths(path, reference_input,
                                                                reference_output)
        save_npz_dataset(reference_input_path, fed)
        save_npz_dataset(reference_path, reference)
    notes = imported.notes
    if carried is not None and source is not None:
        notes = (*notes, f"preprocessing carried over from {find_meta(source)}")
    return TransformResult(path, report, reference_path, written_meta, meta,
                           reference_input_path, fused_ops, tuple(notes), optimized)


def _reference_paths(output: Path, reference_input: str | Path | None,
                     reference_output: str | Path | None) -> tuple[Path, Path]:
    """Where the inputs fed and the outputs they gave go (default: beside ``output``)."""
    return (Path(reference_input) if reference_input else output.parent / "ref_inputs.npz",
            Path(reference_output) if reference_output else output.parent / "ref_outputs.npz")


def _check_outputs(model: object, output: str | Path, test_input: str | Path | None,
                   reference_input: str | Path | None,
                   reference_output: str | Path | None) -> None:
    """No file transform writes may be one it reads, or another it writes."""
    written: dict[str, str | Path | None] = {"{output}": output,
                                             "{output}'s meta file": meta_path(output)}
    if test_input is not None:
        fed, outputs = _reference_paths(Path(output), reference_input, reference_output)
        written["{reference_input}" if reference_input else
                "{reference_input} (default: beside {output})"] = fed
        written["{reference_output}" if reference_output else
                "{reference_output} (default: beside {output})"] = outputs
    source = model if isinstance(model, str | Path) else None
    check_distinct({"{model}": source, "{test_input}": test_input}, written)


def _carried_meta(source: str | Path | None, given: ImageOptions | None,
                  fuse: bool) -> ModelMeta | None:
    """The meta file beside an ONNX ``source`` when it records preprocessing and the
    user gave none: transforming lowbit's own output again keeps it (and a graph that
    already has its preprocessing fused is not fused twice)."""
    if source is None or given is not None or not Path(source).is_file():
        return None
    meta = load_meta_for(source)
    if meta is None or meta.preprocessing is None:
        return None
    if fuse and meta.fused:
        raise UsageError(f"{source}: its meta file says the preprocessing is already fused "
                         "into the graph; drop {fuse_preprocess}")
    log.info("preprocessing carried over from the meta file of %s", source)
    return meta


def _preprocessing_for(model: onnx.ModelProto, options: ImageOptions | None,
                       where: str) -> ImageOptions:
    """The image options as the meta file records them: layout resolved for the model's
    image input, the crop defaulting to its height and width, lengths checked."""
    specs = input_specs(model)
    images = [spec for spec in specs if len(spec.shape) == 4]
    if len(specs) != 1 or not images:
        raise UsageError(f"image preprocessing needs a model with one 4-D image input; {where} "
                         f"has {', '.join(f'{s.name} {s.shape_text()}' for s in specs)}")
    spec = images[0]
    resolved = (options or ImageOptions(layout="auto")).for_shape(spec.shape)
    _, c, h, w = spec.shape if resolved.layout == "nchw" else \
        (spec.shape[i] for i in (0, 3, 1, 2))
    label = f"input '{spec.name}' {spec.shape_text()} ({resolved.layout})"
    if isinstance(c, int) and c != resolved.channels:
        raise UsageError(f"{label} has {c} channel(s), but {{pixel_format}} "
                         f"{resolved.pixel_format} gives {resolved.channels}; check "
                         f"{{pixel_format}} and {{layout}}")
    if isinstance(h, int) and isinstance(w, int):
        resolved.check_fits(h, w, resolved.channels, label)
        if resolved.crop is None:
            resolved = replace(resolved, crop=(h, w))
    else:
        resolved.check_fits(1, 1, resolved.channels, label)  # mean/scale lengths only
    return resolved


def _test_samples(model: onnx.ModelProto, path: Path, feed: ImageOptions | None,
                  image_file: bool) -> list[dict[str, np.ndarray]]:
    """The test input's samples as fed (an image file: one sample, preprocessed)."""
    specs = input_specs(model)
    if image_file:
        data: Dataset = ImageFolderDataset(path, specs, [path], feed or ImageOptions())
    else:
        data = open_dataset(path, specs, image_options=feed if path.is_dir() else None)
    samples = list(finite_samples(data))
    if not samples:
        raise DatasetError(f"the test input {path} has no samples")
    return samples


def _stack_samples(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Samples as a data set's arrays: batch-1 slices concatenated along axis 0, other
    samples stacked on a new first axis (the data-set format's "whole samples")."""
    stacked = {}
    for name in samples[0]:
        parts = [sample[name] for sample in samples]
        batch_one = all(part.ndim >= 1 and part.shape[0] == 1 for part in parts)
        stacked[name] = np.concatenate(parts) if batch_one else np.stack(parts)
    return stacked


def _check_runs_at_shapes(model: onnx.ModelProto, input_shapes: Shapes) -> None:
    """Shape inference accepts shapes that contradict a model's weights (3 channels into a
    1-channel Conv); running it once on zeros does not."""
    shapes = {}
    for spec in input_specs(model):
        if any(not isinstance(d, int) or d <= 0 for d in spec.shape):
            return  # a dynamic axis left: nothing to run at
        shapes[spec.name] = (tuple(int(d) for d in spec.shape),  # type: ignore[arg-type]
                             spec.dtype)
    arguments.check_memory(run_bytes(model, shapes), "input_shapes",
                           f"a run at {_shapes_text(input_shapes)}")
    feeds = {name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()}
    try:
        run_samples(model, [feeds])
    except ModelError as err:
        raise UsageError(f"the model does not run at {{input_shapes}} "
                         f"{_shapes_text(input_shapes)}: {err}") from err


def _shapes_text(input_shapes: Shapes) -> str:
    if isinstance(input_shapes, Mapping):
        return ";".join(f"{name}:{','.join(map(str, shape))}"
                        for name, shape in input_shapes.items())
    return str([list(shape) for shape in input_shapes]).replace(" ", "")
