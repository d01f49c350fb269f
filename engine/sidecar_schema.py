"""The ONNX sidecar's contract as a JSON Schema (draft 2020-12, checked with jsonschema): its
names, every field's type and sane range, and the cross-field checks a schema cannot say (the
vocabulary against the output width, the batch bounds); ``validate_sidecar`` raises one
ModelFileError line naming the first field that is wrong."""

from __future__ import annotations

from typing import Any

# sane ranges of a sidecar (read_sidecar validates every field against SIDECAR_SCHEMA)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000  # Hz: telephone to studio audio


SIDECAR_FORMAT = 1


INPUT_NAME = "images"


OUTPUT_NAMES = ("waveform", "probs")


BATCH_AXIS = "batch"


PRECISIONS = ("fp32", "fp16", "int8")


MAX_CLIP_S = 30.0  # longest spoken clip a model may emit, seconds (a word takes about one)


MAX_IMAGE_SIDE = 4096  # px of the square network input


MAX_CLASSES = 100_000  # width K of "probs"


MAX_WORD_CHARS = 100  # characters of one spoken word


MAX_DECLARED_BATCH = 65_536


_WORD = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_WORD_CHARS,
    "pattern": "^[^\\x00-\\x1f]+$",
}


_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIDE = {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_SIDE}


_CHANNELS = {"type": "integer", "enum": [1, 3]}


_RATE = {"type": "integer", "minimum": MIN_SAMPLE_RATE, "maximum": MAX_SAMPLE_RATE}


_LENGTH = {"type": "integer", "minimum": 1, "maximum": int(MAX_CLIP_S * MAX_SAMPLE_RATE)}


_CLASSES = {"type": "integer", "minimum": 1, "maximum": MAX_CLASSES}


_CROP = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}


_COUNT = {"type": "integer", "minimum": 0}


_POSITIVE = {"type": "integer", "minimum": 1}


def _tensor(dtype: str, dims: list[dict]) -> dict:
    shape = {"type": "array", "prefixItems": [{"const": BATCH_AXIS}, *dims], "items": False}
    shape["minItems"] = len(dims) + 1
    return _object({"dtype": {"const": dtype}, "shape": shape})


def _object(properties: dict, required: tuple[str, ...] | None = None, **extra: Any) -> dict:
    keys = list(properties) if required is None else list(required)
    return {"type": "object", "properties": properties, "required": keys, **extra}


# MTNetConfig.to_dict(): the fields the runtime and the torch backend rely on; newer fields are
# allowed (additionalProperties) so an older engine still reads a newer export's config.
CONFIG_SCHEMA = _object(
    {
        "preset": {"type": "string"},
        "image_size": _SIDE,
        "image_channels": _CHANNELS,
        "n_classes": _CLASSES,
        "audio_length": _LENGTH,
        "sample_rate": _RATE,
        "enc_widths": {"type": "array", "items": _POSITIVE},
        "enc_pool": {"type": "array", "items": {"type": "boolean"}},
        "dilation": _POSITIVE,
        "generator": {"type": "string"},
        "labels": {"type": "array", "items": _WORD},
        "flip_tta": {"type": "boolean"},
        "backbone": {"type": "string"},
        "backbone_trained": _COUNT,
        "input_crop": _CROP,
        "gate_exemplars": _COUNT,
        "softmax_temperature": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        # per shipped word, ImageNet-1k class indices (trainer/mtnet/imagenet_check.py)
        "imagenet_kinds": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999}},
        },
    },
    required=("image_size", "image_channels", "n_classes", "audio_length", "sample_rate"),
)


SIDECAR_SCHEMA = _object(
    {
        "format": {"const": SIDECAR_FORMAT},
        "model_file": {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$"},
        "sha256": _SHA256,
        "precision": {"enum": list(PRECISIONS)},
        "opset": {"type": "integer", "minimum": 7, "maximum": 30},
        "exporter": {"type": "string"},
        "input": _object(
            {
                "name": {"const": INPUT_NAME},
                "dtype": {"const": "uint8"},
                "layout": {"const": "NHWC"},
                "shape": _tensor("uint8", [_SIDE, _SIDE, _CHANNELS])["properties"]["shape"],
            }
        ),
        "outputs": _object(
            {"waveform": _tensor("float32", [_LENGTH]), "probs": _tensor("float32", [_CLASSES])}
        ),
        "input_size": {
            "type": "array",
            "prefixItems": [_SIDE, _SIDE, _CHANNELS],
            "items": False,
            "minItems": 3,
        },
        "input_crop": _CROP,
        "preprocessing": {"type": "string"},
        "sample_rate": _RATE,
        "audio_length": _LENGTH,
        "vocabulary": {"type": "array", "items": _WORD, "minItems": 1, "maxItems": MAX_CLASSES},
        # vocabulary words the model no longer answers (probability 0): a taught word forgotten
        # since the model was learned, until it is learned again (trainer/teach/relabel.py)
        "withdrawn": {"type": "array", "items": _WORD, "uniqueItems": True},
        "preset": {"type": "string"},
        "config": CONFIG_SCHEMA,
        "checkpoint": _object(
            {"path": {"type": "string"}, "name": {"type": "string"}, "sha256": _SHA256},
            required=("name", "sha256"),
        ),
        "parity": {"type": "object", "additionalProperties": {"type": ["number", "object"]}},
        "max_batch": {"type": "integer", "minimum": 1, "maximum": MAX_DECLARED_BATCH},
        # the generator's FC_2 stored as this rank's SVD factors (engine/lowrank.py)
        "generator_rank": _COUNT,
    },
    required=(
        "format",
        "model_file",
        "sha256",
        "precision",
        "input",
        "outputs",
        "input_size",
        "sample_rate",
        "audio_length",
        "vocabulary",
    ),
)


def validate_sidecar(side: Any) -> None:
    """Check a parsed sidecar against SIDECAR_SCHEMA and its fields against each other.

    Raises ValueError naming the first bad field (e.g. ``sample_rate: -1 is less than the
    minimum of 8000``); read_sidecar turns it into a one-line ModelFileError.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(SIDECAR_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(side))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{where}: {error.message[:120]}")
    problems = _inconsistencies(side)
    if problems:
        raise ValueError("; ".join(problems))


def _inconsistencies(side: dict[str, Any]) -> list[str]:
    """Fields that are each in range but contradict one another (shapes, vocabulary, config)."""
    h, w, c = side["input_size"]
    length, rate = side["audio_length"], side["sample_rate"]
    k = side["outputs"]["probs"]["shape"][1]
    cfg = side.get("config") or {}
    problems = []
    if side["input"]["shape"][1:] != [h, w, c]:
        problems.append(f"input shape {side['input']['shape']} ≠ input_size {[h, w, c]}")
    if side["outputs"]["waveform"]["shape"][1] != length:
        problems.append(f"waveform length {side['outputs']['waveform']['shape'][1]} ≠ {length}")
    if length / rate > MAX_CLIP_S:
        problems.append(f"a clip of {length / rate:.0f} s (audio_length / sample_rate) > 30 s")
    if len(side["vocabulary"]) != k:
        problems.append(f"{len(side['vocabulary'])} vocabulary words for {k} classes")
    expected = {
        "image_size": h,
        "image_channels": c,
        "n_classes": k,
        "audio_length": length,
        "sample_rate": rate,
        "input_crop": side.get("input_crop", 1.0),
    }
    problems += [
        f"config.{key} {cfg[key]!r} ≠ {value!r}"
        for key, value in expected.items()
        if key in cfg and cfg[key] != value
    ]
    problems += [
        f"withdrawn {w!r} is not in vocabulary"
        for w in side.get("withdrawn", ())
        if w not in side["vocabulary"]
    ]
    if cfg.get("labels") and list(cfg["labels"]) != list(side["vocabulary"]):
        problems.append("config.labels differ from vocabulary")
    if h != w:
        problems.append(f"input_size {h}×{w} is not square")
    return problems
