"""Refuse a command whose output would land on one of its own inputs.

    check_distinct({"{model}": model, "{dataset}": dataset},
                   {"{output}": output, "{dump}": OutputDir(dump, ("reference.npz", "test.npz"))})

Each mapping goes from the argument, as a ``{keyword}`` placeholder (lowbit.errors.
ArgumentError: the Python keyword for an API caller, the flag on the command line), to
a path, or None when it was not given. An output is refused, with an ArgumentError
naming both arguments and the file, when it is the same file as an input or as another output, or lies
inside an input folder (a data set folder would gain a file). "Same file" covers
symlinks, hard links, relative and absolute spellings: existing files are compared by
device and inode (os.path.samefile), files still to be written by their resolved path.
An :class:`OutputDir` stands for the files a command writes inside a folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lowbit.errors import ArgumentError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class OutputDir:
    """A folder output (report -o DIR, compare --dump DIR) and the files written in it."""

    path: PathLike
    files: Sequence[str]


def check_distinct(inputs: Mapping[str, PathLike | None],
                   outputs: Mapping[str, PathLike | OutputDir | None]) -> None:
    """Raise ArgumentError when an output would overwrite an input or another output."""
    given_inputs = [(label, Path(path)) for label, path in inputs.items() if path is not None]
    written = list(_written_files(outputs))
    for index, (label, path, shown) in enumerate(written):
        for in_label, in_path in given_inputs:
            if _same_file(path, in_path):
                raise ArgumentError(f"{shown} is the same file as {in_label} {in_path}; writing "
                                 f"it would destroy that input: write to another path")
            if _inside_folder(path, in_path):
                raise ArgumentError(f"{shown} is inside the {in_label} folder {in_path}; writing "
                                 f"it would add a file to that input: write it elsewhere")
        for other_label, other, other_shown in written[:index]:
            if _same_file(path, other):
                raise ArgumentError(f"{shown} and {other_shown} are the same file; "
                                 f"give {label} and {other_label} different paths")


def _written_files(outputs: Mapping[str, PathLike | OutputDir | None]
                   ) -> Iterator[tuple[str, Path, str]]:
    """(option, file, how the message names it) for every file the outputs write."""
    for label, output in outputs.items():
        if output is None:
            continue
        if isinstance(output, OutputDir):
            folder = Path(output.path)
            for name in output.files:
                yield label, folder / name, f"{label} {folder} (its {name})"
        else:
            yield label, Path(output), f"{label} {output}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): where it would be
        return _resolved(a) == _resolved(b)


def _inside_folder(path: Path, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    target = _resolved(folder)
    for parent in Path(_resolved(path)).parents:
        if parent == Path(target):
            return True
        try:
            if os.path.samefile(parent, folder):
                return True
        except OSError:
            continue
    return False


def _resolved(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))
