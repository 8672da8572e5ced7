"""lowbit-run: run a model that ``lowbit package`` bundled, where lowbit is not installed.

    lowbit-run model.lowbit --input cat.jpg --top 5
    lowbit-run model.lowbit --input x.npz --output y.npz

This package imports only onnxruntime, numpy, Pillow and the standard library
(never ``lowbit``), so it can be copied to a target machine alone:

- :mod:`lowbit_run.bundle` reads and writes the bundle (one zip: the model in ONNX
  Runtime's ORT format, the meta file, the report, a manifest of SHA-256 checksums);
- :mod:`lowbit_run.preprocess` turns an image into the model's input, the same code
  lowbit's own data layer runs;
- :mod:`lowbit_run.cli` is the ``lowbit-run`` command.
"""
