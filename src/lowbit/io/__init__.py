"""Reading and writing models."""

from lowbit.io.model import input_specs, load_model, output_names, save_model

__all__ = ["input_specs", "load_model", "output_names", "save_model"]
