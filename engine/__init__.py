"""EarSight engine: ONNX export, TensorRT engine cache, runtime backends, post-processing, bench.

Entry points: ``engine.export.export_onnx``, ``engine.runtime.load``,
``engine.build.ensure_engine``, ``engine.bench.run_bench``. Contract: docs/ENGINE.md.
"""
