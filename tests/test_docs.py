"""The README and the documentation site: every `lowbit ...` line names a real command and
real options, the generated pages follow the parsers and BENCHMARKS.md, and
`mkdocs build --strict` passes (where mkdocs-material is installed: the `docs` extra,
which CI installs).

    python -m pytest -q tests/test_docs.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from lowbit.cli.main import build_parser
from lowbit.cli.registry import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FIRST_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/lowbit demo",
    "bash .ci/run",
)
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>&1"}


def _hook() -> ModuleType:
    """docs/hooks/generate.py, the mkdocs hook, imported as a module."""
    name = "docs_hook_generate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / "generate.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _pages() -> list[Path]:
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)]


# --- the README's shape ----------------------------------------------------------------


def test_readme_opens_with_the_two_commands_and_stays_short() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert [b.strip() for b in blocks[:2]] == list(FIRST_COMMANDS)
    before = text[:text.index("```bash")]
    assert before.strip() == "# lowbit", "nothing but the title before the two commands"
    assert len(text.splitlines()) <= 250
    assert "source .venv/bin/activate" in text
    assert 'np.savez("samples.npz", input=x)' in text


def test_the_extras_tables_name_every_extra_pyproject_has() -> None:
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
                 ["project"]["optional-dependencies"])
    for page in (README, DOCS / "getting-started.md"):
        text = page.read_text(encoding="utf-8")
        table = text[text.index("| extra |"):].split("\n\n")[0]
        named = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, flags=re.MULTILINE))
        assert named == extras, (f"{page.name}'s extras table: not in pyproject.toml "
                                 f"{sorted(named - extras)}, missing {sorted(extras - named)}")


# --- command lines in README.md and docs/ ------------------------------------------------


@dataclass(frozen=True)
class CommandLine:
    page: Path
    text: str
    tokens: list[str]


def command_lines() -> Iterator[CommandLine]:
    """Every `lowbit ...` / `lowbit-run ...` invocation in bash blocks and inline code."""
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^```(?:bash|sh|console)\n(.*?)^```", text,
                                flags=re.DOTALL | re.MULTILINE):
            for line in block.replace("\\\n", " ").splitlines():
                yield from _invocations(page, line)
        prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if re.match(r"(\S*/)?lowbit(-run)? ", span):
                yield from _invocations(page, span)


def _invocations(page: Path, line: str) -> Iterator[CommandLine]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in SEPARATORS:
            if segment and Path(segment[0]).name in ("lowbit", "lowbit-run"):
                yield CommandLine(page, line.strip(), segment)
            segment = []
        else:
            segment.append(token)
    # redirections are dropped with their target by _arguments


def _arguments(tokens: list[str]) -> list[str]:
    out, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in REDIRECTIONS:
            skip = True
        else:
            out.append(token)
    return out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings}


def _problems(line: CommandLine, main: argparse.ArgumentParser,
              commands: dict[str, argparse.ArgumentParser],
              run_parser: argparse.ArgumentParser) -> list[str]:
    args = _arguments(line.tokens)[1:]
    where = f"{line.page.relative_to(ROOT)}: {line.text!r}"
    found = []
    main_options = _visible(main)
    while args and args[0].startswith("-") and Path(line.tokens[0]).name != "lowbit-run":
        action = main_options.get(args[0].partition("=")[0])  # lowbit's own options first
        if action is None:
            break
        args = args[1 + (action.nargs != 0 and "=" not in args[0]):]
    if Path(line.tokens[0]).name == "lowbit-run":
        parser = run_parser
    elif args and not args[0].startswith("-"):
        if args[0] not in COMMANDS:
            return [f"{where}: no command {args[0]!r}"]
        parser, args = commands[args[0]], args[1:]
    else:
        parser = main
    options = _visible(parser)
    for i, token in enumerate(args):
        if not token.startswith("-") or token == "-" or re.match(r"-\d", token):
            continue
        flag, _, inline = token.partition("=")
        action = options.get(flag)
        if action is None:
            found.append(f"{where}: {flag} is not an option of {parser.prog}")
            continue
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        if action.choices is not None and value and not value.startswith("-"):
            allowed = {str(c).lower() for c in action.choices}
            bad = [v for v in value.split("|") if v.lower() not in allowed]
            if bad:
                found.append(f"{where}: {flag} {value}: not one of {sorted(allowed)}")
    return found


def test_every_command_line_names_real_commands_and_options() -> None:
    hook = _hook()
    main = build_parser()
    commands = _subparsers(main)
    run_parser = hook.lowbit_run_parser()
    lines = list(command_lines())
    assert len(lines) > 100, "the extractor found too few command lines to be working"
    assert {Path(line.tokens[0]).name for line in lines} == {"lowbit", "lowbit-run"}
    named = {line.tokens[1] for line in lines if len(line.tokens) > 1}
    assert set(COMMANDS) <= named, f"commands no page shows: {set(COMMANDS) - named}"
    problems = [p for line in lines for p in _problems(line, main, commands, run_parser)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_hidden_alias_and_an_unknown_option() -> None:
    main = build_parser()
    commands = _subparsers(main)
    run_parser = _hook().lowbit_run_parser()
    page = README
    bad = [
        "lowbit calibrate m.onnx --dataset calib.npz -o m.calib",  # hidden alias
        "lowbit deploy m.onnx --method full -o x.onnx",  # deploy's old name, hidden
        "lowbit transform m.onnx -o x.onnx --no-such-flag",
        "lowbit deploy m.onnx --quantize INT4 -o x.onnx",
        "lowbit frobnicate m.onnx",
        "lowbit-run m.lowbit --image cat.jpg",
    ]
    for text in bad:
        lines = list(_invocations(page, text))
        assert lines and _problems(lines[0], main, commands, run_parser), text
    good = list(_invocations(page, "cd x && lowbit deploy m.onnx --print-recipe > r.toml"))
    assert len(good) == 1 and not _problems(good[0], main, commands, run_parser)


# --- the generated pages ---------------------------------------------------------------


def test_options_page_is_every_visible_option_of_every_command() -> None:
    page = _hook().options_page()
    commands = _subparsers(build_parser())
    sections = re.split(r"^## ", page, flags=re.MULTILINE)
    by_title = {s.splitlines()[0].strip(): s for s in sections[1:]}
    assert list(by_title) == ["lowbit", *(f"lowbit {name}" for name in COMMANDS), "lowbit-run"]
    for name, parser in commands.items():
        shown = set(re.findall(r"^\| `([^`]+)` \|", by_title[f"lowbit {name}"], re.MULTILINE))
        spellings = {s.split(" ")[0] for row in shown for s in row.split(", ")}
        expected = {o for a in parser._actions if a.help != argparse.SUPPRESS
                    and not isinstance(a, argparse._HelpAction) for o in a.option_strings}
        positionals = {a.metavar or a.dest for a in parser._actions if not a.option_strings}
        hidden = {o for a in parser._actions if a.help == argparse.SUPPRESS
                  for o in a.option_strings}
        assert spellings == expected | positionals, name
        assert not spellings & hidden, name


def test_benchmark_pages_follow_the_sections_of_benchmarks_md() -> None:
    hook = _hook()
    text = "# Benchmarks\n\nIntro.\n\n## First (issue 1)\n\nA\n\n```\n## not a heading\n```\n\n" \
           "### Sub\n\n## Second\n\nB [bench](bench/README.md) [x](https://example.com)\n"
    preamble, sections = hook.split_benchmarks(text)
    assert preamble == "Intro."
    assert [s.title for s in sections] == ["First (issue 1)", "Second"]
    assert [s.uri for s in sections] == ["benchmarks/first-issue-1.md", "benchmarks/second.md"]
    first, second = (hook._benchmark_page(s) for s in sections)
    assert "## not a heading" in first and "\n## Sub" in first
    assert "bench (`bench/README.md`)" in second and "](https://example.com)" in second
    real = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    _, made = hook.split_benchmarks(real)
    headings = [line for line in real.splitlines() if line.startswith("## ")]
    assert len(made) == len(headings) and len({s.uri for s in made}) == len(made)


def test_docs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    options = (site / "reference" / "options" / "index.html").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f'id="lowbit-{name}"' in options, name
    assert (site / "benchmarks" / "index.html").exists()
    for page in (DOCS / "commands").glob("*.md"):
        assert (site / "commands" / page.stem / "index.html").exists(), page.name
