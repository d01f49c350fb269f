"""Will TensorRT's ONNX parser build this graph? A static check at export time.

TensorRT is not installable on every machine that exports (this project's CPU one cannot), so
the export checks its graphs against what TensorRT documents, and the GPU tests
(tests/test_gpu_default_model.py) build the engine wherever a GPU is there. Source: onnx-tensorrt
``docs/operators.md`` for TensorRT 10.x ("supports operators in the inclusive range of opset 9 to
opset 20"). ``TENSORRT_OPS`` holds the operators this project's graphs use or could use that the
chart lists as supported; an operator outside it is reported, not assumed broken.

A negative-step ``Slice`` (what ``torch.flip`` exports to) is reported as well: older parsers
refuse it and the chart does not promise it, so mirror averaging is a ``Gather`` of reversed
column indices instead (trainer/mtnet/encoders.mirror).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TENSORRT_OPSETS = (9, 20)  # inclusive, TensorRT 10.x
TENSORRT_OPS = frozenset(
    [
        "Abs",
        "Add",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "DequantizeLinear",
        "Div",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "Flatten",
        "Floor",  # teach mode's colour cells (trainer/mtnet/colour.py)
        "Gather",
        "Gemm",
        "GlobalAveragePool",
        "Identity",
        "LeakyRelu",
        "MatMul",
        "Max",
        "MaxPool",
        "Min",
        "Mul",
        "Neg",
        "Pad",
        "Pow",
        "QuantizeLinear",
        "ReduceL2",
        "ReduceMax",
        "ReduceMean",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Tanh",
        "Transpose",
        "Unsqueeze",
        "Where",
    ]
)


def tensorrt_problems(model: Any) -> list[str]:
    """What in ``model`` (an ``onnx.ModelProto``) TensorRT 10's parser does not promise to
    build: one line per problem, [] when none. Checks the default-domain opset, every node's
    operator, and Slice steps given as constants."""
    problems = []
    for opset in model.opset_import:
        low, high = TENSORRT_OPSETS
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            problems.append(f"opset {opset.version} outside TensorRT's {low}..{high}")
    constants = _constants(model)
    for node in model.graph.node:
        if node.op_type not in TENSORRT_OPS:
            problems.append(f"operator {node.op_type} ({node.name}) not in TensorRT's chart")
        elif node.op_type == "Slice" and len(node.input) > 4:
            steps = constants.get(node.input[4])
            if steps is not None and (steps < 0).any():
                problems.append(f"Slice {node.name} has a negative step (a flip)")
    return sorted(set(problems))


def _constants(model: Any) -> dict[str, np.ndarray]:
    """Tensor name → value for initializers and Constant nodes (where Slice steps live)."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def warn_if_not_buildable(model: Any, where: str) -> list[str]:
    """Log a warning naming each problem (the export goes on: the CPU runs it regardless)."""
    problems = tensorrt_problems(model)
    for problem in problems:
        log.warning("%s: TensorRT may refuse this graph: %s", where, problem)
    return problems
