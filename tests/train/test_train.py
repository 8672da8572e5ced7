"""lowbit train: three methods on a few digits, the tables, the ONNX exports and the deploy
rows; BF16 method 2 keeps weights and Adam's state in BF16; no torch is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lowbit.cli.main import main

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for name, count in (("train", 40), ("test", 20)):
        labels = np.arange(count) % 10
        images = rng.uniform(0, 0.1, (count, 1, 28, 28)).astype(np.float32)
        for i, label in enumerate(labels):  # a bright bar whose row says the class
            images[i, 0, 2 + 2 * label:4 + 2 * label, 4:24] = 1.0
        np.savez(root / f"{name}.npz", input=images, label=labels.astype(np.int64))
    return root / "train.npz", root / "test.npz"


def test_train_prints_the_seed_table(digits, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", "-o", str(out), "--data", str(digits[0]), "--test-data",
                 str(digits[1]), "--epochs", "1", "--batch", "20", "--profile-steps", "1",
                 "--threads", "1", "--deploy", "none", "--json"])
    text = capsys.readouterr().out
    assert code == 0
    report = json.loads(text)
    rows = report["methods"]
    assert [r["method"] for r in rows] == ["fp32", "bf16-autocast", "bf16-full"]
    for row in rows:
        assert 0 <= row["test_top1"] <= 100 and row["step_ms"] > 0 and row["samples_per_s"] > 0
        assert row["train_profile"]["ops"] and row["inference_profile"]["ops"]
    by_method = {r["method"]: r for r in rows}
    if by_method["fp32"]["peak_mb"] is not None:  # weights and Adam state in BF16: less
        assert by_method["bf16-full"]["peak_mb"] < by_method["fp32"]["peak_mb"]
    assert all((out / f"{m}.onnx").is_file() for m in ("fp32", "bf16-autocast", "bf16-full"))
    table = (out / "report.md").read_text()
    assert "BF16 method 2" in table and "Where the time goes" in table


def test_the_table_continues_into_deployment(digits, tmp_path):
    from lowbit.train.run import train_methods
    from lowbit.train.trainer import TrainSettings

    report = train_methods(tmp_path, methods=("bf16-full",), data=digits[0],
                           test_data=digits[1], precisions=("F32", "INT8"), time_models=False,
                           settings=TrainSettings(epochs=2, batch=20, profile_steps=1,
                                                  threads=1))
    assert [(r.method, r.precision) for r in report.deployed] == [("bf16-full", "F32"),
                                                                 ("bf16-full", "INT8")]
    f32, int8 = report.deployed
    assert f32.top1 is not None and int8.agree is not None and int8.agree >= 90
    assert int8.size_mb < f32.size_mb / 3
    assert "| BF16 method 2: whole network BF16, softmax/loss FP32 | INT8 | ort |" in \
        report.markdown()


def test_method_two_keeps_weights_and_optimizer_state_in_bf16():
    from lowbit.train.methods import METHODS
    from lowbit.train.trainer import _step, seeded_model

    for name, weights in (("bf16-autocast", torch.float32), ("bf16-full", torch.bfloat16)):
        method = METHODS[name]
        model, optimizer = method.prepare(seeded_model(0), 1e-3)
        _step(method, model, optimizer, torch.rand(4, 1, 28, 28), torch.arange(4))
        state = next(iter(optimizer.state.values()))
        assert {p.dtype for p in model.parameters()} == {weights}
        assert state["exp_avg"].dtype == weights


def test_a_cpu_without_bf16_is_said_in_the_table(monkeypatch):
    from lowbit.train.run import cpu_bf16

    monkeypatch.setenv("LOWBIT_FORCE_ISA", "bf16=0")
    assert cpu_bf16()[1] == ""
    monkeypatch.setenv("LOWBIT_FORCE_ISA", "bf16=1")
    assert cpu_bf16()[1]


NO_TORCH = ("import sys; sys.modules['torch'] = None\n"
            "from lowbit.cli.main import main\n"
            "raise SystemExit(main(['train', '-o', {out!r}, '--epochs', '1']))")


def test_without_torch_the_install_hint_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_TORCH.format(out=str(tmp_path / "o"))],
                          capture_output=True, text=True, env={**os.environ}, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install torch==2.13.0" in lines[0]
    assert not (tmp_path / "o").exists()


def test_help_loads_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           ("from lowbit.cli.main import main\ntry:\n    main(['train', "
                            "'--help'])\nexcept SystemExit:\n    pass")],
                          capture_output=True, text=True, check=True)
    loaded = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
              if line.startswith("import time:") and "|" in line}
    assert "torch" not in loaded and "numpy" not in loaded
