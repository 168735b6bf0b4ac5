"""``config/linkage.json`` is checked when it is loaded: a typo fails then, not mid-night."""

from __future__ import annotations

import copy
import json

import pytest

from rosterlink.core.spec import PACKAGE_CONFIG
from rosterlink.link.config import LinkageConfig, LinkageConfigError, load_config


@pytest.fixture
def settings() -> dict:
    return json.loads((PACKAGE_CONFIG / "linkage.json").read_text(encoding="utf-8"))


def test_the_packaged_settings_load_typed():
    cfg = load_config()
    assert isinstance(cfg, LinkageConfig)
    assert cfg.thresholds.review < cfg.thresholds.link < cfg.thresholds.strong
    assert isinstance(cfg.training.retrain_growth, float)
    assert cfg.prior.pair("name", "exact") == (0.86, 0.0004)
    assert "村" in cfg.village_suffixes


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s: s.update(guard_min_row=2), "unknown key 'guard_min_row'"),
        (lambda s: s["thresholds"].update(strnog=0.99), "unknown key 'thresholds.strnog'"),
        (lambda s: s["prior"]["name"].update(exakt=[0.5, 0.1]), "unknown key 'prior.name.exakt'"),
    ],
)
def test_an_unknown_key_is_refused_with_its_name(settings, change, error):
    change(settings)
    with pytest.raises(LinkageConfigError, match=error):
        LinkageConfig.from_mapping(settings)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (("max_reviews_per_row",), "missing key 'max_reviews_per_row'"),
        (("training", "seed"), "missing key 'training.seed'"),
        (("prior", "phone"), "missing key 'prior.phone'"),
    ],
)
def test_a_missing_key_is_refused_with_its_name(settings, path, error):
    parent = settings
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    with pytest.raises(LinkageConfigError, match=error):
        LinkageConfig.from_mapping(settings)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s: s.update(guard_min_rows="2"), "'guard_min_rows' must be an integer"),
        (lambda s: s["thresholds"].update(link=True), "'thresholds.link' must be a number"),
        (lambda s: s.update(compound_surnames="欧阳"), "'compound_surnames' must be a list"),
        (lambda s: s["thresholds"].update(review=0.95), "review <= link <= strong"),
        (lambda s: s.update(backend="sprak"), "'backend' must be one of duckdb, spark"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused(settings, change, error):
    change(settings)
    with pytest.raises(LinkageConfigError, match=error):
        LinkageConfig.from_mapping(settings)


def test_notes_for_people_are_not_settings(settings):
    assert "_comment" in settings
    settings["training"]["_why"] = "a note"
    assert LinkageConfig.from_mapping(settings) == LinkageConfig.from_mapping(copy.deepcopy(settings))


def test_a_typo_in_a_deployed_file_fails_at_load_naming_the_file(settings, tmp_path, monkeypatch):
    settings["thresholds"]["lnk"] = 0.9
    (tmp_path / "linkage.json").write_text(json.dumps(settings), encoding="utf-8")
    monkeypatch.setenv("ROSTERLINK_CONFIG_DIR", str(tmp_path))
    with pytest.raises(LinkageConfigError, match=r"linkage\.json: unknown key 'thresholds\.lnk'"):
        load_config()
