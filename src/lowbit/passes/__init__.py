"""Graph rewrites that keep the model's function.

    from lowbit.passes import canonicalize
    model = canonicalize(onnx_model, input_shapes={"input": (1, 3, 224, 224)})

Each pass lives in its own module and works on the onnx-ir graph; `canonicalize`
runs the clean-up that transform, calibrate and deploy all rely on.
"""

from lowbit.passes.canonical import CanonicalizeReport, canonicalize
from lowbit.passes.fold_batchnorm import fold_batchnorm
from lowbit.passes.remove_noops import remove_dropout, remove_identity

__all__ = [
    "CanonicalizeReport",
    "canonicalize",
    "fold_batchnorm",
    "remove_dropout",
    "remove_identity",
]
