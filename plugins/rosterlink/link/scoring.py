"""Households without a usable ID number, scored by the model against the rows already resolved.

Which model: one trained tonight (when the warehouse holds enough rows and grew since the stored
one), else the stored one, else the configured prior. Which pairs: new ID-less rows against every
other row (one per distinct entity and fields), new ID-less rows among themselves, and new rows
with an ID against existing ID-less households. Returns the scored pairs as links for
:mod:`rosterlink.link.clustering`.
"""

from __future__ import annotations

import json
import logging
import time

import pandas as pd
import sqlalchemy as sa

from rosterlink.link import model as linkage
from rosterlink.link.clustering import Link
from rosterlink.link.records import Kind, Record
from rosterlink.link.state import Night
from rosterlink.warehouse import dumps, now, schema

log = logging.getLogger(__name__)


def score(conn: sa.Connection, night: Night, kind: Kind, pending: list[Record]) -> list[Link]:
    """The candidate pairs tonight's rows make, scored (``night.model_info`` says which model)."""
    nil_new = [rec for rec in pending if not rec.id_number]
    id_new = [rec for rec in pending if rec.id_number]
    nil_old = [rec for rec in kind.recs.values() if not rec.pending and not rec.id_number]
    if not nil_new and not (id_new and nil_old):
        night.model_info = {"source": "not_needed"}
        return []
    cfg = night.cfg
    feats: dict[int, dict] = {}
    for rec in kind.recs.values():
        attrs = json.loads(rec.attrs) if not rec.id_number else {}
        feats[rec.record_id] = linkage.feature_row(
            rec.record_id, rec.name, rec.id_number, rec.town, rec.village, rec.phone, attrs, cfg
        )
    # one feature row per entity (the rows resolved by ID, and existing ID-less households):
    # term frequencies and u probabilities are counted on these, not on raw rows
    entity_rows: dict[object, int] = {}
    for rec in kind.recs.values():
        ident = ("id", rec.id_number) if rec.id_number else (("key", rec.key) if rec.key else None)
        if ident is not None:
            entity_rows[ident] = rec.record_id
    entities = linkage.frame([feats[i] for i in entity_rows.values()])
    params, tf = choose_model(conn, night, kind, feats, entities)
    # left side: every row but the new ID-less ones, one per distinct (entity, fields)
    seen: set[tuple] = set()
    left_rows = []
    for rec in kind.recs.values():
        if rec.pending and not rec.id_number:
            continue
        f = feats[rec.record_id]
        sig = (rec.key or ("id", rec.id_number), *(f[c] for c in linkage.FEATURES[1:-1]))
        if sig in seen:
            continue
        seen.add(sig)
        left_rows.append(f)
    left = linkage.frame(left_rows)
    right = linkage.frame([feats[rec.record_id] for rec in nil_new])
    log.info("link: households: scoring %d rows without an ID number against %d rows", len(right), len(left))
    with linkage.Scorer(params, cfg, entities, tf=tf) as scorer:
        parts = [scorer.between(left, right), scorer.within(right)]
        if id_new and nil_old:
            parts.append(
                scorer.between(
                    linkage.frame([feats[r.record_id] for r in nil_old]),
                    linkage.frame([feats[r.record_id] for r in id_new]),
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


def choose_model(
    conn: sa.Connection, night: Night, kind: Kind, feats: dict[int, dict], entities: pd.DataFrame
) -> tuple[dict, bool]:
    """(model parameters, term frequencies on?): trained tonight, stored, or the prior."""
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
    tf = len(entities) >= int(cfg.tf_min_entities)
    enough = n_records >= int(training.min_records) and n_nil >= int(training.min_id_less_records)
    stale = stored is None or n_records >= stored.records * (1 + float(training.retrain_growth))
    if enough and stale:
        log.info(
            "link: households: training the model on %d rows (%d without an ID number)", n_records, n_nil
        )
        started = time.perf_counter()
        records = linkage.frame(list(feats.values()))
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
            return params, tf
    if stored is not None:
        night.model_info = {
            "source": "em_stored",
            "model_records": stored.records,
            "trained_at": str(stored.trained_at),
        }
        return json.loads(stored.parameters), tf
    night.model_info = {"source": "prior"}
    return linkage.prior_parameters(cfg), tf
