"""earsight.paths: every user folder from one place, each overridable by its variable."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from earsight import paths

VARIABLES = ("EARSIGHT_CONFIG", "EARSIGHT_DATA", "EARSIGHT_CACHE", "EARSIGHT_ENGINE_CACHE")


@pytest.fixture
def no_overrides(monkeypatch):
    for name in (*VARIABLES, "EARSIGHT_TEACH"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_platform_user_folders(no_overrides):
    cache, data = Path(platformdirs.user_cache_dir("earsight")), platformdirs.user_data_dir
    assert paths.config_file() == Path(platformdirs.user_config_dir("earsight")) / "config.toml"
    assert paths.data_root() == cache / "data"
    assert paths.cache_dir("speech") == cache / "speech"
    assert paths.engine_cache_dir() == cache / "engines"
    assert paths.taught_root() == Path(data("earsight")) / "taught"
    assert paths.wav_dir() == Path(data("earsight")) / "wavs"


def test_every_variable_names_a_path_with_home_expanded(no_overrides, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in (*VARIABLES, "EARSIGHT_TEACH"):
        monkeypatch.setenv(name, f"~/{name.lower()}")
    assert paths.config_file() == tmp_path / "earsight_config"
    assert paths.data_root() == tmp_path / "earsight_data"
    assert paths.cache_dir("features") == tmp_path / "earsight_cache" / "features"
    assert paths.engine_cache_dir() == tmp_path / "earsight_engine_cache"
    assert paths.taught_root() == tmp_path / "earsight_teach"


def test_engines_follow_the_cache_variable_and_an_empty_variable_is_unset(
    no_overrides, monkeypatch, tmp_path
):
    monkeypatch.setenv("EARSIGHT_CACHE", str(tmp_path))
    monkeypatch.setenv("EARSIGHT_ENGINE_CACHE", "  ")
    monkeypatch.setenv("EARSIGHT_DATA", "")
    assert paths.engine_cache_dir() == tmp_path / "engines"
    assert paths.data_root() == Path(platformdirs.user_cache_dir("earsight")) / "data"


def test_spoken_words_are_cached_where_the_variable_says(no_overrides, monkeypatch, tmp_path):
    from earsight.trainer.speech.synth import synthesize

    monkeypatch.setenv("EARSIGHT_CACHE", str(tmp_path))
    wave = synthesize("lamp")
    cached = [p for p in (tmp_path / "speech").rglob("*") if p.is_file()]
    assert wave.size and cached
