"""End-of-training report: report.md with the metrics table, loss curves and spectrograms of
ground-truth vs generated audio for a few test images (PNG files beside it)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers, CI or the wearable
import matplotlib.pyplot as plt
import numpy as np

from earsight.trainer.checkpoint import LAST_NAME, load_model, read_checkpoint
from earsight.trainer.data.dataset import ADDataset
from earsight.trainer.evaluate import format_table, generate, paper_row
from earsight.trainer.evaluation import metrics

log = logging.getLogger(__name__)

N_EXAMPLES = 6  # test images shown in the spectrogram figure


def run_history(out_dir: Path, checkpoint: Path) -> tuple[list[dict], int | None]:
    """Every epoch of the run and the best stage-2 epoch.

    best.pt's history stops at the best epoch (it is a snapshot of that moment); the run's
    last.pt holds all of them. Falls back to the checkpoint's own history without a last.pt.
    """
    ckpt = read_checkpoint(checkpoint)
    history = ckpt["progress"]["history"]
    last = out_dir / LAST_NAME
    if last.is_file() and last.resolve() != Path(checkpoint).resolve():
        full = read_checkpoint(last)["progress"]["history"]
        if full[: len(history)] == history:  # the same run, further along
            history = full
    best = (ckpt["progress"].get("best") or {}).get("epoch")
    return history, best


def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, both stages, the whole run; a dotted line at best.pt's."""
    stage1 = [h for h in history if h["stage"] == 1]
    stage2 = [h for h in history if h["stage"] == 2]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot([h["epoch"] for h in stage1], [h["rec"] for h in stage1], "o-")
    axes[0].set(title="stage 1: reconstruction (Eq. 6)", xlabel="epoch", yscale="log")
    epochs = [h["epoch"] for h in stage2]
    axes[1].plot(epochs, [h["gen"] for h in stage2], "o-", label="train")
    axes[1].plot(epochs, [h["val_gen"] for h in stage2], "s--", label="validation")
    axes[1].set(title="stage 2: generation (Eq. 9)", xlabel="epoch", yscale="log")
    axes[1].legend()
    axes[2].plot(epochs, [h["acc"] for h in stage2], "o-", label="train")
    axes[2].plot(epochs, [h["val_acc"] for h in stage2], "s--", label="validation")
    axes[2].set(title="image classifier accuracy", xlabel="epoch")
    if best_epoch is not None:
        for ax in axes[1:]:
            ax.axvline(best_epoch, color="grey", linestyle=":", label="best.pt")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_spectrograms(data: ADDataset, waves: np.ndarray, idx: np.ndarray, path: Path) -> None:
    sr = data.spoken.sample_rate
    fig, axes = plt.subplots(2, len(idx), figsize=(2.3 * len(idx), 4.4), squeeze=False)
    for col, i in enumerate(idx):
        label = int(data.test.labels[i])
        reference = data.audio(data.test.labels[i : i + 1], data.test.voices[i : i + 1])[0]
        for row, (wave, title) in enumerate(((reference, "ground truth"), (waves[col], "MT-Net"))):
            spec = metrics.auditory_spectrogram(wave, sr)
            axes[row, col].imshow(spec, origin="lower", aspect="auto", cmap="magma")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, col].set_title(f"{data.classes[label]}: {title}", fontsize=8)
    fig.suptitle("log-mel spectrograms, test images (top: ground truth, bottom: generated)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(out_dir: Path, checkpoint: Path, data: ADDataset, result: dict) -> Path:
    ckpt = read_checkpoint(checkpoint)
    model, _ = load_model(checkpoint)
    history, best_epoch = run_history(out_dir, checkpoint)
    plot_curves(history, out_dir / "curves.png", best_epoch)
    # One test image from each of the first classes: a fixed, readable sample.
    idx = np.array(
        [np.flatnonzero(data.test.labels == c)[0] for c in np.unique(data.test.labels)[:N_EXAMPLES]]
    )
    waves, _ = generate(model, data.test.images[idx])
    plot_spectrograms(data, waves, idx, out_dir / "spectrograms.png")
    rows = [(f"ours ({result['preset']}, {result['ablation']})", result)]
    if (paper := paper_row(result["dataset"])) is not None:
        rows.append(paper)
    train_seconds = sum(h.get("seconds", 0.0) for h in history)
    lines = [
        f"# MT-Net on {data.name}-AD ({result['preset']} preset)",
        "",
        f"- Dataset: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images; "
        f"{data.spoken.describe()}.",
        f"- Training time: {train_seconds / 60:.1f} min over {len(history)} epochs "
        f"(stage 1 + stage 2); {_best_is(best_epoch)}; options: "
        f"`{ckpt['train']}`.",
        f"- Corr2D and image accuracy over {result['n_images']} test images; PESQ, STOI and "
        f"word accuracy over a class-stratified {result['n_audio_items']} of them.",
        "",
        format_table(rows),
        "",
        "![loss curves](curves.png)",
        "",
        "![spectrograms](spectrograms.png)",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _best_is(best_epoch: int | None) -> str:
    """Which epoch best.pt holds, in words; --epochs 0 has no stage-2 epoch to be best."""
    if best_epoch is None:
        return "best.pt is the end of stage 1 (no stage 2 was trained: it says no words)"
    return f"best.pt is stage 2 epoch {best_epoch}"
