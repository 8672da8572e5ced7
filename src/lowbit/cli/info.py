"""`lowbit info`: what a model is and how lowbit made it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lowbit.cli.options import add_json_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Print a model's precision, opset, inputs and outputs, and "
                       "for a model lowbit deployed its provenance: the recipe, lowbit's and "
                       "ONNX Runtime's versions, the CPU features that chose the weight grids, "
                       "the steps run and the size and SHA-256 of every input file.")
    p.add_argument("model", help="an ONNX model")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console

        found = api.info(args.model)
        facts = _info_facts(found)
        if args.json:
            console.print(json.dumps(facts, indent=2), markup=False, soft_wrap=True)
            return 0
        for key in ("path", "bytes", "precision", "opset", "nodes", "producer"):
            console.print(f"{key}: {facts[key]}", markup=False)
        for spec in found.inputs:
            console.print(f"input {spec.name}: {spec.dtype} {spec.shape_text()}", markup=False)
        console.print(f"outputs: {', '.join(found.outputs)}", markup=False)
        prov = found.provenance
        if not prov.present:
            console.print("provenance: none recorded (not written by lowbit deploy)")
            return 0
        console.print("steps: " + ", ".join(prov.steps), markup=False)
        for key, value in sorted(prov.versions.items()):
            console.print(f"version {key}: {value}", markup=False)
        console.print(f"cpu: {json.dumps(dict(prov.cpu), sort_keys=True)}", markup=False)
        for name, stamp in sorted(prov.inputs.items()):
            console.print(f"input file {name}: {stamp.path} ({stamp.bytes} bytes, sha256 "
                          f"{stamp.sha256[:16]}…)", markup=False)
        console.print(f"graph sha256: {prov.graph_sha256}", markup=False)
        console.print("recipe:\n" + prov.recipe_text, markup=False, end="")
        return 0

    p.set_defaults(run=run)


def _info_facts(found: Any) -> dict[str, Any]:
    prov = found.provenance
    return {
        "path": str(found.path), "bytes": found.bytes, "precision": found.precision,
        "opset": found.opset, "nodes": found.nodes, "producer": found.producer,
        "inputs": [{"name": s.name, "dtype": str(s.dtype), "shape": s.shape_text()}
                   for s in found.inputs],
        "outputs": list(found.outputs),
        "provenance": None if not prov.present else {
            "steps": list(prov.steps), "versions": dict(prov.versions), "cpu": dict(prov.cpu),
            "inputs": {k: vars(v) for k, v in prov.inputs.items()},
            "graph_sha256": prov.graph_sha256, "recipe": prov.recipe_text},
    }
