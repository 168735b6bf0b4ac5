"""The probabilistic part of linking: a Fellegi–Sunter model (Splink 5, DuckDB in-process or Spark).

Rows that carry a valid ID number are resolved by the ID alone (:mod:`rosterlink.link.exact`). The rows
without one (an orphan family's guardian listed without an ID, mostly) are compared with Splink
against the rows already resolved, field by field:

- name: exact (term-frequency adjusted: 王伟 is weaker evidence than 褚殿炳), equal toneless pinyin
  (张/章, 王/汪 are homophones; heteronym surnames such as 单 shan or 曾 zeng read as surnames),
  equal "fuzzy" pinyin (zh/z, ch/c, sh/s, n/l, -ng/-n: how names are heard in Shandong), one
  character apart, or different. Full-width and inner spaces never count: names are NFKC-folded and
  spaces removed before anything else.
- town; village (the stem, with 村/社区/村委会 ... stripped; term-frequency adjusted); phone;
  sex (from the ID number, the old-member roster's 性别, or a guardian's relation: 祖母 is a woman);
  birth date (from the ID number where there is one).

The model is trained without labels: u probabilities by random sampling of pairs of *entities*
(one row per person resolved by ID, so rosters full of duplicates do not bias them), m
probabilities by expectation maximisation on rows (pairs with at least one ID-less side, the pairs
the model will have to judge), the prior from the share of pairs the exact ID rule links. Term
frequencies are counted on resolved entities too. With too few rows to train (a new district, the
tests) the configured prior parameters (``config/linkage.json``) are used.

Prediction is incremental (Splink 5 ``predict_between`` for new rows against existing ones,
``predict_within`` for new rows among themselves); clustering and stable keys are the link stage's.

Splink runs on DuckDB in-process by default, or on Spark (``"backend": "spark"`` in
``config/linkage.json``, or ``ROSTERLINK_LINKAGE_BACKEND``): the same settings, SQL and results;
everything engine-specific is in :mod:`rosterlink.link.backends`.
"""

from __future__ import annotations

import logging
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import pandas as pd

from rosterlink.core import idnumber
from rosterlink.link import backends as linkage_backends
from rosterlink.link.config import COMPARISONS, LEVELS, LinkageConfig

log = logging.getLogger(__name__)

FEATURES = (
    "unique_id",
    "name_norm",
    "name_py",
    "name_fz",
    "surname_py",
    "given_norm",
    "town",
    "village_key",
    "phone",
    "sex",
    "birth",
    "id_number",
)
# COMPARISONS and their LEVELS (best first) are in rosterlink.link.config: the prior gives m and u for each
LEVEL_LABELS_ZH = {
    "name": {
        "exact": "姓名相同",
        "pinyin": "姓名同音",
        "fuzzy_pinyin": "姓名近音",
        "one_char": "姓名差一字",
        "else": "姓名不同",
        "null": "姓名缺失",
    },
    "town": {"exact": "镇街相同", "else": "镇街不同", "null": "镇街缺失"},
    "village": {"exact": "村居相同", "close": "村居相近", "else": "村居不同", "null": "村居缺失"},
    "phone": {"exact": "电话相同", "one_digit": "电话差一位", "else": "电话不同", "null": "电话缺失"},
    "sex": {"exact": "性别相同", "else": "性别不同", "null": "性别未知"},
    "birth": {
        "exact": "出生日期相同",
        "year": "出生年份相同",
        "else": "出生日期不同",
        "null": "出生日期未知",
    },
}
TF_COLUMNS = {"name": "name_norm", "village": "village_key"}


# --- features ------------------------------------------------------------------------------------
_SPACE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff]+")
_DOTS = str.maketrans({"•": "·", "・": "·", "‧": "·", "．": "·", ".": "·", "･": "·"})


def norm_name(value: object) -> str | None:
    """NFKC, every space (full-width ones too) and zero-width character removed, dots folded."""
    if value is None:
        return None
    s = unicodedata.normalize("NFC", _SPACE.sub("", unicodedata.normalize("NFKC", str(value)))).translate(
        _DOTS
    )
    return s or None


def split_name(name: str, compound: Iterable[str]) -> tuple[str, str]:
    for prefix in compound:
        if name.startswith(prefix) and len(name) > len(prefix):
            return prefix, name[len(prefix) :]
    return name[:1], name[1:]


@lru_cache(maxsize=50_000)
def _char_pinyin(char: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(char, style=Style.NORMAL, errors=_as_written))


def _as_written(chars: str) -> Any:
    """pypinyin's ``errors`` hook: characters without a reading are kept as they are (as a list of
    characters, which pypinyin accepts although its type hints say a string)."""
    return list(chars)


def _pinyin(text: str) -> str:
    """Toneless pinyin, character by character (the default reading of each character: both sides
    of a comparison are read the same way, and it is fast)."""
    return " ".join(_char_pinyin(c) for c in text)


_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))


@lru_cache(maxsize=200_000)
def fuzzy_syllable(syllable: str) -> str:
    for a, b in _FUZZY_INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a) :]
            break
    for a, b in _FUZZY_FINALS:
        if syllable.endswith(a):
            syllable = syllable[: -len(a)] + b
            break
    return syllable


def name_pinyin(name: str, cfg: LinkageConfig) -> tuple[str, str, str, str]:
    """(surname pinyin, full pinyin, fuzzy pinyin, given name) of a normalised name."""
    surname, given = split_name(name, cfg.compound_surnames)
    surname_py = cfg.surname_pinyin.get(surname) or _pinyin(surname)
    full = (surname_py + " " + _pinyin(given)).strip() if given else surname_py
    fuzzy = " ".join(fuzzy_syllable(s) for s in full.split(" "))
    return surname_py, full, fuzzy, given


def village_key(value: object, cfg: LinkageConfig) -> str | None:
    """The village's stem: 东庄村, 东庄村委会 and 东 庄 all give 东庄."""
    if value is None:
        return None
    s = _SPACE.sub("", unicodedata.normalize("NFKC", str(value)))
    for suffix in sorted(cfg.village_suffixes, key=len, reverse=True):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[: -len(suffix)]
            break
    return s or None


def usable_id(value: object) -> str | None:
    """A valid 18-character GB 11643 number, or None (the load stage only lets valid ones through,
    but the link stage does not rely on it)."""
    if not value:
        return None
    s = str(value).strip().upper()
    return s if idnumber.is_valid_checksum(s) and idnumber.birth_date(s) else None


def feature_row(
    record_id: int,
    name: object,
    id_number: str | None,
    town: object,
    village: object,
    phone: object,
    attrs: dict,
    cfg: LinkageConfig,
) -> dict:
    n = norm_name(name)
    sex = birth = None
    if id_number:
        sex = idnumber.sex(id_number)
        born = idnumber.birth_date(id_number)
        birth = born.isoformat() if born else None
    else:
        sex = attrs.get("sex") if attrs.get("sex") in ("M", "F") else None
        if sex is None and attrs.get("relation"):
            sex = cfg.relation_sex.get(str(attrs["relation"]).strip())
    return {
        "unique_id": int(record_id),
        "name_norm": n,
        **name_features(n, cfg),
        "town": town_value(town),
        "village_key": village_key(village, cfg),
        "phone": phone_digits(phone),
        "sex": sex,
        "birth": birth,
        "id_number": id_number,
    }


def name_features(name: str | None, cfg: LinkageConfig) -> dict[str, str | None]:
    """The features read from a normalised name: its pinyin, fuzzy pinyin, surname's pinyin and
    given name (all None without a name)."""
    if not name:
        return {"name_py": None, "name_fz": None, "surname_py": None, "given_norm": None}
    surname_py, full_py, fuzzy, given = name_pinyin(name, cfg)
    return {"name_py": full_py, "name_fz": fuzzy, "surname_py": surname_py, "given_norm": given or None}


def town_value(town: object) -> str | None:
    return (str(town).strip() or None) if town else None


def phone_digits(phone: object) -> str | None:
    return (re.sub(r"\D", "", str(phone)) or None) if phone else None


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(FEATURES))
    df["unique_id"] = df["unique_id"].astype("int64")
    for col in FEATURES[1:]:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def term_frequencies(entities: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Relative frequency of each name and village stem among *entities* (not raw rows)."""
    out = {}
    for col in TF_COLUMNS.values():
        counts = Counter(v for v in entities[col] if v is not None)
        total = sum(counts.values()) or 1
        out[col] = pd.DataFrame({col: list(counts), f"tf_{col}": [c / total for c in counts.values()]})
    return out


# --- the Splink settings -----------------------------------------------------------------------------
def _q(col: str, side: str) -> str:
    # unquoted: every feature column is a plain lower-case identifier, and a double-quoted name is a
    # string literal in Spark SQL
    return f"{col}_{side}"


def _conditions() -> dict[str, dict[str, str]]:
    def both(col: str) -> str:
        return f"{_q(col, 'l')} IS NULL OR {_q(col, 'r')} IS NULL"

    def eq(col: str) -> str:
        return f"{_q(col, 'l')} = {_q(col, 'r')}"

    return {
        "name": {
            "null": both("name_norm"),
            "exact": eq("name_norm"),
            "pinyin": eq("name_py"),
            "fuzzy_pinyin": eq("name_fz"),
            "one_char": f"levenshtein({_q('name_norm', 'l')}, {_q('name_norm', 'r')}) <= 1",
        },
        "town": {"null": both("town"), "exact": eq("town")},
        "village": {
            "null": both("village_key"),
            "exact": eq("village_key"),
            "close": f"levenshtein({_q('village_key', 'l')}, {_q('village_key', 'r')}) <= 1",
        },
        "phone": {
            "null": both("phone"),
            "exact": eq("phone"),
            "one_digit": f"levenshtein({_q('phone', 'l')}, {_q('phone', 'r')}) <= 1",
        },
        "sex": {"null": both("sex"), "exact": eq("sex")},
        "birth": {
            "null": both("birth"),
            "exact": eq("birth"),
            "year": f"substr({_q('birth', 'l')}, 1, 4) = substr({_q('birth', 'r')}, 1, 4)",
        },
    }


# the columns each blocking rule holds equal: a pair is scored when one rule holds (the link stage
# also asks it of a row before making its features: rosterlink.link.scoring.blockable)
BLOCKING_KEYS = (
    ("name_py", "town"),
    ("phone",),
    ("surname_py", "town", "village_key"),
    ("given_norm", "town", "village_key"),
)
BLOCKING_RULES = tuple(" AND ".join(f"l.{c} = r.{c}" for c in cols) for cols in BLOCKING_KEYS)
# EM sessions: pairs with at least one ID-less side (the pairs the model must judge)
_ID_LESS = "(l.id_number IS NULL OR r.id_number IS NULL)"
EM_RULES = (
    f"l.name_py = r.name_py AND {_ID_LESS}",
    f"l.town = r.town AND l.village_key = r.village_key AND {_ID_LESS}",
)


def settings(params: dict, *, tf: bool) -> dict:
    """A Splink settings dictionary with the given m/u parameters."""
    conds = _conditions()
    comparisons = []
    for comp in COMPARISONS:
        levels = [{"sql_condition": conds[comp]["null"], "label_for_charts": "null", "is_null_level": True}]
        for level in LEVELS[comp]:
            m, u = params[comp][level]
            entry = {
                "sql_condition": conds[comp].get(level, "ELSE"),
                "label_for_charts": level,
                "m_probability": m,
                "u_probability": u,
            }
            if level == "exact" and tf and comp in TF_COLUMNS:
                entry["tf_adjustment_column"] = TF_COLUMNS[comp]
                entry["tf_adjustment_weight"] = 1.0
            levels.append(entry)
        comparisons.append(
            {"output_column_name": comp, "comparison_levels": levels, "comparison_description": comp}
        )
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": params["probability_two_random_records_match"],
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": list(BLOCKING_RULES),
        "retain_matching_columns": True,  # (Splink keeps the gamma_ columns only then)
        "retain_intermediate_calculation_columns": True,
        "max_iterations": 20,
        "em_convergence": 0.0001,
    }


def prior_parameters(cfg: LinkageConfig) -> dict:
    prior = cfg.prior
    out: dict[str, Any] = {"probability_two_random_records_match": prior.probability_two_random_records_match}
    for comp in COMPARISONS:
        out[comp] = {level: list(prior.pair(comp, level)) for level in LEVELS[comp]}
    return out


def _parameters_from_linker(linker, fallback: dict) -> dict:
    model = linker.misc.save_model_to_json()
    out = {
        "probability_two_random_records_match": model.get("probability_two_random_records_match")
        or fallback["probability_two_random_records_match"]
    }
    for comp in model["comparisons"]:
        name = comp["output_column_name"]
        out[name] = {}
        for level in comp["comparison_levels"]:
            label = level.get("label_for_charts")
            if level.get("is_null_level") or label not in LEVELS[name]:
                continue
            m, u = fallback[name][label]
            m = level.get("m_probability", m)
            u = level.get("u_probability", u)
            # an m of zero would make one field veto a match for good (a clerk's slip in the sex or
            # town would then never be forgiven): keep every level possible
            out[name][label] = [max(_clamp(m), M_FLOOR), _clamp(u)]
    return out


M_FLOOR = 0.001


def _clamp(p: float) -> float:
    return min(max(float(p), 1e-7), 1 - 1e-7)


# --- training and scoring (on the configured engine: rosterlink.link.backends) -------------------
def _quiet_splink() -> None:
    for name in ("splink", "splink.internals"):
        logging.getLogger(name).setLevel(logging.WARNING)


def train(records: pd.DataFrame, entities: pd.DataFrame, cfg: LinkageConfig, *, tf: bool) -> dict:
    """Train the model without labels; return its parameters (JSON-able).

    ``records``: feature rows of every resolved and unresolved row (EM, the prior);
    ``entities``: one feature row per resolved person (u probabilities, term frequencies).
    """
    from splink import Linker

    _quiet_splink()
    training = cfg.training
    prior = prior_parameters(cfg)
    started = time.perf_counter()
    engine = linkage_backends.open_engine(cfg)
    try:
        tf_tables = term_frequencies(entities) if tf else {}
        ent = engine.register(entities[list(FEATURES)], "rl_entities")
        linker = Linker(ent, settings(prior, tf=tf), log_level=None)
        _register_tf(engine, linker, tf_tables, "u")
        linker.training.estimate_u_using_random_sampling(
            max_pairs=float(training.u_max_pairs), seed=int(training.seed)
        )
        with_u = _parameters_from_linker(linker, prior)
        params = {
            **prior,
            **{c: {lv: [prior[c][lv][0], with_u[c][lv][1]] for lv in LEVELS[c]} for c in COMPARISONS},
        }

        rec = engine.register(records[list(FEATURES)], "rl_records")
        linker = Linker(
            rec,
            {**settings(params, tf=tf), "max_iterations": int(training.max_iterations)},
            log_level=None,
        )
        _register_tf(engine, linker, tf_tables, "em")
        linker.training.estimate_probability_two_random_records_match(
            ["l.id_number = r.id_number"], recall=float(training.id_rule_recall)
        )
        for rule in EM_RULES:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, max_pairs=float(training.em_max_pairs)
            )
        params = _parameters_from_linker(linker, params)
    finally:
        engine.close()
    log.info(
        "linkage: model trained on %d rows / %d entities in %.1fs (%s)",
        len(records),
        len(entities),
        time.perf_counter() - started,
        engine.name,
    )
    return params


def _register_tf(engine, linker, tf_tables: dict[str, pd.DataFrame], tag: str) -> None:
    for col, table in tf_tables.items():
        sdf = engine.register(table, f"rl_tf_{col}_{tag}")
        linker.table_management.register_term_frequency_lookup(sdf, col)


class Scorer:
    """Score candidate pairs with a fixed model: new rows against existing ones, and among themselves."""

    def __init__(self, params: dict, cfg: LinkageConfig, entities: pd.DataFrame | None, *, tf: bool) -> None:
        from splink import Linker

        _quiet_splink()
        self.cfg = cfg
        self.params = params
        self.engine = linkage_backends.open_engine(cfg)
        self._n = 0
        seed = self.engine.register(frame([]), "rl_seed")
        self.linker = Linker(seed, settings(params, tf=tf), log_level=None)
        if tf and entities is not None:
            _register_tf(self.engine, self.linker, term_frequencies(entities), "score")
        self.threshold = float(cfg.thresholds.review)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _register(self, df: pd.DataFrame):
        self._n += 1
        return self.engine.register(df[list(FEATURES)], f"rl_in_{self._n}")

    def between(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        if left.empty or right.empty:
            return _empty_pairs()
        out = self.linker.inference.predict_between(
            self._register(left),
            self._register(right),
            threshold_match_probability=self.threshold,
            warning_mode="never",
        )
        return self._collect(out)

    def within(self, df: pd.DataFrame) -> pd.DataFrame:
        if len(df) < 2:
            return _empty_pairs()
        out = self.linker.inference.predict_within(
            self._register(df), threshold_match_probability=self.threshold, warning_mode="never"
        )
        return self._collect(out)

    def _collect(self, out) -> pd.DataFrame:
        cols = ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
        for comp in COMPARISONS:
            cols.append(f"gamma_{comp}")
        table = out.physical_name
        present = {c.lower() for c in self.engine.columns(table)}
        weights = []
        for comp in COMPARISONS:
            parts = [c for c in (f"mw_{comp}", f"mw_tf_adj_{comp}") if c in present]
            weights.append(f"({' + '.join(parts) if parts else '0'}) AS w_{comp}")
        df = self.engine.fetch(f"SELECT {', '.join(cols)}, {', '.join(weights)} FROM {table}")
        out.drop_table_from_database_and_remove_from_cache()
        # the engines sum floating point numbers in different orders: rounded, a pair scores the
        # same on DuckDB and on Spark, and ties between equal links are broken the same way
        for col in df.columns:
            if col.startswith(("match_weight", "w_")):
                df[col] = df[col].astype("float64").round(9)
        df["match_probability"] = df["match_probability"].astype("float64").round(12)
        return df


def _empty_pairs() -> pd.DataFrame:
    cols = [
        "unique_id_l",
        "unique_id_r",
        "match_weight",
        "match_probability",
        *(f"gamma_{c}" for c in COMPARISONS),
        *(f"w_{c}" for c in COMPARISONS),
    ]
    return pd.DataFrame(columns=cols)


def evidence(row: dict) -> dict:
    """Per-field evidence of a scored pair: the level reached and its match weight (bits)."""
    out = {}
    for comp in COMPARISONS:
        gamma = int(row[f"gamma_{comp}"])
        levels = LEVELS[comp]
        # splink numbers levels from the best (highest gamma) down to 0 = else; -1 = null
        label = "null" if gamma < 0 else levels[len(levels) - 1 - gamma]
        weight = float(row[f"w_{comp}"]) if row.get(f"w_{comp}") is not None else 0.0
        out[comp] = {
            "level": label,
            "label": LEVEL_LABELS_ZH[comp][label],
            "weight": round(weight, 2) if math.isfinite(weight) else 0.0,
        }
    return out
