"""Every verb that reads a model, a data set or a table, on hostile versions of the file
(tests/fuzz/mutations.py), called as its valid base call (tests/fuzz/argv.py)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.argv import base_argv, resolve
from tests.fuzz.harness import Case
from tests.fuzz.mutations import (
    npz_mutations,
    onnx_mutations,
    qtable_mutations,
    recipe_mutations,
    table_mutations,
)

MODEL_VERBS = ["info", "transform", "calibrate", "deploy", "compare", "eval", "bench",
               "explain", "qtable", "classify", "report"]
DATA_VERBS = ["calibrate", "eval", "compare", "deploy", "qtable", "report", "transform",
              "quantize"]


def _base(verb: str) -> list[str]:
    return [verb] + [token for group in base_argv(verb) for token in group]


def _run(template: Path, argv: list[str], replaced: str, content: bytes, kind: str) -> None:
    with Case(template) as case:
        Path(case.inp(replaced)).write_bytes(content)
        outcome = case.run(resolve(argv, case.inp("").rstrip("/"), case.out("").rstrip("/")),
                           kind)
        case.check(outcome)


def test_onnx_mutations(template: Path, budget: dict[str, settings]) -> None:
    models = {name: (template / "in" / name).read_bytes()
              for name in ("model.onnx", "model.f32.onnx", "model.int8.onnx")}

    @budget["onnx"]
    @given(st.data())
    def run(data: st.DataObject) -> None:
        verb = data.draw(st.sampled_from(MODEL_VERBS), label="verb")
        argv = _base(verb)
        name = next(Path(t).name for t in argv if t.endswith(".onnx") and "{in}" in t)
        what, content = data.draw(onnx_mutations(models[name]), label="mutation")
        _run(template, argv, name, content, f"onnx {what}")

    run()


def test_npz_mutations(template: Path, budget: dict[str, settings]) -> None:
    @budget["npz"]
    @given(st.data())
    def run(data: st.DataObject) -> None:
        verb = data.draw(st.sampled_from(DATA_VERBS), label="verb")
        what, content = data.draw(npz_mutations(), label="mutation")
        _run(template, _base(verb), "x.npz", content, f"npz {what.split()[0]}")

    run()


def test_table_qtable_and_recipe_mutations(template: Path, budget: dict[str, settings]) -> None:
    table = (template / "in" / "model.calib").read_text()

    @budget["table"]
    @given(st.data())
    def run(data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(["table", "table", "qtable", "recipe"]),
                           label="file")
        if target == "table":
            verb = data.draw(st.sampled_from(["deploy", "qtable"]), label="verb")
            what, text = data.draw(table_mutations(table), label="mutation")
            _run(template, _base(verb), "model.calib", text.encode(), f"table {what}")
        elif target == "qtable":
            what, text = data.draw(qtable_mutations(), label="mutation")
            argv = [*_base("deploy"), "--quantize-table", "{in}/model.qtable"]
            _run(template, argv, "model.qtable", text.encode(), "qtable")
        else:
            what, text = data.draw(recipe_mutations(), label="mutation")
            argv = [t for t in _base("deploy") if t not in ("--calibration-table",
                                                           "{in}/model.calib")]
            _run(template, [*argv, "--recipe", "{in}/recipe.toml"], "recipe.toml",
                 text.encode(), "recipe")

    run()
