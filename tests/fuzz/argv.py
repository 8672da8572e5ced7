"""Argument vectors for every verb, built from the parser's own actions, and their mutations.

    parser = command_parser_of("calibrate")
    argv = draw(argv_cases("calibrate"))      # a valid base, then one mutation
    case.run(resolve(argv, case), "argv")     # "{in}"/"{out}" become the case's folders

A verb's base is a valid call on the template's files (tests/fuzz/harness.py), written
as (dest, value) pairs: the option string of each dest is looked up in the command's
parser, so a renamed option (``--dataset`` -> ``--data``) is spelled as this build
spells it. Mutations replace one value with a hostile one for its kind (numbers far
past every bound, texts that do not parse, paths to the wrong kind of file, outputs
onto inputs), drop an argument, add any option the parser has, or add a stray token.
Values that are valid but merely slow (``--repeats 100000``) are not drawn: a user who
asks for them gets what they asked for.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence

from hypothesis import strategies as st

from lowbit.cli.main import build_parser
from lowbit.cli.names import command_parser

# A dest with alternatives is written "a|b": the first the parser has is used.
BASES: dict[str, list[tuple[str, str]]] = {
    "transform": [("model", "{in}/model.onnx"), ("output", "{out}/t/model.f32.onnx"),
                  ("test_data|test_input", "{in}/x.npz")],
    "calibrate": [("model", "{in}/model.f32.onnx"), ("data|dataset", "{in}/x.npz"),
                  ("output", "{out}/c.calib"), ("num", "4"), ("check_samples", "2"),
                  ("no_progress", "")],
    "qtable": [("model", "{in}/model.f32.onnx"), ("data|dataset", "{in}/x.npz"),
               ("calibration_table", "{in}/model.calib"), ("output", "{out}/q.qtable"),
               ("num", "2")],
    "deploy": [("model", "{in}/model.f32.onnx"), ("calibration_table", "{in}/model.calib"),
               ("output", "{out}/d.int8.onnx"), ("test_input|test_data", "{in}/x.npz")],
    "compare": [("reference", "{in}/model.f32.onnx"), ("test", "{in}/model.int8.onnx"),
                ("data|inputs", "{in}/x.npz"), ("no_progress", "")],
    "eval": [("model", "{in}/model.int8.onnx"), ("data|dataset", "{in}/x.npz"),
             ("num", "4")],
    "classify": [("model", "{in}/model.f32.onnx"), ("input", "{in}/cat.png"), ("top", "3")],
    "bench": [("model", "{in}/model.int8.onnx"), ("vs", "{in}/model.f32.onnx"),
              ("batch", "1"), ("warmup", "0"), ("repeats", "1")],
    "explain": [("model", "{in}/model.int8.onnx"), ("no_profile", "")],
    "report": [("models", "{in}/model.f32.onnx"), ("models", "{in}/model.int8.onnx"),
               ("data|dataset", "{in}/x.npz"), ("output", "{out}/report"), ("batch", "2"),
               ("repeats", "1"), ("num", "4")],
    "info": [("model", "{in}/model.int8.onnx")],
    "package": [("model", "{in}/model.int8.onnx"), ("output", "{out}/model.lowbit"),
                ("test_input|test_data", "{in}/x.npz")],
    "quantize": [("model", "{in}/model.onnx"), ("data|dataset", "{in}/x.npz"),
                 ("output", "{out}/q"), ("num", "4"), ("validate", "2"), ("no_report", "")],
}
#: verbs whose every valid run is long (the whole flow): only refusals are drawn for them
REFUSALS_ONLY = {"demo": [("workdir", "{in}/x.npz"), ("repeats", "-1")]}

HUGE = ["2147483648", "9223372036854775808", "1" + "0" * 30, "9" * 5000]
INTS = ["1", "2", "3", "0", "-1", "-7", *HUGE, "1e3", "abc", "", " 7", "0x10", "٣"]
TEXTS = ["", " ", "abc", "nan", "inf", "-inf", "1e400", "\u00e9t\u00e9", "--", "-o",
         "a" * 5000, "{model}", "%s%n", "\\x00"]
BY_DEST: dict[str, list[str]] = {
    "percentile": ["99.9", "100", "0", "-1", "nan", "inf", "1e400"],
    "tolerance": ["0.99,0.9", "0.5,0.5", "2,1", "nan,nan", "0.99", "a,b", "1,1,1"],
    "batch": ["1", "2", "1,2", "0", "-1", "2147483647", "2147483648", "1" * 30, ",", "1,,2"],
    "input_shapes": ["[[1,3,16,16]]", "[[2,3,16,16]]", "input:1,3,16,16", "[[1,3,32,32]]",
                     "[[1,1,16,16]]", "garbage", "[[0,3,16,16]]", "[[100000,3,28000,28000]]",
                     "[" * 70000, "[" * 3000, "[[" + "9" * 5000 + "]]", "[]", "[[]]", "input:",
                     "x:1", "[[1,3,16,16],[1]]", '{"a":1}', "null", "[[1.5,3,16,16]]"],
    "mean": ["0", "0.5", "1,2,3", "nan", "inf", "1e308", "0,0,0,0"],
    "scale": ["1", "0.00392", "0", "-1", "nan", "1,2", "1e-300"],
    "resize": ["16", "16,16", "24,20", "0", "-3", "1,2,3", "100000", "2147483647",
               "99999999999999999999"],
    "crop": ["16", "16,16", "8,8", "0", "1,2,3", "100000", "2147483647"],
    "target": ["cos=0.99", "cos=2", "top1-drop=0.5", "top1-drop=-1", "cos", "=", "x=1",
               "cos=nan"],
    "smooth": ["0.5", "auto", "off", "default", "2", "nan", "-1"],
    "keep_float": ["Softmax", "Nope", ",", "Softmax,,Relu"],
    "metric": ["top1", "top5,cos", "psnr", "ssim", "cos", "nope", ",", "top1,top1"],
    "passes": ["fold_constants", "nope", ",", ""],
    "output_name": ["logits", "nope", ""],
    "title": ["t", ""],
    "backend": ["ort", "openvino", "nope", ""],
    "opset": ["11", "13", "17", "21", "10", "0", "-1", "1000000", *HUGE[:1]],
    "recipe_from": ["{in}/model.int8.onnx", "{in}/model.f32.onnx", "{in}/x.npz"],
    "memory_budget": ["1M", "512M", "0", "-1", "1e400", "abc", "99999999999T"],
}
PATHS = ["{in}/model.onnx", "{in}/model.f32.onnx", "{in}/model.int8.onnx", "{in}/x.npz",
         "{in}/model.calib", "{in}/model.qtable", "{in}/recipe.toml", "{in}/cat.png",
         "{in}/classes.txt", "{in}/model.meta.json", "{in}", "{in}/missing.onnx",
         "{out}", "{out}/missing.npz", "", "/dev/null", "{in}/ref_outputs.npz"]
OUTPUTS = ["{out}/a.onnx", "{out}/deep/er/b.onnx", "{out}", "{in}/x.npz", "{in}/model.onnx",
           "{in}/model.calib", "{in}", "{in}/new.bin", "", "/dev/null"]
OUTPUT_DESTS = {"output", "csv", "plot", "dump", "reference_output", "reference_input",
                "workdir"}
TOKENS = ["--nope", "-", "--", "-o", "--num", "-vv", "--help", "--version", "@args", "=",
          "--num=3", "\u2014num"]


@functools.cache
def command_parser_of(verb: str) -> argparse.ArgumentParser:
    parser = command_parser(build_parser([verb]), verb)
    assert parser is not None, verb
    return parser


def verbs() -> list[str]:
    """Every command the parser knows, in its order."""
    top = build_parser(["info"])
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise AssertionError("lowbit's parser has no commands")


def _actions(verb: str) -> list[argparse.Action]:
    return [a for a in command_parser_of(verb)._actions
            if not isinstance(a, argparse._HelpAction) and a.dest != "verbose"]


def _action_for(verb: str, dests: str) -> argparse.Action | None:
    for dest in dests.split("|"):
        found = [a for a in _actions(verb) if a.dest == dest]
        visible = [a for a in found if a.help != argparse.SUPPRESS] or found
        if visible:
            return visible[0]
    return None


def _tokens(action: argparse.Action, value: str) -> list[str]:
    if not action.option_strings:
        return [value]
    flag = action.option_strings[0]
    return [flag] if action.nargs == 0 else [flag, value]


def base_argv(verb: str) -> list[list[str]]:
    """The verb's valid call as groups of tokens (a positional, or a flag and its value)."""
    bases = BASES.get(verb) or REFUSALS_ONLY.get(verb, [])
    positional, optional = [], []
    for dests, value in bases:
        action = _action_for(verb, dests)
        if action is None:
            continue  # an option this build does not have
        (optional if action.option_strings else positional).append(_tokens(action, value))
    return positional + optional


def values_for(action: argparse.Action) -> st.SearchStrategy[str]:
    dest = action.dest
    if dest in OUTPUT_DESTS:
        pool = OUTPUTS
    elif dest in BY_DEST:
        pool = BY_DEST[dest] + ["", "abc"]
    elif action.choices:
        pool = [str(c) for c in action.choices] + ["", "nope", "INT4", "int8"]
    elif action.type is int:
        pool = INTS
    elif action.type is float:
        pool = BY_DEST["percentile"] + ["abc", ""]
    else:
        pool = PATHS
    return st.sampled_from(pool) | st.sampled_from(TEXTS)


MUTATIONS = {"value": 3, "add": 2, "drop": 1, "other": 1}  # CI examples of each per verb


@st.composite
def argv_cases(draw: st.DrawFn, verb: str, mutation: str) -> tuple[str, list[str]]:
    """(what was done, argv) for ``verb``: its base with one ``mutation`` (see MUTATIONS;
    "other" is the base itself, a duplicated argument or a stray token)."""
    groups = base_argv(verb)
    actions = _actions(verb)
    if mutation == "other":
        mutation = draw(st.sampled_from(["none", "duplicate", "token"]))
    if verb in REFUSALS_ONLY and mutation in ("none", "drop"):
        mutation = "value"
    if mutation == "value" and groups:
        index = draw(st.integers(0, len(groups) - 1))
        group = groups[index]
        action = next((a for a in actions if group[0] in a.option_strings), None) \
            if len(group) > 1 or group[0].startswith("-") else _positional(actions, groups,
                                                                           index)
        if action is not None and action.nargs != 0:
            value = draw(values_for(action))
            groups[index] = [*group[:-1], value] if action.option_strings else [value]
    elif mutation == "drop" and groups:
        groups.pop(draw(st.integers(0, len(groups) - 1)))
    elif mutation == "add":
        action = draw(st.sampled_from([a for a in actions if a.option_strings]))
        value = draw(values_for(action)) if action.nargs != 0 else ""
        groups.append(_tokens(action, value))
    elif mutation == "duplicate" and groups:
        groups.append(list(groups[draw(st.integers(0, len(groups) - 1))]))
    elif mutation == "token":
        groups.insert(draw(st.integers(0, len(groups))), [draw(st.sampled_from(TOKENS))])
    what = f"{verb} {mutation}"
    return what, [verb] + [token for group in groups for token in group]


def _positional(actions: Sequence[argparse.Action], groups: list[list[str]],
                index: int) -> argparse.Action | None:
    positionals = [a for a in actions if not a.option_strings]
    before = sum(1 for g in groups[:index] if not g[0].startswith("-") and len(g) == 1)
    if not positionals:
        return None
    return positionals[min(before, len(positionals) - 1)]


def resolve(argv: Sequence[str], inp: str, out: str) -> list[str]:
    """The argv with the template's folders replaced by the case's."""
    return [token.replace("{in}", inp).replace("{out}", out) for token in argv]
