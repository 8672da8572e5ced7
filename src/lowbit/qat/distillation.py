"""Distillation: train a QAT student to give its float teacher's outputs (no labels).

    report = distill(student, teacher, batches(photos, 16), DistillSettings(steps=2000,
                                                                  step_learning_rate=0.02))
    report.summary()       # "distilled 2000 steps (32000 samples) in 1234 s: loss 0.41 → 0.05"

Each step runs the teacher (no gradient) and the student on the same batch and moves the
student's latent weights, biases and log-scales (Adam, cosine decay, weights and biases
at ``learning_rate``, or with ``step_learning_rate`` each at that fraction of its own
quantization step, scales at ``scale_learning_rate``) to reduce, per output, the KL
divergence of its softmax from the teacher's (``loss="kl"``, class scores at
``temperature``) or the mean squared error relative to the teacher's mean square
(``"mse"``, any other output); ``"auto"`` takes KL for an output [N, C] with C > 1. Any
unlabeled inputs like those the model will see do: distillation needs no labels.

Feature distillation (``feature_weight``, default 3): where student and teacher also return
inner tensors (TorchGraph.tap, with lowbit.qat.student.shared_features; lowbit.qat.prepare
taps them), the loss adds ``feature_weight`` times their mean relative squared error. The
inner tensors tell the student where it departs from float, layer by layer, which the
outputs alone say only through a long chain: with few distinct images it generalizes
better (EfficientNet-Lite0 W4A8, 250 steps on 8 DEV photos, scored on the 2 held out:
agreement with float 38 → 47 %; on the REPORT photos, trained on all ten, the same
top-1 agreement, 75.0 / 74.0 %, and top-5 overlap 71.4 → 78.4 %, logit SQNR 7.0 → 8.6 dB;
MTCNN's O-Net W4A8, untuned: face / box SQNR 28.3 / 12.8 → 33.6 / 15.6 dB;
bench/qat_lite0.py, bench/qat_dense.py).

``token_mask`` names an input of 0/1 per token (by default ``"auto"``: the input named
attention_mask, where the model has one): the squared errors of outputs and inner tensors
shaped [batch, tokens, ...] then count only on the tokens it keeps, not on the padding,
which mean pooling ignores (all-MiniLM-L6-v2 W4A8 on DEV tuning sentences: worst
cosine 0.919 → 0.941). ``token_mask=None`` counts every token.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from lowbit.errors import UsageError

log = logging.getLogger(__name__)

LOSSES = ("auto", "kl", "mse")
Batch = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class DistillSettings:
    """How long and how fast the student learns."""

    steps: int = 1000
    learning_rate: float = 1e-5  # latent weights and biases (Adam)
    # when given: each latent weight's rate is this fraction of its quantization step (and
    # each bias's, of its layer's output step), instead of ``learning_rate`` for all
    step_learning_rate: float | None = None
    scale_learning_rate: float = 1e-3  # log-scales (Adam): relative steps of about 0.1 %
    temperature: float = 1.0
    loss: str = "auto"
    warmup: int = 0  # steps of linear learning-rate warm-up before the cosine decay
    # the weight of the tapped inner tensors' mean relative squared error (0: outputs only;
    # it applies only where student and teacher return tapped tensors: TorchGraph.tap)
    feature_weight: float = 3.0
    # an input of 0/1 per token ([N, T], a transformer's attention mask): the squared
    # errors of every tensor shaped [N, T, ...] count only where it is 1, so padding tokens
    # (which pooling ignores) do not take the student's capacity. "auto": the input named
    # attention_mask where the model has one of rank 2; None: every token counts
    token_mask: str | None = "auto"
    threads: int | None = None  # torch's intra-op threads (None: torch's default)
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.log_every < 1 or self.warmup < 0:
            raise UsageError("distillation steps and log_every must be positive, warmup ≥ 0")
        if not (self.learning_rate >= 0 and self.scale_learning_rate >= 0
                and (self.step_learning_rate is None or self.step_learning_rate >= 0)
                and self.temperature > 0 and self.feature_weight >= 0):
            raise UsageError("learning rates and feature_weight must be ≥ 0 and the "
                             "temperature positive")
        if self.loss not in LOSSES:
            raise UsageError(f"unknown distillation loss '{self.loss}'; one of "
                             f"{', '.join(LOSSES)}")


@dataclass(frozen=True)
class DistillReport:
    """What a distillation did: steps, samples, wall time and the loss along the way."""

    steps: int
    samples: int
    seconds: float
    history: tuple[tuple[int, float], ...] = field(default=())  # (step, mean loss since last)

    @property
    def first_loss(self) -> float:
        return self.history[0][1] if self.history else math.nan

    @property
    def last_loss(self) -> float:
        return self.history[-1][1] if self.history else math.nan

    def summary(self) -> str:
        return (f"distilled {self.steps} steps ({self.samples} samples) in "
                f"{self.seconds:.0f} s: loss {self.first_loss:.4g} → {self.last_loss:.4g}")


def batches(data: np.ndarray | Mapping[str, np.ndarray], size: int, *, seed: int = 0
            ) -> Iterator[Batch]:
    """Endless shuffled batches of ``size`` samples from arrays (first axis = samples)."""
    arrays = {"": data} if isinstance(data, np.ndarray) else dict(data)
    count = len(next(iter(arrays.values())))
    if count == 0 or size < 1:
        raise UsageError("batches need at least one sample and a positive size")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(count)
        for start in range(0, count - size + 1 if count >= size else 1, size):
            take = order[start:start + size]
            picked = {k: v[take] for k, v in arrays.items()}
            yield picked.get("", picked)  # type: ignore[arg-type]


def distill(student: torch.nn.Module, teacher: Callable[..., Sequence[torch.Tensor]],
            data: Iterable[Batch], settings: DistillSettings | None = None, *,
            input_names: Sequence[str] | None = None) -> DistillReport:
    """Train ``student`` (a lowbit.qat TorchGraph) towards ``teacher``'s outputs on
    ``data`` (batches as arrays, or mappings input name → array) for ``settings.steps``
    steps or until ``data`` ends. Both take a mapping input name → tensor and return a
    list of output tensors (as TorchGraph does)."""
    settings = settings or DistillSettings()
    names = list(input_names or getattr(student, "input_names", ["input"]))
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    scales = [p for n, p in student.named_parameters() if n.startswith("log_scales.")]
    step_sizes = getattr(student, "step_sizes", None)  # TorchGraph's
    if settings.step_learning_rate is not None and step_sizes is not None:
        groups = [{"params": [p], "lr": settings.step_learning_rate * size}
                  for p, size in step_sizes()]
    else:
        groups = [{"params": [p for n, p in student.named_parameters()
                              if not n.startswith("log_scales.")],
                   "lr": settings.learning_rate}]
    optimizer = torch.optim.Adam([*groups, {"params": scales,
                                            "lr": settings.scale_learning_rate}])
    base = [group["lr"] for group in optimizer.param_groups]
    # outputs past the graph's own are tapped inner tensors (TorchGraph.tap)
    primary = len(getattr(student, "output_names", ())) or None
    mask_name = _mask_input(settings.token_mask, names)
    student.train()
    history: list[tuple[int, float]] = []
    running, seen, step, samples = 0.0, 0, 0, 0
    start = time.perf_counter()
    for batch in data:
        if step >= settings.steps:
            break
        feeds = _feeds(batch, names)
        factor = _schedule(step, settings)
        for group, lr in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = lr * factor
        with torch.no_grad():
            target = [t.detach().float() for t in teacher(feeds)]
        outputs = student(feeds)
        if len(outputs) != len(target):
            raise UsageError(f"the teacher returned {len(target)} tensors and the student "
                             f"{len(outputs)}: tap the same inner tensors in both")
        count = primary or len(outputs)
        mask = _token_mask(feeds, mask_name, strict=settings.token_mask != "auto")
        loss = sum((_loss(o, t, settings, mask) for o, t in zip(
            outputs[:count], target[:count], strict=True)), torch.zeros(()))
        if len(outputs) > count and settings.feature_weight > 0:
            features = [_relative_mse(o, t, mask) for o, t in zip(
                outputs[count:], target[count:], strict=True)]
            loss = loss + settings.feature_weight * torch.stack(features).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        step += 1
        samples += len(next(iter(feeds.values())))
        running += float(loss.detach())  # type: ignore[union-attr]
        seen += 1
        if step % settings.log_every == 0 or step == settings.steps:
            history.append((step, running / seen))
            log.info("qat step %d: loss %.5g", step, running / seen)
            running, seen = 0.0, 0
    if seen:
        history.append((step, running / seen))
    student.eval()
    return DistillReport(step, samples, time.perf_counter() - start, tuple(history))


def _feeds(batch: Batch, names: Sequence[str]) -> dict[str, torch.Tensor]:
    if isinstance(batch, np.ndarray):
        if len(names) != 1:
            raise UsageError(f"the model has {len(names)} inputs ({', '.join(names)}); give "
                             "batches as mappings input name → array")
        return {names[0]: torch.from_numpy(np.ascontiguousarray(batch, np.float32))}
    missing = [n for n in names if n not in batch]
    if missing:
        raise UsageError(f"a batch lacks input(s) {', '.join(missing)}")
    return {n: torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names}


def _schedule(step: int, settings: DistillSettings) -> float:
    """Linear warm-up, then cosine decay to zero over the remaining steps."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    span = max(settings.steps - settings.warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * (step - settings.warmup) / span))


AUTO_MASK = "attention_mask"  # what transformers' exporters name it


def _mask_input(token_mask: str | None, names: Sequence[str]) -> str | None:
    """The input ``token_mask`` names; "auto": AUTO_MASK where the model has it."""
    if token_mask == "auto":
        return AUTO_MASK if AUTO_MASK in names else None
    return token_mask


def _token_mask(feeds: Mapping[str, torch.Tensor], name: str | None, strict: bool = True
                ) -> torch.Tensor | None:
    """The mask as float, None without one; a named input that is missing or not
    [batch, tokens] is a usage error (``strict``) or no mask (found by "auto")."""
    if name is None:
        return None
    if name not in feeds:
        raise UsageError(f"token_mask '{name}' is not an input of the model; inputs: "
                         f"{', '.join(feeds)}")
    mask = feeds[name]
    if mask.dim() != 2 and not strict:
        return None
    if mask.dim() != 2:
        raise UsageError(f"token_mask '{name}' must be [batch, tokens], got shape "
                         f"{list(mask.shape)}")
    return mask.float()


def _loss(output: torch.Tensor, target: torch.Tensor, settings: DistillSettings,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    kind = settings.loss
    if kind == "auto":
        kind = "kl" if target.dim() == 2 and target.shape[1] > 1 else "mse"
    if kind == "kl":
        t = settings.temperature
        return F.kl_div(F.log_softmax(output / t, dim=-1), F.log_softmax(target / t, dim=-1),
                        reduction="batchmean", log_target=True) * t * t
    return _relative_mse(output, target, mask)


def _relative_mse(output: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the teacher's mean square; with a token mask, over the
    tokens it keeps only (for a tensor shaped [N, T, ...] like the mask)."""
    if mask is not None and output.dim() >= 2 and tuple(output.shape[:2]) == tuple(mask.shape):
        weight = mask.reshape(*mask.shape, *([1] * (output.dim() - 2))).expand_as(output)
        return (weight * (output - target) ** 2).sum() / \
            (weight * target ** 2).sum().clamp_min(1e-12)
    return ((output - target) ** 2).mean() / (target ** 2).mean().clamp_min(1e-12)
