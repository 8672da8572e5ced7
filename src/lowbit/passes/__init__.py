"""Graph rewrites that keep the model's function.

    from lowbit.passes import canonicalize, optimize, list_passes
    model, report = canonicalize(onnx_model, input_shapes={"input": (1, 3, 224, 224)})
    result = optimize(model)                      # DEFAULT_PASSES; or optimize(model, ["fold_constants"])
    print(result.summary())                       # "212 → 140 nodes: fold_batchnorm 20, ..."
    for p in list_passes():
        print(p.name, "-", p.description)

Each pass lives in its own module and works on the onnx-ir graph, as rewrite rules
run by one driver (lowbit.passes.rewrite) or as a wrapper of an onnx-ir/onnxscript
pass; importing this package registers them all. `canonicalize` runs the clean-up
that transform, calibrate and deploy all rely on, through the same passes.
"""

from lowbit.passes import (  # noqa: F401 - importing registers the passes
    affine,
    collapse_reshapes,
    eliminate_concat,
    eliminate_cse,
    fold_constants,
    fuse_horizontal,
    fuse_pad,
    inline_functions,
    lift_constants,
    remove_dead,
    remove_noops,
)
from lowbit.passes.canonical import CanonicalizeReport, canonicalize
from lowbit.passes.fold_batchnorm import fold_batchnorm
from lowbit.passes.optimize import (
    DEFAULT_PASSES,
    OptimizeResult,
    PassStep,
    optimize,
    optimize_ir,
    resolve_passes,
)
from lowbit.passes.registry import GraphPass, get_pass, list_passes
from lowbit.passes.remove_noops import remove_dropout, remove_identity, remove_noop_casts

__all__ = [
    "DEFAULT_PASSES",
    "CanonicalizeReport",
    "GraphPass",
    "OptimizeResult",
    "PassStep",
    "canonicalize",
    "fold_batchnorm",
    "get_pass",
    "list_passes",
    "optimize",
    "optimize_ir",
    "remove_dropout",
    "remove_identity",
    "remove_noop_casts",
    "resolve_passes",
]
