"""Households without a usable ID number, scored by the model against the rows already resolved.

Which model: one trained tonight (when the warehouse holds enough rows and grew since the stored
one), else the stored one, else the configured prior. Which pairs: new ID-less rows against every
other row that a blocking rule pairs with one of them (one per distinct entity and fields), new
ID-less rows among themselves, and new rows with an ID against existing ID-less households.
Returns the scored pairs as links for :mod:`rosterlink.link.clustering`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pandas as pd
import sqlalchemy as sa

from rosterlink.link import model as linkage
from rosterlink.link.clustering import Link
from rosterlink.link.config import LinkageConfig
from rosterlink.link.records import Kind, Record
from rosterlink.link.state import Night
from rosterlink.warehouse import dumps, now, schema

log = logging.getLogger(__name__)


def score(conn: sa.Connection, night: Night, kind: Kind, pending: list[Record]) -> list[Link]:
    """The candidate pairs tonight's rows make, scored (``night.model_info`` says which model).

    A feature row (names read in pinyin, the ID's sex and birth date, the attributes parsed) is made
    only for a row that goes to the model tonight: tonight's rows, the existing ID-less ones when
    rows with an ID arrive, and of the other rows those a blocking rule can pair with one of
    tonight's ID-less rows (:func:`blockable`). A row no rule pairs with any of tonight's is never
    compared, so leaving it out changes no pair: a churn night scores what it brought, not the
    warehouse. Every row's features are made only when the model is trained tonight.
    """
    nil_new = [rec for rec in pending if not rec.id_number]
    id_new = [rec for rec in pending if rec.id_number]
    nil_old = [rec for rec in kind.recs.values() if not rec.pending and not rec.id_number]
    if not nil_new and not (id_new and nil_old):
        night.model_info = {"source": "not_needed"}
        return []
    cfg = night.cfg
    feats: dict[int, dict] = {}

    def feature(rec: Record) -> dict:
        f = feats.get(rec.record_id)
        if f is None:
            attrs = json.loads(rec.attrs or "{}") if not rec.id_number else {}
            f = feats[rec.record_id] = linkage.feature_row(
                rec.record_id, rec.name, rec.id_number, rec.town, rec.village, rec.phone, attrs, cfg
            )
        return f

    # one row per entity (the rows resolved by ID, and existing ID-less households): term
    # frequencies and u probabilities are counted on these, not on raw rows
    entity_rows: dict[object, Record] = {}
    for rec in kind.recs.values():
        ident = ("id", rec.id_number) if rec.id_number else (("key", rec.key) if rec.key else None)
        if ident is not None:
            entity_rows[ident] = rec
    params, tf, entities = choose_model(conn, night, kind, feature, list(entity_rows.values()))
    right_rows = [feature(rec) for rec in nil_new]
    right = linkage.frame(right_rows)
    left_rows = []
    if nil_new:
        # left side: the rows but the new ID-less ones that a blocking rule pairs with one of them,
        # one per distinct (entity, fields)
        can_pair = blockable(right_rows, cfg)
        seen: set[tuple] = set()
        for rec in kind.recs.values():
            if (rec.pending and not rec.id_number) or not can_pair(rec):
                continue
            f = feature(rec)
            sig = (rec.key or ("id", rec.id_number), *(f[c] for c in linkage.FEATURES[1:-1]))
            if sig in seen:
                continue
            seen.add(sig)
            left_rows.append(f)
    left = linkage.frame(left_rows)
    log.info(
        "link: households: scoring %d rows without an ID number against %d rows (of %d: the others "
        "share no blocking key with them)",
        len(right),
        len(left),
        len(kind.recs) - len(nil_new),
    )
    with linkage.Scorer(params, cfg, entities, tf=tf) as scorer:
        parts = [scorer.between(left, right), scorer.within(right)]
        if id_new and nil_old:
            parts.append(
                scorer.between(
                    linkage.frame([feature(r) for r in nil_old]),
                    linkage.frame([feature(r) for r in id_new]),
                )
            )
    links = []
    for part in parts:
        for row in part.to_dict("records"):
            l_id, r_id = int(row["unique_id_l"]), int(row["unique_id_r"])
            if l_id > r_id:
                l_id, r_id = r_id, l_id
            links.append(
                Link(
                    l_id,
                    r_id,
                    float(row["match_probability"]),
                    float(row["match_weight"]),
                    linkage.evidence(row),
                )
            )
    kind.stats["pairs_scored"] = len(links)
    return links


def blockable(right: list[dict], cfg: LinkageConfig) -> Callable[[Record], bool]:
    """Whether a row shares a blocking key with one of ``right`` (feature rows): the rows Splink
    would pair with them (:data:`rosterlink.link.model.BLOCKING_KEYS`, the columns each of its
    blocking rules holds equal; a NULL in any of them never pairs, as in SQL). Asked of a row
    before its feature row is made: a name is read in pinyin once, and only for a row in one of
    their towns that its phone did not already pair."""
    wanted: list[set[tuple]] = [set() for _ in linkage.BLOCKING_KEYS]
    for f in right:
        for held, cols in zip(wanted, linkage.BLOCKING_KEYS, strict=True):
            values = tuple(f[c] for c in cols)
            if None not in values:
                held.add(values)
    towns = {v[-1] for v in wanted[0]} | {v[1] for v in wanted[2] | wanted[3]}
    places = {v[1:] for v in wanted[2] | wanted[3]}
    readings: dict[str, dict[str, str | None]] = {}

    def can_pair(rec: Record) -> bool:
        phone = linkage.phone_digits(rec.phone)
        if phone is not None and (phone,) in wanted[1]:
            return True
        town = linkage.town_value(rec.town)
        if town is None or town not in towns or rec.norm is None:
            return False
        name = readings.get(rec.norm)
        if name is None:
            name = readings[rec.norm] = linkage.name_features(rec.norm, cfg)
        f = {**name, "town": town, "village_key": rec.vkey, "phone": phone}
        rules = (0, 2, 3) if (town, rec.vkey) in places else (0,)
        return any(tuple(f[c] for c in linkage.BLOCKING_KEYS[i]) in wanted[i] for i in rules)

    return can_pair


def choose_model(
    conn: sa.Connection,
    night: Night,
    kind: Kind,
    feature: Callable[[Record], dict],
    entity_recs: list[Record],
) -> tuple[dict, bool, pd.DataFrame]:
    """(model parameters, term frequencies on?, the entities' frame): trained tonight, stored, or
    the prior. ``feature``: a row's feature row; ``entity_recs``: one row per entity. Unless the
    model is trained tonight, the entities' frame holds only what term frequencies count (their
    names and village stems, which the night's state already holds normalised)."""
    cfg = night.cfg
    training = cfg.training
    lm = schema.link_model
    stored = conn.execute(
        sa.select(lm)
        .where(lm.c.entity_kind == kind.kind, lm.c.source == "em")
        .order_by(lm.c.model_id.desc())
        .limit(1)
    ).first()
    n_records = len(kind.recs)
    n_nil = sum(1 for rec in kind.recs.values() if not rec.id_number)
    tf = len(entity_recs) >= int(cfg.tf_min_entities)
    enough = n_records >= int(training.min_records) and n_nil >= int(training.min_id_less_records)
    stale = stored is None or n_records >= stored.records * (1 + float(training.retrain_growth))
    if enough and stale:
        log.info(
            "link: households: training the model on %d rows (%d without an ID number)", n_records, n_nil
        )
        entities = linkage.frame([feature(rec) for rec in entity_recs])
        started = time.perf_counter()
        records = linkage.frame([feature(rec) for rec in kind.recs.values()])
        try:
            params = linkage.train(records, entities, cfg, tf=tf)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be trained must not stop the night
            log.warning("link: training failed (%s); using the stored or prior model", type(exc).__name__)
        else:
            seconds = round(time.perf_counter() - started, 2)
            conn.execute(
                lm.insert().values(
                    entity_kind=kind.kind,
                    trained_at=now(),
                    source="em",
                    records=n_records,
                    id_less_records=n_nil,
                    entities=len(entities),
                    parameters=dumps(params),
                    seconds=seconds,
                )
            )
            night.model_info = {"source": "em_trained_tonight", "records": n_records, "seconds": seconds}
            return params, tf, entities
    else:
        entities = pd.DataFrame(
            {
                col: pd.Series([getattr(rec, attr) for rec in entity_recs], dtype=object)
                for col, attr in (("name_norm", "norm"), ("village_key", "vkey"))
            }
        )
    if stored is not None:
        night.model_info = {
            "source": "em_stored",
            "model_records": stored.records,
            "trained_at": str(stored.trained_at),
        }
        return json.loads(stored.parameters), tf, entities
    night.model_info = {"source": "prior"}
    return linkage.prior_parameters(cfg), tf, entities
