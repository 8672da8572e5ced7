"""lowbit: deploy trained neural networks at lower precision."""

__version__ = "0.1.0"
