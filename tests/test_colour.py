"""Teach mode's colour cue (trainer/mtnet/colour.py) and the teach base that carries it
(trainer/teach/base.py): the histogram itself, its ONNX graph, and bases with and without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earsight.trainer.mtnet.colour import colour_histogram

skdata = pytest.importorskip("skimage.data", reason="scikit-image's sample photos")


def prepared(rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → the backbone's input (N, 3, H, W), (rgb − 127) / 128."""
    from earsight.trainer.mtnet.backbone import preprocess

    return preprocess(torch.from_numpy(rgb).permute(0, 3, 1, 2).float())


def test_a_plain_colour_fills_its_own_cell():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[0] = (255, 0, 0)  # red: r step 5 of 0..5 → cell 5·36 = 180
    frames[1] = (0, 0, 255)  # blue: cell 5
    frames[2, :8] = (255, 255, 255)  # half white (cell 215), half black (cell 0)
    h = colour_histogram(prepared(frames), bins=6).numpy()
    assert h.shape == (3, 216)
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, atol=1e-6)
    assert h[0].argmax() == 180 and h[0, 180] == pytest.approx(1.0)
    assert h[1].argmax() == 5 and h[1, 5] == pytest.approx(1.0)
    np.testing.assert_allclose(h[2, [0, 215]], [0.5**0.5, 0.5**0.5], atol=1e-6)


def test_it_tells_colours_apart_where_a_mirror_is_the_same():
    from earsight.trainer.data.preprocess import fit_to_input

    photo = fit_to_input(skdata.coffee(), 160, 160, 0.83)
    swapped = np.ascontiguousarray(photo[..., ::-1])  # the same shapes, other colours
    mirrored = np.ascontiguousarray(photo[:, ::-1])
    h = colour_histogram(prepared(np.stack([photo, swapped, mirrored]))).numpy()
    assert h[0] @ h[2] == pytest.approx(1.0, abs=1e-5)  # Bhattacharyya coefficient
    assert h[0] @ h[1] < 0.8


def test_the_onnx_graph_counts_as_torch_does(tmp_path):
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter")
    import onnxruntime as ort

    class Histogram(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return colour_histogram(x)

    frames = np.stack([skdata.chelsea()[:160, :160], skdata.astronaut()[:160, :160]])
    x = prepared(frames)
    path = tmp_path / "colour.onnx"
    torch.onnx.export(Histogram().eval(), (x,), str(path), input_names=["x"], output_names=["h"])
    import onnx

    from earsight.engine.trt_ops import tensorrt_problems

    assert tensorrt_problems(onnx.load(path)) == []  # within what TensorRT 10 builds
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, colour_histogram(x).numpy(), atol=1e-6)
    # fp16 inputs (an fp16 model's prepared frames) count the same: (rgb − 127) / 128 is exact
    np.testing.assert_allclose(colour_histogram(x.half()).numpy(), got, atol=1e-6)
