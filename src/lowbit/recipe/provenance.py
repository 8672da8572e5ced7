"""Where a model came from, written into the model itself (ONNX ``metadata_props``).

    stamp(model, recipe, source="work/model.f32.onnx", steps=("smooth", "int8"))
    found = read_provenance(onnx.load("work/model.int8.onnx"))
    found.recipe, found.inputs["calibration_table"].sha256, found.graph_sha256
    same = graph_sha256(new_model) == found.graph_sha256     # bit-identical graph?

Recorded: the recipe (TOML), lowbit's, ONNX Runtime's, onnx's and numpy's versions,
the CPU and the ISA features that chose the INT8 weight grids (whether ONNX Runtime's
uint8×int8 kernels saturate here, and the paired layouts it confirmed, or the
LOWBIT_FORCE_ISA override that chose them instead), the steps run,
and the path, size and SHA-256 of the float model and every file the recipe read
(calibration table, qtable, data sets). ``graph_sha256`` hashes the model without its
metadata, so two builds compare by what they compute, not by when they were made.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from lowbit.errors import RecipeError
from lowbit.recipe.document import parse_recipe, recipe_text
from lowbit.recipe.recipe import Recipe
from lowbit.runtime.isa import ENV_VAR as ISA_OVERRIDE

PREFIX = "lowbit."
#: ISA flags that decide INT8 and BF16 paths on x86 (/proc/cpuinfo names)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
             "amx_bf16", "avx512_fp16", "asimddp", "i8mm", "bf16")


@dataclass(frozen=True)
class FileStamp:
    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Provenance:
    """What ``read_provenance`` found in a model; empty fields where it holds none."""

    recipe: Recipe | None = None
    recipe_text: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    cpu: Mapping[str, object] = field(default_factory=dict)
    inputs: Mapping[str, FileStamp] = field(default_factory=dict)
    steps: tuple[str, ...] = ()
    graph_sha256: str = ""

    @property
    def present(self) -> bool:
        return bool(self.recipe_text or self.versions)


def file_stamp(path: str | Path) -> FileStamp:
    """Size and SHA-256 of a file, or of a folder's files (names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    total = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for item in files:
        if path.is_dir():
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        with item.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                total += len(block)
    return FileStamp(str(path), total, digest.hexdigest())


def graph_sha256(model: onnx.ModelProto) -> str:
    """SHA-256 of the model serialized without its metadata_props (deterministically)."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def versions() -> dict[str, str]:
    import numpy
    import onnxruntime

    from lowbit import __version__

    return {"lowbit": __version__, "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def cpu_description(precision: str) -> dict[str, object]:
    """The CPU, its ISA flags that matter to lowbit and, for INT8, what ONNX Runtime's
    probes said about the weight grids here."""
    name, flags = _cpuinfo()
    found: dict[str, object] = {"machine": platform.machine(), "model": name,
                                "flags": [f for f in ISA_FLAGS if f in flags]}
    forced = os.environ.get(ISA_OVERRIDE, "").strip()
    if forced:  # the grids below were chosen for these forced facts, not this CPU's
        found["forced_isa"] = forced
    if precision == "INT8":
        from lowbit.runtime.ort import int8_saturates, u8s8_layouts

        saturates = int8_saturates()
        found["u8s8_saturates"] = saturates
        if saturates:
            found["paired_layouts"] = sorted(u8s8_layouts())
    return found


def stamp(model: onnx.ModelProto, recipe: Recipe, *, source: str | Path,
          steps: Sequence[str]) -> onnx.ModelProto:
    """``model`` with its provenance in metadata_props (in place; also returned)."""
    inputs = {"model": file_stamp(source)}
    inputs.update({name: file_stamp(path) for name, path in recipe.data_sets().items()
                   if Path(path).exists()})
    props = {
        "recipe": recipe_text(recipe),
        "versions": json.dumps(versions(), sort_keys=True),
        "cpu": json.dumps(cpu_description(recipe.precision), sort_keys=True),
        "inputs": json.dumps({k: vars(v) for k, v in inputs.items()}, sort_keys=True),
        "steps": ",".join(steps),
        "graph_sha256": graph_sha256(model),
    }
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=PREFIX + key, value=value)
    return model


def read_provenance(model: onnx.ModelProto, where: str = "the model") -> Provenance:
    props = {p.key[len(PREFIX):]: p.value for p in model.metadata_props
             if p.key.startswith(PREFIX)}
    if not props:
        return Provenance()
    try:
        text = props.get("recipe", "")
        recipe = parse_recipe(text, f"the recipe recorded in {where}") if text else None
        inputs = {k: FileStamp(**v) for k, v in json.loads(props.get("inputs", "{}")).items()}
        return Provenance(recipe, text, json.loads(props.get("versions", "{}")),
                          json.loads(props.get("cpu", "{}")), inputs,
                          tuple(s for s in props.get("steps", "").split(",") if s),
                          props.get("graph_sha256", ""))
    except (ValueError, TypeError) as err:
        raise RecipeError(f"the lowbit provenance recorded in {where} is damaged: {err}") \
            from None


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name or platform.processor() or platform.machine(), flags


def differences(recorded: Provenance, now: Provenance) -> list[str]:
    """What differs between two builds' provenance, one line each: the inputs' contents,
    the versions, the CPU facts that chose weight grids, the steps and the recipe."""
    found = []
    for name in sorted(set(recorded.inputs) | set(now.inputs)):
        old, new = recorded.inputs.get(name), now.inputs.get(name)
        if old is None or new is None:
            found.append(f"{name}: {'not recorded before' if old is None else 'not read now'}")
        elif old.sha256 != new.sha256:
            found.append(f"{name}: contents differ ({old.path}, {old.bytes} bytes then; "
                         f"{new.path}, {new.bytes} bytes now)")
    for key in sorted(set(recorded.versions) | set(now.versions)):
        if recorded.versions.get(key) != now.versions.get(key):
            found.append(f"{key} version: {recorded.versions.get(key)} then, "
                         f"{now.versions.get(key)} now")
    for key in ("model", "flags", "u8s8_saturates", "paired_layouts"):
        if recorded.cpu.get(key) != now.cpu.get(key):
            found.append(f"CPU {key}: {recorded.cpu.get(key)} then, {now.cpu.get(key)} now")
    if recorded.steps != now.steps:
        found.append(f"steps: {', '.join(recorded.steps)} then, {', '.join(now.steps)} now")
    if recorded.recipe_text != now.recipe_text:
        found.append("recipe: the settings differ (lowbit info shows both)")
    return found
