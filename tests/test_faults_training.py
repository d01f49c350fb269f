"""Training faults, with real `trainer/fit.py` processes on scikit-learn's digits: a diverging
learning rate, nonsense arguments, a missing last.pt, a read-only or full disk, a relative
--data-root, and a report that must show the whole run. One line each, no traceback, no lost
checkpoint."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "digits", "--limit-train", "120", "--limit-test", "40"]
QUICK += ["--batch-size", "32", "--threads", "1", "--no-report"]
CKPT_MB = 240  # stage-1 last.pt of this run is ~225 MB; a second one does not fit beside it


def fit(*args: str, cwd: Path = ROOT, prefix: list[str] | None = None, timeout: int = 300):
    cmd = [*(prefix or []), sys.executable, str(ROOT / "trainer" / "fit.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), last
    return last


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_diverging_lr_stops_at_the_first_nan_and_keeps_the_good_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert fit(*QUICK, "--ae-epochs", "1", "--epochs", "1", "--out", str(run)).returncode == 0
    kept = {name: digest(run / name) for name in ("last.pt", "best.pt")}
    args = (*QUICK, "--ae-epochs", "1", "--epochs", "1", "--lr", "1e38", "--out", str(run))
    done = fit(*args, "--overwrite")
    one_line_error(done, "diverged", "--lr")
    assert {name: digest(run / name) for name in kept} == kept  # the good run survives
    assert not list(run.glob("*.tmp"))


def test_a_new_run_in_a_folder_holding_one_is_refused_before_the_data_loads(tmp_path):
    run = tmp_path / "run"
    assert fit(*QUICK, "--ae-epochs", "1", "--epochs", "0", "--out", str(run)).returncode == 0
    kept = {name: digest(run / name) for name in ("last.pt", "best.pt")}
    done = fit(*QUICK, "--ae-epochs", "1", "--epochs", "0", "--out", str(run))
    line = one_line_error(done, "already holds a training run", "stage 1, epoch 1", "--resume")
    assert "--overwrite" in line and "dataset digits:" not in done.stdout
    assert {name: digest(run / name) for name in kept} == kept
    both = fit(*QUICK, "--resume", "--overwrite", "--out", str(run))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_overwrite_replaces_the_old_best_pt_once_the_new_run_saved_an_epoch(tmp_path):
    """An --overwrite run stopped in stage 1 (no best.pt of its own yet) leaves no best.pt of the
    old run beside its new last.pt: evaluate and export would read the old model as this run's."""
    run = tmp_path / "run"
    assert fit(*QUICK, "--ae-epochs", "1", "--epochs", "1", "--out", str(run)).returncode == 0
    (run / "metrics.json").write_text("{}")  # as a run with its report leaves it
    old_last = digest(run / "last.pt")
    done = fit(
        *QUICK, "--ae-epochs", "2", "--epochs", "0", "--seed", "1", "--out", str(run), "--overwrite"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "removed the old run's best.pt, metrics.json" in done.stdout + done.stderr
    assert digest(run / "last.pt") != old_last
    from earsight.trainer.checkpoint import read_checkpoint

    assert read_checkpoint(run / "best.pt")["train"]["seed"] == 1  # written by the new run


def test_resume_on_other_data_or_from_a_damaged_last_pt_is_one_line_before_loading(tmp_path):
    run = tmp_path / "run"
    assert fit(*QUICK, "--ae-epochs", "1", "--epochs", "0", "--out", str(run)).returncode == 0
    other = ["--dataset", "mnist", *QUICK[2:], "--ae-epochs", "1", "--epochs", "0"]
    done = fit(*other, "--data-root", str(tmp_path / "none"), "--out", str(run), "--resume")
    one_line_error(done, "--resume with different options: source 'mnist' (the run: 'digits')")
    assert "dataset mnist" not in done.stdout  # refused before loading (it wrote an mnist report)
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100_000])  # cut short
    done = fit(*QUICK, "--ae-epochs", "1", "--epochs", "0", "--out", str(run), "--resume")
    one_line_error(done, "cannot resume:", "damaged", "--overwrite")


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = fit(*QUICK, "--out", str(tmp_path / "notes.txt"))
    one_line_error(done, f"--out {tmp_path / 'notes.txt'} is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_dataset_too_small_names_the_layout_not_the_limits(tmp_path):
    import cv2

    (tmp_path / "data" / "mug").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "data" / "mug" / "a.jpg"), np.full((32, 32, 3), 90, np.uint8))
    args = ["--dataset", "folder", "--data-root", str(tmp_path / "data"), "--threads", "1"]
    done = fit(*args, "--out", str(tmp_path / "run"))
    # it said "use a larger --limit-train" with no limit given
    one_line_error(done, "0 training", "DIR/<word>/*.jpg")
    assert "--limit-train" not in done.stderr


def test_sigterm_is_one_line_saying_how_to_go_on_and_leaves_no_tmp(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "trainer" / "fit.py"), *QUICK, "--out", str(run)]
    cmd += ["--ae-epochs", "40", "--epochs", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "last.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)  # stopped after the first saved epoch, as systemctl stop would
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "stopped (SIGTERM): run again with --resume to continue from the last epoch"
    )
    assert not list(run.glob("*.tmp"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--lr", "-1"], ["--lr"]),
        (["--lr", "nan"], ["--lr"]),
        (["--limit-train", "0"], ["--limit-train"]),
        (["--limit-train", "-5"], ["--limit-train"]),
        (["--limit-test", "0"], ["--limit-test"]),
        (["--resume"], ["--resume", "last.pt"]),
        (["--batch-size", "512"], ["--batch-size"]),
        (["--backbone-lr", "-0.1"], ["--backbone-lr"]),
        (["--backbone-frozen-steps", "-1"], ["--backbone-frozen-steps"]),
        (["--arch", "foo=1"], ["--arch 'foo=1'", "enc_widths, enc_pool"]),
        (["--limit-train", "5"], ["--batch-size 32 is larger", "--batch-size 1 or less"]),
    ],
)
def test_arguments_that_cannot_train_are_one_line_and_write_nothing(tmp_path, args, words):
    run = tmp_path / "run"
    quick = list(QUICK)
    if "--limit-train" in args or "--limit-test" in args:
        quick = quick[:2] + quick[6:]  # drop the default limits: the case sets its own
    done = fit(*quick, "--ae-epochs", "1", "--epochs", "1", *args, "--out", str(run))
    one_line_error(done, *words)
    assert not (run / "best.pt").exists()
    if args[0] == "--arch":
        assert "dataset digits:" not in done.stdout  # refused before the data loads


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")
def test_a_device_that_is_not_there_is_refused_before_the_data_loads(tmp_path):
    done = fit(*QUICK, "--device", "cuda", "--out", str(tmp_path / "run"))
    one_line_error(done, "--device cuda", "--device cpu")
    assert "dataset digits:" not in done.stdout and not (tmp_path / "run").exists()


needs_mounts = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs a private mount namespace (unshare -m, root) for a read-only or full disk",
)


def _in_own_mount(tmp_path: Path, mount_options: str, *args: str) -> subprocess.CompletedProcess:
    """fit.py with --out on a fresh tmpfs (``mount_options``) in a private mount namespace;
    afterwards the folder's listing (name size) is printed on stdout after '---'."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f'mount -t tmpfs tmpfs "{disk}" && mkdir -p "{disk}/run" '
        f'&& mount -o remount,{mount_options} "{disk}" && "$@"; rc=$?; echo ---; '
        f'for f in "{disk}"/run/* "{disk}"/run/.[!.]*; do [ -e "$f" ] && '
        f'echo "$(basename "$f") $(stat -c %s "$f")"; done; exit $rc'
    )
    return fit(*args, "--out", str(disk / "run"), prefix=["unshare", "-m", "sh", "-c", script, "-"])


@needs_mounts
def test_a_read_only_out_is_refused_before_training(tmp_path):
    done = _in_own_mount(tmp_path, "ro", *QUICK, "--ae-epochs", "1", "--epochs", "1")
    one_line_error(done, "cannot write the run folder", "--out")
    assert "stage 1 epoch" not in done.stdout  # refused up front, not after an epoch


@needs_mounts
def test_a_full_disk_while_saving_keeps_the_old_checkpoint_and_leaves_no_tmp(tmp_path):
    done = _in_own_mount(tmp_path, f"size={CKPT_MB}m", *QUICK, "--ae-epochs", "2", "--epochs", "0")
    line = one_line_error(done, "could not save", "last.pt", "previous one is kept")
    # torch words a full disk as "[enforce fail …] unexpected pos": the user is told plainly
    assert re.search(r"no space left on (the )?device", line.lower()) and "--resume" in line, line
    listing = dict(line.split() for line in done.stdout.split("---")[-1].split("\n") if line)
    assert "last.pt.tmp" not in listing, listing
    assert int(listing["last.pt"]) > 0  # epoch 1's checkpoint, whole


def test_a_relative_data_root_is_stored_absolute(tmp_path):
    (tmp_path / "data").mkdir()
    run = tmp_path / "run"
    done = fit(
        *QUICK,
        "--data-root",
        "data",
        "--ae-epochs",
        "0",
        "--epochs",
        "0",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from earsight.trainer.checkpoint import read_checkpoint

    assert read_checkpoint(run / "best.pt")["dataset"]["data_root"] == str(tmp_path / "data")


def test_the_report_shows_the_whole_run_not_just_up_to_the_best_epoch(tmp_path):
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.evaluation.report import plot_curves, run_history
    from earsight.trainer.training.run import fit as train
    from earsight.trainer.training.train import TrainOptions
    from tests.conftest import one_torch_thread

    spec = DatasetSpec(source="digits", limit_train=120, limit_test=40)
    opts = TrainOptions(ae_epochs=1, epochs=3, batch_size=32, warmup_steps=5)
    with one_torch_thread():
        best = train(build_dataset(spec), spec, opts, tmp_path)
    full = read_checkpoint(tmp_path / "last.pt")["progress"]["history"]
    # Where the run's best epoch was its first of stage 2, best.pt's snapshot of the history
    # ends there (what fit writes when later epochs do worse):
    ckpt = read_checkpoint(best)
    ckpt["progress"] = {**ckpt["progress"], "history": full[:2], "best": {"epoch": 1}}
    save_checkpoint(best, {k: v for k, v in ckpt.items() if k != "format"})
    history, best_epoch = run_history(tmp_path, best)
    assert history == full and len(history) == 4 and best_epoch == 1
    plot_curves(history, tmp_path / "curves.png", best_epoch)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_help_names_each_default_and_not_the_unset_ones(capsys):
    from earsight.trainer.fit import build_parser
    from earsight.trainer.training.train import TrainOptions

    build_parser().print_help()
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"Adam's learning rate (default: {TrainOptions().lr})" in text
    assert "of Eq. 4's targets (default: 0.0)" in text  # 0 is a default to show
    assert "--seed SEED draws of weights and batches (default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "continue from --out/last.pt (default" not in text  # a flag has none to show
