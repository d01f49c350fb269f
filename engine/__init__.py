"""EarSight engine: ONNX export, TensorRT engine cache, runtime backends, post-processing, bench.

Entry points: ``earsight.engine.export.export_onnx``, ``earsight.engine.runtime.load``,
``engine.build.ensure_engine``, ``engine.bench.run_bench``. Contract: docs/ENGINE.md.
"""

import os as _os

# ONNX Runtime's telemetry reads this once, when onnxruntime is imported: set it before any
# engine module (or the app, which imports the engine) can import onnxruntime. Why and how it
# was measured: engine/sidecar.py's disable_onnxruntime_telemetry.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
