"""Exports of packed models for other runtimes.

* :mod:`sertk.export.onnx`: the network of a packed model (global CMVN included) as an ONNX
  graph with dynamic batch and time axes, plus a JSON sidecar (``sertk export``);
* :mod:`sertk.export.onnx_runtime`: that graph run by ONNX Runtime in place of the PyTorch
  network (``sertk infer --backend onnxruntime``).

See ``docs/onnx.md`` for the models that export and those that do not (and why).
"""
