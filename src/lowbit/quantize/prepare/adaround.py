"""AdaRound: learn, per weight, whether to round up or down (Nagel et al. 2020,
"Up or down? Adaptive rounding for post-training quantization").

    weights, report = adaround(canonical, samples, QuantizeSettings(weight_bits=4))
    result = quantize_qdq(canonical, table.ranges, settings, weights=weights)
    report.summary()  # "adaround: 50 layers on 64 samples, layer output error 0.61x nearest…"

Rounding each weight to nearest minimises |W − W̃| weight by weight, not the error of
the layer's output. AdaRound keeps the scale s of round-to-nearest and learns, for
every weight, h ∈ [0, 1] in W̃ = s · clip(⌊W/s⌋ + h, −qmax, qmax), with h = h(V) the
rectified sigmoid clip(σ(V)·(ζ − γ) + γ, 0, 1) (ζ = 1.1, γ = −0.1), by minimising

    ||W x − W̃ x̂||² / ||W x − W_nearest x̂||²  +  λ · mean(1 − |2h − 1|^β)

over the layer's float inputs x and x̂, what the layer reads in the quantized model,
with Adam; the regulariser is off for the first 20 % of the iterations, then β
anneals from 20 to 2, which drives every h to 0 or 1. The reconstruction term is
normalised by round-to-nearest's error so that one λ suits every layer, whatever its
activations' magnitude (λ = 30 and lr 1e-2 were the best of a sweep on
EfficientNet-Lite0 layers, 4- and 8-bit).

Inputs. By default x̂ = x: every layer is fitted on its float inputs (one ORT pass
over the samples, lowbit.quantize.prepare.layer_inputs), and all layers at once, none
waiting for the one before. ``inputs="quantized"`` (with the calibration ``ranges``)
takes x̂ from the QDQ model with every activation quantized as deployed but the
weights float (the paper's "asymmetric" reconstruction, minus upstream weight
rounding; x and x̂ from two passes at the same positions). It is not the default
because it measured worse: least squares against noisy inputs shrinks each W̃
(regression dilution), and the shrinkage compounds over 50 layers — EfficientNet-Lite0
W4A8 fell to 0 % top-1 agreement with it, 28 % with float inputs. Fitting all layers
at once to inputs with upstream NEAREST rounding was worse still on the test model:
each layer corrected an error its upstream neighbours had already removed. Layers with few input
features (K ≤ 128, e.g. depthwise convs) use the exact second moments of all sampled
columns; wider ones mini-batches of columns.

The result maps each weight initializer to its integers and scales
(lowbit.quantize.int8.params.WeightQuant) for quantize_qdq; a layer whose learned
rounding does not beat nearest on its own data keeps nearest. Works for 8-bit and
4-bit weights (``settings.weight_qmax``), per channel or per tensor.

Needs torch (``pip install 'lowbit[torch]'``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lowbit.calibration.observers import TensorRange
from lowbit.errors import ArgumentError, UsageError, install_hint
from lowbit.quantize.int8.params import (
    GRID_QMAX,
    WeightQuant,
    limit_pairs,
    quantize_weight_on,
    weight_kind,
)
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare.layer_inputs import (
    Layer,
    LayerInputs,
    collect_inputs,
    find_layers,
    from_matrix,
    weight_matrix,
    weight_of,
)
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1
TORCH_HINT = install_hint("torch")


@dataclass(frozen=True)
class AdaRoundSettings:
    """Optimisation settings: iterations per layer, sampled columns, the regulariser."""

    iterations: int = 1000
    columns: int = 2048
    batch: int = 128
    reg_weight: float = 30.0
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    learning_rate: float = 1e-2
    seed: int = 0
    # torch's thread pool spins: on a loaded 2-core machine one thread ran a 320x1152
    # layer's step 5x faster than two. Raise it on a machine of your own.
    threads: int = 1
    # Every n-th sample is held out: a layer keeps AdaRound's integers only when they beat
    # nearest rounding there, and the report's errors are measured there.
    holdout: int = 5
    inputs: str = "float"  # or "quantized": fit to the QDQ model's activations (see above)

    def __post_init__(self) -> None:
        if min(self.iterations, self.columns, self.batch, self.threads) < 1:
            raise UsageError("AdaRound iterations, columns, batch and threads must be positive")
        if self.inputs not in ("float", "quantized"):
            raise UsageError(f"AdaRound inputs must be float or quantized, got {self.inputs}")
        if not 0 <= self.warmup < 1:
            raise UsageError(f"AdaRound warmup must be in [0, 1), got {self.warmup}")


@dataclass(frozen=True)
class LayerRounding:
    """One layer: output error (mean ||ΔW x||² over its sampled columns) of both roundings."""

    node: str
    weight: str
    nearest_error: float
    adaround_error: float
    changed: float          # fraction of weights rounded the other way than nearest
    used: bool              # False: nearest was at least as good and was kept

    @property
    def ratio(self) -> float:
        return self.adaround_error / self.nearest_error if self.nearest_error > 0 else 1.0


@dataclass(frozen=True)
class AdaRoundReport:
    layers: tuple[LayerRounding, ...]
    samples: int
    columns: int
    bits: int
    seconds: float
    quantized_inputs: bool = False  # fitted to the quantized model's inputs (x̂)

    def summary(self) -> str:
        if not self.layers:
            return "adaround: no Conv/Gemm/MatMul layer with a constant weight"
        used = [r for r in self.layers if r.used]
        ratio = float(np.exp(np.mean([np.log(max(r.ratio, 1e-12)) for r in self.layers])))
        inputs = "quantized-model" if self.quantized_inputs else "float"
        return (f"adaround ({self.bits}-bit weights): {len(used)} of {len(self.layers)} layers "
                f"on {self.samples} samples ({inputs} inputs, ≤{self.columns} columns each), "
                f"held-out layer output error {ratio:.2f}x nearest rounding (geometric mean), "
                f"{self.seconds:.0f} s")


@dataclass(frozen=True)
class Rounding:
    """The learned integers of one weight matrix [G, O, K] and both errors."""

    q: np.ndarray
    nearest_error: float
    adaround_error: float


def require_torch() -> Any:
    """torch, or a UsageError saying how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ArgumentError(f"{{adaround}} needs torch, which is not installed: {TORCH_HINT}") \
            from err
    return torch


def adaround(model: onnx.ModelProto, samples: Sequence[Mapping[str, np.ndarray]],
             settings: QuantizeSettings, options: AdaRoundSettings | None = None, *,
             ranges: Mapping[str, TensorRange] | None = None,
             skipped: Mapping[str, str] | None = None, progress: bool = True,
             memory_budget: MemoryBudget | None = None
             ) -> tuple[dict[str, WeightQuant], AdaRoundReport]:
    """Learned integer weights for every Conv/Gemm/MatMul of ``model`` (canonical);
    with ``options.inputs == "quantized"`` each layer is fitted to what it reads in the
    QDQ model made with ``ranges`` (the calibration table's)."""
    require_torch()
    options = options or AdaRoundSettings()
    start = time.perf_counter()
    layers = find_layers(model)
    quantized = None
    if options.inputs == "quantized":
        if ranges is None:
            raise UsageError("AdaRound on quantized-model inputs needs the calibration ranges")
        quantized = float_weights(quantize_qdq(model, ranges, settings, skipped=skipped).model,
                                  model, layers)
    inputs = collect_inputs(model, layers, samples, columns=options.columns,
                            gram_up_to=options.batch, seed=options.seed,
                            holdout=options.holdout, quantized=quantized,
                            memory_budget=memory_budget)
    weights: dict[str, WeightQuant] = {}
    grids: set[str] = set()
    rows: list[LayerRounding] = []
    with _progress_bar(progress, len(layers)) as advance:
        for index, layer in enumerate(layers):
            data = inputs.get(layer.node)
            if data is None:
                advance()
                continue
            weight = weight_of(model, layer)
            axis = layer.axis if settings.per_channel else None
            # The grid deploy uses for this weight; paired weights learn on ±127 and then
            # have their few overflowing pairs of K rows projected.
            kind, layout = weight_kind(layer.op_type, layer.shape, axis, layer.group)
            grid = settings.weight_grid(kind)
            grids.add(grid)
            qmax = GRID_QMAX[grid] if grid != "paired" or layout is not None and axis is not None \
                else GRID_QMAX["reduced"]
            nearest = quantize_weight_on(grid, weight, axis, layout)
            matrix = weight_matrix(weight, layer)
            scale = _scale_matrix(nearest.scale, layer, weight.shape, axis)
            result = optimize_rounding(matrix, data, scale, qmax, options,
                                       seed=options.seed + index)
            used = result.adaround_error < result.nearest_error
            q = from_matrix(result.q, layer).astype(np.int8) if used else nearest.q
            learned = WeightQuant(q, nearest.scale, axis)
            if used and grid == "paired" and layout is not None and axis is not None:
                learned = limit_pairs(learned, weight, layout)
            changed = float(np.mean(learned.q != nearest.q))
            weights[layer.weight] = learned
            rows.append(LayerRounding(layer.node, layer.weight, result.nearest_error,
                                      result.adaround_error if used else result.nearest_error,
                                      changed, used))
            log.debug("adaround %s: error %.4g → %.4g", layer.node, result.nearest_error,
                      result.adaround_error)
            advance()
    # symmetric grids: ±7 → 4 bits, ±63 → 7, ±127 (full or paired) → 8; W4A8 says 4
    # although its depthwise weights keep 8 bits
    bits = 4 if "int4" in grids else \
        max((int(GRID_QMAX[g]).bit_length() + 1 for g in grids), default=8)
    report = AdaRoundReport(tuple(rows), len(samples), options.columns, bits,
                            time.perf_counter() - start, quantized is not None)
    log.info(report.summary())
    return weights, report


def float_weights(quantized: onnx.ModelProto, model: onnx.ModelProto, layers: Sequence[Layer]
                  ) -> onnx.ModelProto:
    """The QDQ model with the layers' weights and biases float again: activations are
    quantized as they will be, weights not at all. Fitting each layer to the inputs it
    gets there lets it absorb the activation quantization (which stays in the deployed
    model) without also chasing upstream weight-rounding errors, which the upstream
    layers remove themselves (fitting all layers at once to inputs with upstream
    rounding made them over-correct)."""
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    originals = {node.name: node for node in model.graph.node}
    floats = {init.name: init for init in model.graph.initializer}
    names = {init.name for init in out.graph.initializer}
    for node in out.graph.node:
        source = originals.get(node.name)
        if source is None or node.name not in {layer.node for layer in layers}:
            continue
        for index in (1, 2):
            if index < len(source.input) and source.input[index] in floats \
                    and index < len(node.input):
                name = source.input[index]
                if name not in names:
                    out.graph.initializer.append(floats[name])
                    names.add(name)
                node.input[index] = name
    _drop_dead_nodes(out.graph)
    return out


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    while True:
        used = {name for node in graph.node for name in node.input} | \
            {value.name for value in graph.output}
        dead = [node for node in graph.node if not any(o in used for o in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def optimize_rounding(matrix: np.ndarray, data: LayerInputs, scale: np.ndarray, qmax: int,
                      options: AdaRoundSettings, *, seed: int = 0) -> Rounding:
    """Learn the rounding of ``matrix`` [G, O, K] with per-row ``scale`` [G, O, 1] (or a
    scalar) on ``data``; the integers come back in the [G, O, K] layout."""
    torch = require_torch()
    generator = torch.Generator().manual_seed(seed)
    w = torch.from_numpy(np.ascontiguousarray(matrix, np.float32))
    s = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(scale, matrix.shape),
                                              np.float32))
    floor = torch.floor(w / s)
    nearest = torch.clamp(torch.round(w / s), -qmax, qmax)
    error = _error_function(torch, data, options.batch, w)
    nearest_error = float(error(s * nearest))
    if nearest_error <= 0:  # exact already (e.g. weights on the grid)
        return Rounding(nearest.numpy().astype(np.int8), 0.0, 0.0)
    with _torch_threads(torch, options.threads):
        learned = _learn(torch, w, s, floor, error, nearest_error, qmax, options, generator)
    if data.validation is None:
        return learned
    check = _error_function(torch, data.validation, options.batch, w)
    q = torch.from_numpy(learned.q.astype(np.float32))
    return Rounding(learned.q, float(check(s * nearest)), float(check(s * q)))


def _learn(torch: Any, w: Any, s: Any, floor: Any, error: Any, nearest_error: float, qmax: int,
           options: AdaRoundSettings, generator: Any) -> Rounding:
    rest = (w / s - floor).clamp(0, 1)
    p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    v = torch.log(p / (1 - p)).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=options.learning_rate)
    warm = int(options.warmup * options.iterations)
    for step in range(options.iterations):
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        soft = s * torch.clamp(floor + h, -qmax, qmax)
        loss = error(soft, generator) / nearest_error
        if step >= warm:
            progress = (step - warm) / max(1, options.iterations - warm)
            beta = options.beta_end + (options.beta_start - options.beta_end) * (1 - progress)
            loss = loss + options.reg_weight * (1 - torch.abs(2 * h - 1) ** beta).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        q = torch.clamp(floor + (h >= 0.5).to(w.dtype), -qmax, qmax)
        learned_error = float(error(s * q))
    return Rounding(q.numpy().astype(np.int8), nearest_error, learned_error)


def _error_function(torch: Any, data: LayerInputs, batch: int, w: Any) -> Any:
    """W̃ → mean over columns of ||W x − W̃ x̂||², summed over outputs and groups (x̂ = x
    when no quantized model was given): exact from the second moments, or on a
    mini-batch of columns (every column when no generator is passed)."""
    if data.gram is not None:
        return _gram_error(torch, data, w)
    assert data.columns is not None
    columns = torch.from_numpy(np.ascontiguousarray(data.columns, np.float32))
    reads = columns if data.quantized is None else \
        torch.from_numpy(np.ascontiguousarray(data.quantized, np.float32))
    target = torch.bmm(columns, w.transpose(1, 2))  # W x for every column: [G, P, O]

    def with_columns(w_tilde: Any, generator: Any = None) -> Any:
        if generator is None:  # every column, in chunks
            total = sum(float(((target[:, i:i + 1024]
                                - torch.bmm(reads[:, i:i + 1024], w_tilde.transpose(1, 2))) ** 2)
                              .sum()) for i in range(0, columns.shape[1], 1024))
            return torch.tensor(total / columns.shape[1])
        pick = torch.randint(columns.shape[1], (min(batch, columns.shape[1]),),
                             generator=generator)
        out = torch.bmm(reads[:, pick], w_tilde.transpose(1, 2))
        return ((target[:, pick] - out) ** 2).sum() / len(pick)

    return with_columns


def _gram_error(torch: Any, data: LayerInputs, w: Any) -> Any:
    assert data.gram is not None
    gram = torch.from_numpy(data.gram)
    if data.cross is None or data.gram_quantized is None:
        def symmetric(w_tilde: Any, generator: Any = None) -> Any:
            delta = w - w_tilde
            return (torch.bmm(delta, gram) * delta).sum()

        return symmetric
    # E||Wx − W̃x̂||² = tr(W Σxx Wᵀ) − 2 tr(W Σxx̂ W̃ᵀ) + tr(W̃ Σx̂x̂ W̃ᵀ), in float64: the
    # three terms nearly cancel when the error is small.
    w64 = w.double()
    constant = float((torch.bmm(w64, gram.double()) * w64).sum())
    cross = torch.bmm(w64, torch.from_numpy(data.cross).double())
    quad = torch.from_numpy(data.gram_quantized).double()

    def asymmetric(w_tilde: Any, generator: Any = None) -> Any:
        wt = w_tilde.double()
        return constant - 2 * (cross * wt).sum() + (torch.bmm(wt, quad) * wt).sum()

    return asymmetric


def _scale_matrix(scale: np.ndarray, layer: Layer, shape: tuple[int, ...],
                  axis: int | None) -> np.ndarray:
    """The per-channel scale laid out like weight_matrix: [G, O/G, 1], or a scalar."""
    if axis is None:
        return np.asarray(scale, np.float32).reshape(1, 1, 1)
    out = shape[layer.axis]
    group = layer.group if layer.op_type == "Conv" else 1
    return np.asarray(scale, np.float32).reshape(group, out // group, 1)


@contextmanager
def _torch_threads(torch: Any, threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Any]:
    """A transient rich progress bar on stderr, silent when disabled or not on a terminal."""
    bar = Progress(TextColumn("adaround"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                   disable=not enabled or not sys.stderr.isatty())
    with bar:
        task = bar.add_task("adaround", total=total)
        yield lambda: bar.update(task, advance=1)
