"""The offline bundle and OpenVINO IR export: the flow's last stage.

    contents = BundleContents(conversion, meta_text, report, labels=None, probe=None)
    write_bundle("model.lowbit", contents)        # atomic; read back with lowbit-run's reader
    outputs = run_converted(conversion, samples)   # the ORT-format model on a data set
    write_ir("work/model.int8.onnx", "out/model.xml", check=validate)   # .xml + .bin

The bundle's format has one reader and writer, :mod:`lowbit_run.bundle`, which the
``lowbit-run`` command (onnxruntime, numpy and Pillow only) shares; lowbit.api.package
is the verb that chooses what goes in and validates it.
"""

from lowbit.package.bundle import BundleContents, run_converted, write_bundle
from lowbit.package.ir import write_ir

__all__ = ["BundleContents", "run_converted", "write_bundle", "write_ir"]
