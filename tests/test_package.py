"""The package as a user installs it: a wheel (not the editable checkout) runs describe from its
own files, and the installed names are earsight.* only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_files() -> list[Path]:
    """The checkout's files as a clean clone has them (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source files: built in the checkout, setuptools'
    build/ folder kept a module deleted since and put it in every later wheel."""
    source = tmp_path_factory.mktemp("source")
    for path in _source_files():
        target = source / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", str(dist), str(source)], check=True, timeout=600)
    (found,) = dist.glob("earsight-*.whl")
    return found


def test_the_wheel_installs_only_the_earsight_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"earsight"}  # no top-level app/, engine/, trainer/ to collide with
    # every module of every sub-package (one missing from pyproject's list would be left out)
    for folder in ("earsight", "app", "engine", "trainer"):
        for module in (ROOT / folder).rglob("*.py"):
            inside = module.relative_to(ROOT / folder).as_posix()
            wanted = f"earsight/{inside}" if folder == "earsight" else f"earsight/{folder}/{inside}"
            assert wanted in names, f"{module.relative_to(ROOT)} is not in the wheel"
    assert "earsight/assets/models/mnist-ad.onnx" in names
    assert "earsight/assets/models/mnist-ad.onnx.json" in names
    assert any(n.startswith("earsight/assets/samples/mnist/") for n in names)
    sources = {p.relative_to(ROOT).as_posix() for p in _source_files()}
    for name in names:  # and nothing else: no module left over from an earlier build
        if name.endswith(".py"):
            inside = name.removeprefix("earsight/")
            top = inside.split("/")[0]
            assert (inside if top in ("app", "engine", "trainer", "assets") else name) in sources
    # the licences travel with it: MIT for the code, Apache-2.0 for the backbone's weights
    licences = {n.partition(".dist-info/licenses/")[2] for n in names}
    assert {"LICENSE", "assets/licenses/Apache-2.0.txt"} <= licences, licences
    assert "earsight/assets/licenses/README.md" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for line in (
        "earsight = earsight.commands:earsight",
        "earsight-train = earsight.commands:train",
    ):
        assert line in scripts  # the trainer has commands too, no sys.path edits


@pytest.mark.slow
def test_describe_runs_from_an_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        timeout=600,
    )
    # The wheel's copy comes first on the path (before the editable checkout), run from a
    # folder that is neither: a model found through the working directory would not be found.
    env = {**os.environ, "PYTHONPATH": str(site)}
    samples = site / "earsight" / "assets" / "samples" / "mnist"
    cli = [sys.executable, "-m", "earsight.app.cli", "describe", str(samples)]
    done = subprocess.run(
        [*cli, "--model", "mnist-ad", "--out", str(tmp_path / "wavs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.split(": ")[0].endswith(".png")]
    assert len(said) == 20, done.stdout  # a plain line per image, after the backend's line
    assert len(list((tmp_path / "wavs").glob("*.wav"))) == 20
    where = subprocess.run(
        [sys.executable, "-c", "import earsight.app.models as m; print(m.ASSETS_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's own assets


@pytest.mark.slow
def test_python_dash_m_from_the_checkout_root_with_the_wheel_installed(wheel, tmp_path):
    """Run in the checkout's root, Python finds its earsight/ folder (the core only) before the
    installed package: with a non-editable install `python -m earsight.app.cli` and the test
    suite found no earsight.app. The core's __init__ adds the folders beside it."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        timeout=600,
    )
    # -S: without the site module the editable install's finder (a .pth) is not loaded, as in
    # a venv that holds the wheel only; the dependencies come from this venv's site-packages.
    import sysconfig

    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    done = subprocess.run(
        [sys.executable, "-S", "-m", "earsight.app.cli", "--version"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("earsight "), done.stderr
