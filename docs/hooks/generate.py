"""mkdocs hook: the pages that are made from the code and from BENCHMARKS.md at build time.

    mkdocs build --strict          # mkdocs.yml: hooks: [docs/hooks/generate.py]

- ``reference/options.md``: every command's usage, description and options, read from
  the real parsers (``lowbit.cli.main.build_parser()`` and lowbit-run's), so the page can
  never disagree with ``--help``. Hidden aliases (help=argparse.SUPPRESS) are left out.
- ``benchmarks/index.md`` and one page per ``##`` section of BENCHMARKS.md, in the file's
  order, listed in the navigation under "Benchmarks": whatever sections the file has.
- ``<!-- generated: NAME -->`` lines in any page are replaced by the text NAME's function
  below makes (the default recipe, the graph passes); an unknown NAME stops the build.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPTIONS_PAGE = "reference/options.md"
BENCH_INDEX = "benchmarks/index.md"
USAGE_WIDTH = 88
MARKER = re.compile(r"^<!-- generated: ([a-z0-9-]+) -->$", re.MULTILINE)


# --- the options reference ---------------------------------------------------------


def options_page() -> str:
    """The options reference: lowbit's global options, then each command in the order
    ``lowbit --help`` lists them, then lowbit-run."""
    from lowbit.cli.main import build_parser

    parser = build_parser()
    intro = ("Generated from the command-line parsers when this site is built: what "
             "`--help` prints, as tables. Every command also takes `-h`/`--help`.")
    lines = ["# Options reference", "", intro, ""]
    lines += _parser_section("lowbit", parser, level=2, skip_groups=("positional arguments",))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines += ["Commands:", "", "| command | what it does |", "|---|---|"]
    for choice in sub._choices_actions:
        lines.append(f"| [`{choice.dest}`](#lowbit-{choice.dest}) | {_cell(choice.help)} |")
    lines.append("")
    for name, command in sub.choices.items():
        lines += _parser_section(f"lowbit {name}", command, level=2)
    lines += _parser_section("lowbit-run", lowbit_run_parser(), level=2)
    return "\n".join(lines) + "\n"


def lowbit_run_parser() -> argparse.ArgumentParser:
    """lowbit-run's parser, caught as its main() is about to parse (lowbit_run.cli builds
    it inside main and has no function that returns it)."""
    from lowbit_run import cli

    class Caught(Exception):
        def __init__(self, parser: argparse.ArgumentParser) -> None:
            self.parser = parser

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise Caught(self)

    with _patched(argparse.ArgumentParser, "parse_args", catch):
        try:
            cli.main([])
        except Caught as caught:
            return caught.parser
    raise RuntimeError("lowbit_run.cli.main returned without parsing its arguments")


@contextmanager
def _patched(owner: Any, name: str, value: object) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _parser_section(title: str, parser: argparse.ArgumentParser, *, level: int,
                    skip_groups: tuple[str, ...] = ()) -> list[str]:
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)  # type: ignore[call-arg]
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    lines = [f"{'#' * level} {title}", ""]
    if parser.description:
        lines += [_text(parser.description), ""]
    lines += ["```text", formatter.format_help().strip(), "```", ""]
    for group in parser._action_groups:
        if group.title in skip_groups:
            continue
        actions = [a for a in group._group_actions if _shown(a)]
        if not actions:
            continue
        lines += [f"**{group.title}**", ""]
        if group.description:
            lines += [_text(group.description), ""]
        lines += ["| option | description |", "|---|---|"]
        for action in actions:
            lines.append(f"| {_invocation(action)} | {_cell(_help(formatter, action))} |")
        lines.append("")
    return lines


def _shown(action: argparse.Action) -> bool:
    return (action.help != argparse.SUPPRESS
            and not isinstance(action, argparse._HelpAction | argparse._SubParsersAction))


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:  # a positional argument
        return f"`{action.metavar or action.dest}`"
    value = ""
    if action.nargs != 0:
        if action.choices is not None and action.metavar is None:
            value = "{" + ",".join(str(c) for c in action.choices) + "}"
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else None
            value = metavar or action.dest.upper()
        if action.nargs == "?":
            value = f"[{value}]"
    spellings = ", ".join(f"{option} {value}".strip() for option in action.option_strings)
    return f"`{spellings}`"


def _help(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """The help text exactly as --help prints it, defaults expanded."""
    return formatter._expand_help(action) if action.help else ""


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str | None) -> str:
    """Prose for a table cell: one line, and no character that would end the cell or
    start markup."""
    return _text(text or "").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


# --- benchmarks by topic --------------------------------------------------------------


@dataclass(frozen=True)
class BenchSection:
    title: str
    uri: str
    body: str


def split_benchmarks(text: str) -> tuple[str, list[BenchSection]]:
    """BENCHMARKS.md as its preamble and one section per ``##`` heading (headings inside
    fenced code blocks are not headings)."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
        if fence is None and line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        elif not line.startswith("# "):
            preamble.append(line)
    used: set[str] = set()
    made = []
    for title, body in sections:
        slug = _slug(title)
        while slug in used:
            slug += "-2"
        used.add(slug)
        made.append(BenchSection(title, f"benchmarks/{slug}.md", "\n".join(body).strip()))
    return "\n".join(preamble).strip(), made


def _slug(title: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return words[:60].rstrip("-") or "section"


def _benchmark_page(section: BenchSection) -> str:
    return f"# {section.title}\n\n{_promote_headings(_plain_links(section.body))}\n"


def _index_page(preamble: str, sections: list[BenchSection]) -> str:
    links = "\n".join(f"- [{s.title}]({Path(s.uri).name})" for s in sections)
    return (f"# Benchmarks\n\n{_plain_links(preamble)}\n\nThese pages are BENCHMARKS.md, one "
            f"page per section, made from the file when this site is built.\n\n{links}\n")


def _promote_headings(text: str) -> str:
    """``###`` becomes ``##`` (the section's own ``##`` is the page title), outside code."""
    out, fence = [], None
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
        if fence is None and re.match(r"#{3,6} ", line):
            line = line[1:]
        out.append(line)
    return "\n".join(out)


def _plain_links(text: str) -> str:
    """Links to repository files (relative paths) would point nowhere on the site: keep
    their text and show the path."""
    def plain(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        return f"{label} (`{target}`)"
    return re.sub(r"!?\[([^\]]*)\]\(([^)\s]+)\)", plain, text)


# --- snippets made from the code ------------------------------------------------------


def recipe_defaults() -> str:
    """What ``lowbit deploy model.f32.onnx --calibration-table work/model.calib
    --print-recipe`` prints: every setting of the default INT8 recipe."""
    import lowbit
    from lowbit.recipe import recipe_text

    return "```toml\n" + recipe_text(lowbit.plan(calibration_table="work/model.calib")) \
        + "```"


def recipe_fields() -> str:
    """Every setting of a recipe: its TOML key, default, deploy flag and Python keyword."""
    from dataclasses import MISSING, fields, is_dataclass

    from lowbit.cli.deploy import flag_for
    from lowbit.cli.main import build_parser
    from lowbit.recipe import AdaRounding, Equalization, Recipe
    from lowbit.recipe.document import _toml_value
    from lowbit.recipe.options import keyword_for

    parser = build_parser(["deploy"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {o for a in sub.choices["deploy"]._actions if _shown(a) for o in a.option_strings}

    def default_text(value: object) -> str:
        if value is None:
            return "not set"
        try:
            return f"`{_toml_value(value)}`"
        except TypeError:
            return f"`{value}`"

    def row(key: str, value: object) -> str:
        flag = flag_for(key)
        flag_text = f"`{flag}`" if flag in flags else "—"
        return f"| `{key}` | {default_text(value)} | {flag_text} | `{keyword_for(key)}` |"

    optional = {"equalize": Equalization, "adaround": AdaRounding}  # a table turns it on
    top, sections = [], []
    for f in fields(Recipe):
        factory: Any = f.default_factory
        value = f.default if f.default is not MISSING else factory()
        if f.name in optional:
            sections.append((f.name, optional[f.name](), " (the table turns the step on)"))
        elif is_dataclass(value):
            sections.append((f.name, value, ""))
        else:
            top.append(row(f.name, value))
    lines = ["| key | default | deploy flag | Python keyword |", "|---|---|---|---|", *top]
    for name, section, note in sections:
        lines.append(f"| **`[{name}]`**{note} | | | |")
        lines += [row(f"{name}.{g.name}", getattr(section, g.name)) for g in fields(section)]
    return "\n".join(lines)


def graph_passes() -> str:
    from lowbit.passes import DEFAULT_PASSES, list_passes

    rows = ["| pass | default | what it does |", "|---|---|---|"]
    by_name = {p.name: p for p in list_passes()}
    ordered = [*DEFAULT_PASSES, *sorted(set(by_name) - set(DEFAULT_PASSES))]
    for name in ordered:
        rows.append(f"| `{name}` | {'yes' if name in DEFAULT_PASSES else 'no'} | "
                    f"{_cell(by_name[name].description)} |")
    return "\n".join(rows)


SNIPPETS: dict[str, Callable[[], str]] = {
    "recipe-defaults": recipe_defaults,
    "graph-passes": graph_passes,
    "recipe-fields": recipe_fields,
}


# --- mkdocs events ----------------------------------------------------------------------


_BENCH: dict[str, Any] = {}


def on_config(config: Any) -> Any:
    """Read BENCHMARKS.md and put one navigation entry per section under "Benchmarks"."""
    root = Path(config.config_file_path).parent
    preamble, sections = split_benchmarks((root / "BENCHMARKS.md").read_text(encoding="utf-8"))
    _BENCH.update(preamble=preamble, sections=sections)
    entries = [BENCH_INDEX, *({s.title: s.uri} for s in sections)]
    config.nav = [_expand_bench(item, entries) for item in (config.nav or [])]
    return config


def _expand_bench(item: Any, entries: list[Any]) -> Any:
    if isinstance(item, dict):
        return {key: (entries if value == BENCH_INDEX else
                      [_expand_bench(v, entries) for v in value] if isinstance(value, list)
                      else value) for key, value in item.items()}
    return item


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    pages = {OPTIONS_PAGE: options_page(),
             BENCH_INDEX: _index_page(_BENCH["preamble"], _BENCH["sections"])}
    pages.update({s.uri: _benchmark_page(s) for s in _BENCH["sections"]})
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def made(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SNIPPETS:
            raise ValueError(f"{page.file.src_uri}: no generated snippet '{name}'; known: "
                             f"{', '.join(sorted(SNIPPETS))}")
        return SNIPPETS[name]()
    return MARKER.sub(made, markdown)
