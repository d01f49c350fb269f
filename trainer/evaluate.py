"""Evaluate a checkpoint on its dataset's test split, as the rows of the paper's tables.

    python trainer/evaluate.py runs/mnist/best.pt [--max-items 1000] [--json out.json]

Columns: Corr2D (Eq. 12, on a log-mel spectrogram), PESQ (wide-band, 16 kHz), STOI, word
accuracy of pocketsphinx (constrained to the vocabulary) on the generated audio and on the
ground-truth audio (the ceiling), and the image classifier's accuracy. Corr2D and image accuracy
use every test image; PESQ/STOI/word accuracy use a class-stratified subset of ``max_items``
(those cost ~0.1 s per clip on a 2-core CPU).
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python trainer/evaluate.py` runs as its console script, so that a runtime-only install
    # (no torch) gets one line naming what to install instead of a traceback
    from earsight.commands import evaluate

    evaluate()  # exits

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from earsight.arguments import OneLineParser
from earsight.console import plain_text_streams
from earsight.errors import EarSightError, UsageError
from earsight.logs import plain_logging
from earsight.tables import as_lines
from earsight.trainer.checkpoint import load_model, read_checkpoint
from earsight.trainer.data.augment import to_tensor_images
from earsight.trainer.data.dataset import ADDataset, DatasetSpec, Split, build_dataset
from earsight.trainer.data.preprocess import fit_batch
from earsight.trainer.evaluation import metrics
from earsight.trainer.evaluation.exported import check_export_of, onnx_predictor
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 1000
BATCH = 256  # images per forward pass
EVAL_CHUNK = 1024  # images whose waveforms are held at once (~86 MB at L_s = 21,101)

PAPER_MTNET = {  # Table 4, MT-Net row: (Corr2D, PESQ, STOI)
    "mnist": (0.9427, 3.1577, 0.9670),
    "cifar10": (0.7654, 1.7574, 0.6996),
    "cifar100": (0.6053, 1.3050, 0.4465),
}
PAPER_I2T2A = {  # Table 4, I2T2A row
    "mnist": (0.9126, 2.9614, 0.9451),
    "cifar10": (0.7263, 1.6104, 0.7122),
    "cifar100": (0.5860, 1.2642, 0.4651),
}


@torch.no_grad()
def generate(model: MTNet, images: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, ...]:
    """(N, H, W, C) uint8 → waveforms (N, L_s) float32, probabilities (N, K) float32.

    Images of another size are fitted to the model's input first (centre crop, resize)."""
    waves, probs = [], []
    for start in range(0, len(images), BATCH):
        batch = _fitted(model, images[start : start + BATCH])
        w, p = model(to_tensor_images(batch, torch.device(device)))
        waves.append(w.float().cpu().numpy())
        probs.append(p.float().cpu().numpy())
    return np.concatenate(waves), np.concatenate(probs)


@torch.no_grad()
def classify(model: MTNet, images: np.ndarray) -> np.ndarray:
    """The softmax head only (mirror-averaged if the model is): (N, H, W, C) uint8 → (N, K)."""
    probs = []
    for start in range(0, len(images), BATCH):
        batch = to_tensor_images(_fitted(model, images[start : start + BATCH]), torch.device("cpu"))
        x = model.image_encoder.prepare(batch)
        logits = model.image_encoder.classifier(model.image_features(x))
        probs.append(logits.softmax(-1).numpy())
    return np.concatenate(probs)


def _fitted(model: MTNet, images: np.ndarray) -> np.ndarray:
    # Dataset thumbnails are used whole, as in training (input_crop is for camera frames).
    cfg = model.cfg
    return fit_batch(images, cfg.image_size, 1.0, cfg.image_channels)


def stratified_subset(labels: np.ndarray, max_items: int, seed: int = 0) -> np.ndarray:
    """Up to max_items indices, as equal per class as possible, deterministic."""
    if max_items >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, max_items // len(classes))
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picks))[:max_items]


Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images → (waves, probs)


def evaluate_split(
    predict: Predictor,
    data: ADDataset,
    split: Split,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> dict[str, float]:
    """All metrics on one split; see the module docstring for which use a subset.

    Images go through in chunks and only the scored subset's waveforms are kept, so memory
    stays at a few hundred MB whatever the split's size (10,000 CIFAR clips are 0.8 GB).
    """
    start = time.perf_counter()
    sr = data.spoken.sample_rate
    sub = stratified_subset(split.labels, max_items)  # sorted indices
    keep = np.zeros(len(split), dtype=bool)
    keep[sub] = True
    corr, probs, kept = [], [], []
    for lo in range(0, len(split), EVAL_CHUNK):
        hi = min(lo + EVAL_CHUNK, len(split))
        waves, chunk_probs = predict(split.images[lo:hi])  # (n, L_s), (n, K)
        reference = data.audio(split.labels[lo:hi], split.voices[lo:hi])
        corr += [metrics.corr2d(g, r, sr) for g, r in zip(waves, reference, strict=True)]
        probs.append(chunk_probs)
        kept.append(waves[keep[lo:hi]])
    corr = np.nan_to_num(np.asarray(corr), nan=metrics.FAILURE_SCORES["corr2d"])
    probs, waves = np.concatenate(probs), np.concatenate(kept)  # waves: (len(sub), L_s)
    reference = data.audio(split.labels[sub], split.voices[sub])
    scores = metrics.evaluate_pairs(waves, reference, sr)
    words = [data.classes[i] for i in split.labels[sub]]
    recognizer = metrics.WordRecognizer(data.classes, sample_rate_in=sr)
    return {
        "corr2d": float(np.mean(corr)),
        "pesq": scores["pesq"],
        "stoi": scores["stoi"],
        "word_acc_generated": recognizer.accuracy(waves, words),
        "word_acc_ground_truth": recognizer.accuracy(reference, words),
        "image_acc": float((probs.argmax(1) == split.labels).mean()),
        "n_images": len(split),
        "n_audio_items": len(sub),
        "n_unscorable": int(scores["n_failed"]),
        "seconds": time.perf_counter() - start,
    }


def evaluate_checkpoint(
    path: Path | str,
    max_items: int = DEFAULT_MAX_ITEMS,
    data_root: str | None = None,
    data: ADDataset | None = None,
    onnx: Path | str | None = None,
    flip_tta: bool = False,
) -> dict:
    """Metrics of a checkpoint (or, with ``onnx``, of its export) on its dataset's test split."""
    model, ckpt = load_model(path, flip_tta=flip_tta)
    if data is None:
        spec = DatasetSpec(**ckpt["dataset"])
        if data_root is not None:
            spec = DatasetSpec(**{**spec.to_dict(), "data_root": data_root})
        data = build_dataset(spec)
    tta = model.cfg.flip_tta
    if onnx:  # the exported graph decides whether it mirror-averages
        side = check_export_of(Path(onnx), Path(path), model, data)
        tta = bool(side["config"].get("flip_tta"))
    predict = onnx_predictor(onnx, BATCH) if onnx else functools.partial(generate, model)
    row = evaluate_split(predict, data, data.test, max_items)
    return {
        "dataset": data.name,
        "preset": model.cfg.preset,
        "model": str(onnx) if onnx else "checkpoint",
        "ablation": ckpt.get("train", {}).get("ablation", "full"),
        "flip_tta": tta,
        **row,
    }


TABLE_COLUMNS = (
    "corr2d",
    "pesq",
    "stoi",
    "word_acc_generated",
    "word_acc_ground_truth",
    "image_acc",
)


TABLE_HEADER = ("model", "Corr2D", "PESQ", "STOI", "word acc (gen)", "word acc (GT)", "image acc")


def format_table(rows: list[tuple[str, dict]], lines_only: bool = False) -> str:
    """Markdown table, one row per (name, metrics); the paper's MT-Net row where known.
    ``lines_only``: one line per row, each value after its column's name (screen readers)."""
    cells = [[name, *(_fmt(m.get(c)) for c in TABLE_COLUMNS)] for name, m in rows]
    if lines_only:
        return "\n".join(as_lines(TABLE_HEADER, cells))
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def paper_row(dataset: str, method: str = "MT-Net") -> tuple[str, dict] | None:
    table = PAPER_MTNET if method == "MT-Net" else PAPER_I2T2A
    if dataset not in table:
        return None
    corr, pesq, stoi = table[dataset]
    return f"{method} (paper, Table 4)", {"corr2d": corr, "pesq": pesq, "stoi": stoi}


def table4(
    path: Path | str, max_items: int, data_root: str | None = None, flip_tta: bool = False
) -> list[tuple]:
    """Paper Table 4 rows on our data: our MT-Net and our I2T2A on the same test images and
    ground truth, next to the paper's MT-Net and I2T2A rows."""
    from earsight.trainer.evaluation.baseline import i2t2a_predictor

    model, ckpt = load_model(path, flip_tta=flip_tta)
    spec = DatasetSpec(**ckpt["dataset"])
    if data_root is not None:
        spec = DatasetSpec(**{**spec.to_dict(), "data_root": data_root})
    data = build_dataset(spec)
    ours = evaluate_split(functools.partial(generate, model), data, data.test, max_items)
    baseline = i2t2a_predictor(data, functools.partial(classify, model))
    i2t2a = evaluate_split(baseline, data, data.test, max_items)
    rows = [
        (f"MT-Net (ours, {model.cfg.preset}{_tta_note(model.cfg.flip_tta)})", ours),
        ("I2T2A (ours: classifier → espeak-ng en-gb)", i2t2a),
    ]
    rows += [r for m in ("MT-Net", "I2T2A") if (r := paper_row(data.name, m)) is not None]
    return rows


def _tta_note(flip_tta: bool) -> str:
    return ", mirror-averaged" if flip_tta else ""


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.4f}"


ABLATION_NAMES = {  # paper Table 3 rows
    "gen": "Meth.(L_gen)",
    "gen+rep": "Meth.(L_gen + L_rep)",
    "no-holes": "proposed (no holes)",
    "autoencoder": "proposed (autoencoder)",
    "full": "proposed (full)",
}


def table3(
    paths: list[str], max_items: int, data_root: str | None = None, flip_tta: bool = False
) -> list[tuple]:
    """Paper Table 3: one row per ablation checkpoint, all on one dataset's test split."""
    specs = [read_checkpoint(p)["dataset"] for p in paths]

    def same_data(spec: dict) -> dict:  # where the files were is not what the dataset is
        return {k: v for k, v in spec.items() if k != "data_root"}

    if any(same_data(spec) != same_data(specs[0]) for spec in specs):
        raise UsageError(
            "the checkpoints were trained on different datasets",
            "pass ablations of one dataset (same --dataset, --voices, limits)",
        )
    spec = DatasetSpec(**specs[0])
    if data_root is not None:
        spec = DatasetSpec(**{**spec.to_dict(), "data_root": data_root})
    data = build_dataset(spec)
    rows = []
    for path in paths:
        result = evaluate_checkpoint(path, max_items, data=data, flip_tta=flip_tta)
        rows.append((ABLATION_NAMES.get(result["ablation"], result["ablation"]), result))
    names = [name for name, _ in rows]
    if len(set(names)) < len(names):  # two runs of one ablation: say which file is which
        rows = [(f"{name} ({_run_name(p)})", r) for (name, r), p in zip(rows, paths, strict=True)]
    return rows


def _run_name(path: str | Path) -> str:
    """runs/mnist-full/best.pt → "runs/mnist-full/best.pt" shortened to its run folder's name
    and file ("mnist-full/best.pt"): what tells two rows of one ablation apart."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _rows(args: argparse.Namespace) -> list[tuple[str, dict]]:
    if args.onnx and args.flip_tta:
        raise UsageError(
            "--flip-tta with --onnx: the export decides whether it mirror-averages",
            "drop --flip-tta, or score an export made with `earsight export --flip-tta`",
        )
    if args.onnx and args.table:
        raise UsageError(  # the tables score checkpoints; an export is scored on its own
            f"--onnx with --table {args.table}: the tables score checkpoints",
            "drop --table to score the export (its row comes with the paper's)",
        )
    if args.table == 3:
        return table3(args.checkpoint, args.max_items, args.data_root, args.flip_tta)
    if len(args.checkpoint) != 1:
        raise UsageError("several checkpoints only make sense with --table 3", "pass one")
    if args.table == 4:
        return table4(args.checkpoint[0], args.max_items, args.data_root, args.flip_tta)
    result = evaluate_checkpoint(
        args.checkpoint[0], args.max_items, args.data_root, onnx=args.onnx, flip_tta=args.flip_tta
    )
    onnx = ", ONNX" if args.onnx else ""
    tta = _tta_note(result["flip_tta"])
    rows = [(f"ours ({result['preset']}, {result['ablation']}{tta}{onnx})", result)]
    return rows + [r for r in (paper_row(result["dataset"]),) if r is not None]


def main(argv: list[str] | None = None) -> int:
    plain_text_streams()  # `python trainer/….py` on an ASCII terminal: stand-ins, no traceback
    # prog from argv[0]: evaluate.py, or earsight-eval as a console script
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="+", help=".pt file(s) written by trainer/fit.py")
    parser.add_argument(
        "--max-items",
        type=int,
        default=DEFAULT_MAX_ITEMS,
        help="test clips scored by PESQ/STOI/speech recognition",
    )
    parser.add_argument("--data-root", help="folder holding the dataset (default: as trained)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--as-lines",
        action="store_true",
        help="one line per row, each value after its column's name (for a screen reader)",
    )
    parser.add_argument("--onnx", type=Path, help="score this export of the checkpoint instead")
    parser.add_argument(
        "--flip-tta",
        action="store_true",
        help="average each image with its mirror (as `earsight export --flip-tta` does)",
    )
    parser.add_argument(
        "--table",
        type=int,
        choices=(3, 4),
        help="3: ablations (one checkpoint per row); 4: MT-Net vs I2T2A",
    )
    args = parser.parse_args(argv)
    plain_logging(logging.WARNING)
    try:
        rows = _rows(args)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # scoring is silent for a minute: Ctrl-C is to be expected
        print("interrupted: nothing was scored; run it again", file=sys.stderr)
        return 130
    print(format_table(rows, args.as_lines))
    if args.json:
        args.json.write_text(json.dumps([{"name": n, **m} for n, m in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
