"""Evaluation as shards of running sums, merged: the metrics of one process on all outputs.

The oracle runs ONNX Runtime on all samples at once and scores them with
lowbit.analysis.metrics (top-k, agreement, cos, PSNR, SSIM on whole arrays); the sharded
runs merge per-shard sums for 1, 2 and 3 shards, uneven ones and a shard of one sample,
here in this process (InlineExecutor). Two tests start worker processes (the pool) and
compare with one process end to end, through the API and the CLI.
"""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import lowbit
from lowbit.analysis.eval_shards import EvalJob, Scored, merge_sums, range_shard, score_shard
from lowbit.analysis.eval_sums import EvalSums, MetricSet
from lowbit.analysis.evaluate import evaluate
from lowbit.analysis.metrics import mean_cosine, psnr, ssim, top1_agreement, topk_accuracy
from lowbit.cli.main import main
from lowbit.data.refs import DatasetRef
from lowbit.errors import ArgumentError, DatasetError
from lowbit.parallel import InlineExecutor, new_key, shards_from_bounds
from tests.models import init, make_model
from tests.parallel.shard_models import SAMPLES, SPLITS, conv_model, samples

CLASSIFY = MetricSet(("top1", "top5", "cos", "psnr"))
IMAGES = MetricSet(("psnr", "ssim", "cos"))


def _shifted(model: onnx.ModelProto, shift: np.ndarray) -> onnx.ModelProto:
    """``model`` with ``shift`` added to its output y (a second model that disagrees on
    some samples' argmax)."""
    shifted = onnx.ModelProto()
    shifted.CopyFrom(model)
    shifted.graph.output[0].name = "y"
    for node in shifted.graph.node:
        node.output[:] = ["y0" if name == "y" else name for name in node.output]
    shifted.graph.node.append(helper.make_node("Add", ["y0", "shift"], ["y"]))
    shifted.graph.initializer.append(init("shift", shift.astype(np.float32)))
    return shifted


def _image_model(noise: np.ndarray | None) -> onnx.ModelProto:
    """(N,1,8,12) -> itself, plus a fixed noise image when given."""
    value = helper.make_tensor_value_info
    if noise is None:
        nodes, inits = [helper.make_node("Identity", ["img"], ["out"])], []
    else:
        nodes = [helper.make_node("Add", ["img", "noise"], ["out"])]
        inits = [init("noise", noise.astype(np.float32))]
    return make_model(nodes, [value("img", TensorProto.FLOAT, ["N", 1, 8, 12])],
                      [value("out", TensorProto.FLOAT, ["N", 1, 8, 12])], inits)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("eval"))


def write_files(folder: Path) -> dict[str, Path]:
    """A classifier and a shifted copy on 21 labelled samples; an identity and a noisy
    image model on 21 images."""
    rng = np.random.default_rng(7)
    paths = {name: folder / f"{name}.onnx" for name in ("clf", "vs", "id", "noisy")}
    onnx.save(conv_model(), paths["clf"])
    onnx.save(_shifted(conv_model(), rng.normal(0, 8.0, (1, 10))), paths["vs"])
    onnx.save(_image_model(None), paths["id"])
    onnx.save(_image_model(rng.normal(0, 0.05, (1, 1, 8, 12))), paths["noisy"])
    paths["data"] = folder / "data.npz"
    np.savez(paths["data"], x=samples(), label=rng.integers(0, 10, SAMPLES))
    paths["images"] = folder / "images.npz"
    np.savez(paths["images"], img=rng.uniform(0, 1, (SAMPLES, 1, 8, 12)).astype(np.float32))
    return paths


def _run(model: Path, data: Path) -> np.ndarray:
    with np.load(data) as arrays:
        feeds = {name: arrays[name] for name in arrays.files if name != "label"}
    return ort.InferenceSession(str(model)).run(None, feeds)[0]  # type: ignore[no-any-return]


def oracle(files: dict[str, Path], *, images: bool) -> tuple[list[dict[str, float]],
                                                              float | None]:
    """Each model's metrics and the agreement, from whole arrays in one process."""
    if images:
        ref = _run(files["id"], files["images"])
        outs = [_run(files["noisy"], files["images"]), ref]
        return [{"psnr": psnr(ref, out), "ssim": ssim(ref, out), "cos": mean_cosine(ref, out)}
                for out in outs], top1_agreement(outs[0], outs[1])
    labels = np.load(files["data"])["label"]
    outs = [_run(files["clf"], files["data"]), _run(files["vs"], files["data"])]
    ref = outs[1]
    return [{"top1": topk_accuracy(out, labels, 1), "top5": topk_accuracy(out, labels, 5),
             "cos": mean_cosine(ref, out), "psnr": psnr(ref, out)} for out in outs], \
        top1_agreement(outs[0], outs[1])


def eval_job(files: dict[str, Path], *, images: bool) -> EvalJob:
    """The two models of ``files`` as one job: the noisy image model against the identity
    (psnr, ssim, cos), or the classifier against its shifted copy (top-k, cos, psnr)."""
    if images:
        models = (Scored(str(files["noisy"]), "out"), Scored(str(files["id"]), "out"))
        return EvalJob(new_key(), DatasetRef(str(files["images"])), SAMPLES, models, IMAGES,
                       reference=models[1], agreement=True)
    models = (Scored(str(files["clf"]), "y"), Scored(str(files["vs"]), "y"))
    return EvalJob(new_key(), DatasetRef(str(files["data"])), SAMPLES, models, CLASSIFY,
                   reference=models[1], agreement=True)


def _sharded(job: EvalJob, bounds: list[int]) -> EvalSums:
    """The range pass (SSIM) and the scoring pass over ``bounds``' shards, merged."""
    shards = shards_from_bounds(bounds)
    with InlineExecutor() as executor:
        if "ssim" in job.wanted.names:
            ranges = merge_sums(executor.run(range_shard, job, shards, label="r",
                                             progress=False))
            job = replace(job, ssim_range=ranges.data_range)
        return merge_sums(executor.run(score_shard, job, shards, label="e", progress=False))


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if math.isinf(value):
            assert got[name] == value, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("images", [False, True], ids=["top-k, cos, psnr", "psnr, ssim, cos"])
@pytest.mark.parametrize("split", SPLITS)
def test_merged_shards_equal_one_process(files: dict[str, Path], split: str,
                                         images: bool) -> None:
    want, agreement = oracle(files, images=images)
    job = eval_job(files, images=images)
    sums = _sharded(job, SPLITS[split])
    for index in range(2):
        _assert_close(sums.metrics(index, job.wanted), want[index])
        assert sums.models[index].samples == SAMPLES
    if images:
        assert sums.agreement_percent() is None and agreement is None
        assert want[1]["psnr"] == math.inf and want[0]["psnr"] < 60  # the test can fail
    else:
        assert sums.agreement_percent() == pytest.approx(agreement)
        assert 0 < want[0]["top1"] < want[0]["top5"] < 100
        assert agreement is not None and 0 < agreement < 100


def test_evaluate_in_one_process_equals_theoracle(files: dict[str, Path]) -> None:
    want, agreement = oracle(files, images=False)
    report = evaluate(files["clf"], files["data"], metrics=CLASSIFY.names, vs=files["vs"])
    _assert_close(report.results[0].metrics, want[0])
    assert report.agreement == pytest.approx(agreement)
    assert [r.num_samples for r in report.results] == [SAMPLES, SAMPLES]


def test_a_label_error_names_the_sample_and_the_shard(files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    labels = np.load(files["data"])["label"].copy()
    labels[17] = 12
    bad = tmp_path / "labels.npy"
    np.save(bad, labels)
    job = replace(eval_job(files, images=False), labels=str(bad))
    with pytest.raises(DatasetError, match=r"label 12 of sample 17 is outside the model's 10 "
                       r"classes.*shard 2 \(samples 14\.\.20\)"):
        _sharded(job, SPLITS["3 shards"])


def test_workers_2_give_the_metrics_of_one_process(files: dict[str, Path]) -> None:
    """Spawned workers (a pool of 2), the SSIM range pass included."""
    one = evaluate(files["noisy"], files["images"], metrics=IMAGES.names, vs=files["id"])
    two = evaluate(files["noisy"], files["images"], metrics=IMAGES.names, vs=files["id"],
                   workers=2)
    for got, want in zip(two.results, one.results, strict=True):
        _assert_close(got.metrics, want.metrics)
    assert two.results[0].metrics["ssim"] < 1.0 == two.results[1].metrics["ssim"]


def test_cli_workers_2_prints_the_metrics_of_one_process(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    common = ["eval", str(files["clf"]), "--data", str(files["data"]), "--vs",
              str(files["vs"]), "--metric", "top1,top5,cos", "--json"]
    assert main(common) == 0
    one = json.loads(capsys.readouterr().out)
    assert main([*common, "--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["agreement"] == pytest.approx(one["agreement"])
    for got, want in zip(two["results"], one["results"], strict=True):
        _assert_close(got["metrics"], want["metrics"])


def test_workers_0_is_one_line_naming_the_option(files: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(files["clf"]), "--data", str(files["data"]),
                 "--workers", "0"]) == 2
    error = capsys.readouterr().err
    assert "--workers must be from 1 to 4096; got 0" in error
    assert len(error.strip().splitlines()) == 1
    with pytest.raises(ArgumentError, match="workers must be from 1"):
        lowbit.evaluate(files["clf"], files["data"], workers=0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("workers", [None, 2], ids=["one process", "a pool of 2"])
def test_evaluation_shows_one_bar_over_the_samples(files: dict[str, Path], workers: int | None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 images take minutes: a bar counts the samples (of all workers, as they
    finish their shards; SSIM's range pass has its own), none without progress."""
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    shown = lowbit.evaluate(files["noisy"], files["images"], metrics=IMAGES.names,
                            vs=files["id"], workers=workers)
    assert "reference range" in screen.getvalue()
    assert "evaluating" in screen.getvalue() and f"{SAMPLES}/{SAMPLES}" in screen.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    silent = lowbit.evaluate(files["noisy"], files["images"], metrics=IMAGES.names,
                             vs=files["id"], workers=workers, progress=False)
    assert quiet.getvalue() == ""
    assert [r.metrics for r in shown.results] == [r.metrics for r in silent.results]


def test_cli_no_progress_hides_the_bar(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    common = ["eval", str(files["clf"]), "--data", str(files["data"]), "--json"]
    for flags, shown in (([], True), (["--no-progress"], False)):
        screen = _Terminal()
        monkeypatch.setattr(sys, "stderr", screen)
        assert main([*common, *flags]) == 0
        assert ("evaluating" in screen.getvalue()) == shown, flags
        assert json.loads(capsys.readouterr().out)["results"][0]["num_samples"] == SAMPLES
