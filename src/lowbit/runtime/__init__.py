"""Executing models: ONNX Runtime is the default engine."""

from lowbit.runtime.ort import OrtRunner, create_session

__all__ = ["OrtRunner", "create_session"]
