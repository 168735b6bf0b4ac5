"""The link stage's settings (``config/linkage.json``) as a typed, validated, frozen config.

:func:`load_config` reads the file once per path and returns a :class:`LinkageConfig`; every key is
checked when the file is loaded, not when a value is first needed mid-night: an unknown key (a
typo), a missing one or a value of the wrong type is a :class:`LinkageConfigError` naming the key.
Keys that start with ``_`` (``"_comment"``) are notes for people and are skipped.

Also here: the comparisons the model makes and their levels (:data:`COMPARISONS`, :data:`LEVELS`),
since the prior parameters in the file give an m and a u probability for each of them.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Self, Union, get_args, get_origin, get_type_hints

from rosterlink.core.spec import PACKAGE_CONFIG, config_dir

BACKENDS = ("duckdb", "spark")
COMPARISONS = ("name", "town", "village", "phone", "sex", "birth")
# level names, best first (the null level is implicit and carries no evidence)
LEVELS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "name": ("exact", "pinyin", "fuzzy_pinyin", "one_char", "else"),
        "town": ("exact", "else"),
        "village": ("exact", "close", "else"),
        "phone": ("exact", "one_digit", "else"),
        "sex": ("exact", "else"),
        "birth": ("exact", "year", "else"),
    }
)


class LinkageConfigError(ValueError):
    """``linkage.json`` holds an unknown or missing key, or a value of the wrong type."""


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(value: object, hint: Any, where: str) -> object:
    """``value`` checked against the type ``hint`` (and converted: int -> float, list -> tuple)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _convert(value, option, where)
            except LinkageConfigError:
                continue
        raise LinkageConfigError(f"{where!r} must be {_describe(hint)}, got {value!r}")
    if hint is type(None):
        if value is not None:
            raise LinkageConfigError(f"{where!r} must be null, got {value!r}")
        return None
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise LinkageConfigError(f"{where!r} must be {_describe(hint)}, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise LinkageConfigError(f"{where!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LinkageConfigError(f"{where!r} must be a number, got {value!r}")
        return float(value)
    if origin is tuple:
        item, *rest = get_args(hint)
        if not isinstance(value, list | tuple):
            raise LinkageConfigError(f"{where!r} must be a list, got {value!r}")
        if rest and rest != [Ellipsis] and len(value) != len(get_args(hint)):
            raise LinkageConfigError(f"{where!r} must hold {len(get_args(hint))} values, got {value!r}")
        hints = [item] * len(value) if rest in ([], [Ellipsis]) else list(get_args(hint))
        return tuple(
            _convert(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, hints, strict=True))
        )
    if origin is Mapping:
        key_hint, value_hint = get_args(hint)
        if not isinstance(value, Mapping):
            raise LinkageConfigError(f"{where!r} must be an object, got {value!r}")
        return types.MappingProxyType(
            {
                _convert(k, key_hint, where): _convert(v, value_hint, _where(where, str(k)))
                for k, v in value.items()
            }
        )
    if isinstance(hint, type) and is_dataclass(hint) and issubclass(hint, _Section):
        return hint.from_mapping(value, where)
    raise TypeError(f"no conversion for {hint!r}")  # a field type this module does not know


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in get_args(hint))
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number"}.get(
        hint, "null" if hint is type(None) else str(hint)
    )


class _Section:
    """A part of the settings: built from a JSON object, every key known and every value typed."""

    @classmethod
    def from_mapping(cls, values: object, where: str = "") -> Self:
        if not isinstance(values, Mapping):
            raise LinkageConfigError(f"{where or 'the linkage settings'!r} must be an object, got {values!r}")
        assert is_dataclass(cls)
        hints = get_type_hints(cls)
        known = {f.name: f for f in fields(cls) if f.init}
        given = {str(k): v for k, v in values.items() if not str(k).startswith("_")}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise LinkageConfigError(
                f"unknown key {_where(where, unknown[0])!r} (known here: {', '.join(sorted(known))})"
            )
        kwargs: dict[str, object] = {}
        for name, f in known.items():
            if name not in given:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise LinkageConfigError(f"missing key {_where(where, name)!r}")
                continue
            kwargs[name] = _convert(given[name], hints[name], _where(where, name))
        return cls(**kwargs)


@dataclass(frozen=True)
class Thresholds(_Section):
    """Match probabilities of a scored pair: ``link`` and above are linked, ``review`` to ``link``
    are queued for a person, below ``review`` stay apart; ``strong`` lets two clusters that already
    hold several rows merge."""

    link: float
    review: float
    strong: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.link <= self.strong <= 1.0:
            raise LinkageConfigError(
                "'thresholds' must satisfy 0 <= review <= link <= strong <= 1, got "
                f"review={self.review}, link={self.link}, strong={self.strong}"
            )


@dataclass(frozen=True)
class Training(_Section):
    """When and how the model is trained (expectation maximisation, without labels)."""

    min_records: int  # rows of the kind before a model is trained (else the prior is used)
    min_id_less_records: int  # of them without an ID number
    retrain_growth: float  # retrain once the rows grew by this share since the stored model
    u_max_pairs: int
    em_max_pairs: int
    id_rule_recall: float
    seed: int
    max_iterations: int


@dataclass(frozen=True)
class DuckDBOptions(_Section):
    threads: int
    memory_limit: str


@dataclass(frozen=True)
class SparkOptions(_Section):
    master: str
    shuffle_partitions_local: int
    driver_memory: str
    checkpoint_dir: str | None
    break_lineage_method: str
    log_level: str
    conf: Mapping[str, str | int | float | bool] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    app_name: str = "rosterlink-link"
    repartition_partitions: int | None = None


@dataclass(frozen=True)
class Prior(_Section):
    """m and u probabilities used when the warehouse holds too few rows to train (and as the
    starting values of EM): ``levels[comparison][level] = (m, u)``, every level of :data:`LEVELS`."""

    probability_two_random_records_match: float
    levels: Mapping[str, Mapping[str, tuple[float, float]]] = field(hash=False)

    @classmethod
    def from_mapping(cls, values: object, where: str = "") -> Self:
        if not isinstance(values, Mapping):
            raise LinkageConfigError(f"{where!r} must be an object, got {values!r}")
        given = {str(k): v for k, v in values.items() if not str(k).startswith("_")}
        known = ("probability_two_random_records_match", *COMPARISONS)
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise LinkageConfigError(
                f"unknown key {_where(where, unknown[0])!r} (known here: {', '.join(sorted(known))})"
            )
        missing = [k for k in known if k not in given]
        if missing:
            raise LinkageConfigError(f"missing key {_where(where, missing[0])!r}")
        levels: dict[str, Mapping[str, tuple[float, float]]] = {}
        for comp in COMPARISONS:
            here = _where(where, comp)
            pairs = _convert(given[comp], Mapping[str, tuple[float, float]], here)
            assert isinstance(pairs, Mapping)
            wrong = sorted(set(pairs) ^ set(LEVELS[comp]))
            if wrong:
                state = "unknown" if wrong[0] in pairs else "missing"
                raise LinkageConfigError(f"{state} key {_where(here, wrong[0])!r}")
            for level, (m, u) in pairs.items():
                if not (0.0 <= m <= 1.0 and 0.0 <= u <= 1.0):
                    raise LinkageConfigError(f"{_where(here, level)!r}: m and u must be probabilities")
            levels[comp] = pairs
        p = _convert(
            given["probability_two_random_records_match"],
            float,
            _where(where, "probability_two_random_records_match"),
        )
        assert isinstance(p, float)
        return cls(p, types.MappingProxyType(levels))

    def pair(self, comparison: str, level: str) -> tuple[float, float]:
        return self.levels[comparison][level]


@dataclass(frozen=True)
class LinkageConfig(_Section):
    """Every setting of ``config/linkage.json``; build it with :meth:`from_mapping` (or
    :func:`load_config`), which refuses unknown and missing keys and values of the wrong type."""

    thresholds: Thresholds
    guard_min_rows: int  # a cluster with this many distinct rows merges with another only on a strong link
    max_reviews_per_row: int  # review pairs queued per row without an ID number, per reason
    training: Training
    tf_min_entities: int  # term-frequency adjustments once this many entities are known
    backend: str  # "duckdb" or "spark" (ROSTERLINK_LINKAGE_BACKEND overrides it)
    duckdb: DuckDBOptions
    spark: SparkOptions
    relation_sex: Mapping[str, str] = field(hash=False)  # a guardian's relation -> "M" / "F"
    surname_pinyin: Mapping[str, str] = field(hash=False)  # surnames read other than by default
    compound_surnames: tuple[str, ...]
    village_suffixes: tuple[str, ...]  # stripped from a village name to get its stem
    prior: Prior
    # the most review items 待核实.xlsx lists (the most doubtful first); the rest stay in the
    # warehouse, summarised in the workbook, and come up as the listed ones are decided
    review_workbook_max: int = 2000

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise LinkageConfigError(f"'backend' must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("guard_min_rows", "max_reviews_per_row", "tf_min_entities", "review_workbook_max"):
            if getattr(self, name) < 0:
                raise LinkageConfigError(f"{name!r} must not be negative")


# --- loading -------------------------------------------------------------------------------------
def load_config() -> LinkageConfig:
    """``linkage.json`` from ``ROSTERLINK_CONFIG_DIR`` if it holds one, else the packaged one."""
    path = config_dir() / "linkage.json"
    if not path.is_file():
        path = PACKAGE_CONFIG / "linkage.json"
    return _load_config(str(path))


@lru_cache(maxsize=4)
def _load_config(path: str) -> LinkageConfig:
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        return LinkageConfig.from_mapping(values)
    except LinkageConfigError as exc:
        raise LinkageConfigError(f"{path}: {exc}") from exc
