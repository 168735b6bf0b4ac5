"""The link stage on Splink's Spark backend (local mode) gives the same links as on DuckDB.

Compared on the same data, each backend in its own warehouse:

- the labelled evaluation set (:mod:`rosterlink.synthetic.linkage_eval`, the reference district at 1x, over
  two nights: ID-less guardians, homophones, namesakes ...): night 1 scores every ID-less row
  against the rows resolved by ID, night 2 the new rows (``predict_between`` against the existing
  rows, ``predict_within`` among themselves). Every row's household / cadre key, its link method and
  match probability, the review queue (reason, both records, status, probability), the merges and
  the cluster figures must be equal;
- a whole night of the nightly DAG (``dag.test``) on the sample intake: the register (households,
  categories, cadres, current pairings) and the review queue must be equal.

What is compared is scoring, clustering and keys with one model. Training is not deterministic
across engines: Splink samples the pairs for u differently on each (DuckDB's and Spark's random
and hash functions differ), so the two engines learn slightly different u and m (on the 1x set a
Spark-trained model still linked every row as DuckDB's did). So the model is trained once, on
DuckDB on night 1, and the Spark warehouse gets that ``link_model`` row before its first night, as a
deployment that moves to Spark keeps its stored model (it retrains only when the rows grow by
``retrain_growth``). The scorer rounds probabilities to 12 and weights to 9 decimals, so the
engines' different order of floating point sums never reorders links.

This test must run wherever the suite runs: ``make test`` installs the ``[spark]`` extra and a Java
runtime; without them it fails and says how to install them (it is never skipped).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rosterlink import warehouse
from rosterlink.link import backends as linkage_backends
from rosterlink.link import night as link
from rosterlink.link.config import load_config
from rosterlink.synthetic import linkage_eval, sample

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark_ready() -> None:
    """Start the process's Spark session once (and fail with how to install it when it cannot)."""
    try:
        linkage_backends.spark_session(load_config())
    except linkage_backends.BackendUnavailable as exc:
        pytest.fail(f"Spark link backend unavailable: {exc}", pytrace=False)


@pytest.fixture
def backend(monkeypatch):
    def use(name: str) -> None:
        monkeypatch.setenv("ROSTERLINK_LINKAGE_BACKEND", name)
        assert linkage_backends.backend_name(load_config()) == name

    return use


def q(eng, sql: str) -> list[tuple]:
    with eng.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def _state(eng) -> dict:
    return {
        "rows": q(
            eng,
            "SELECT s.file_id, s.row_number, s.entity_kind, r.entity_key, r.link_method, "
            "ROUND(r.match_probability, 9) FROM source_record s LEFT JOIN source_row r "
            "ON r.file_id = s.file_id AND r.sheet = s.sheet AND r.row_number = s.row_number "
            "ORDER BY s.file_id, s.row_number",
        ),
        "reviews": q(
            eng,
            "SELECT entity_kind, reason, record_id_l, record_id_r, status, "
            "ROUND(match_probability, 9) FROM link_review ORDER BY review_id",
        ),
        "merges": q(eng, "SELECT retired_key, surviving_key, reason FROM household_merge ORDER BY 1, 2"),
    }


def _copy_models(src, dst) -> int:
    """The trained models of one warehouse into another (as a deployment moving backends keeps them)."""
    from rosterlink.warehouse import schema

    lm = schema.link_model
    with src.connect() as conn:
        rows = [dict(m) for m in conn.execute(lm.select().order_by(lm.c.model_id)).mappings()]
    with dst.begin() as conn:
        for row in rows:
            conn.execute(lm.insert().values(row))
    return len(rows)


def _eval_nights(tmp: Path, name: str, evalset, model_from=None):
    eng = warehouse.connect(f"sqlite:///{tmp / f'{name}.db'}")
    if model_from is not None:
        assert _copy_models(model_from, eng) >= 1
    states, summaries, index = [], [], {}
    for night in evalset.nights():
        index.update(linkage_eval.load(eng, evalset, night))
        summaries.append(link.link(eng))
        states.append(_state(eng))
    return eng, states, summaries, linkage_eval.evaluate(eng, evalset, index)


def test_eval_set_over_two_nights_links_the_same_on_spark_as_on_duckdb(tmp_path, spark_ready, backend):
    evalset = linkage_eval.generate(scale=1.0)
    backend("duckdb")
    duck_eng, duck_states, duck_summaries, duck_metrics = _eval_nights(tmp_path, "duckdb", evalset)
    backend("spark")
    started = time.perf_counter()
    _, spark_states, spark_summaries, spark_metrics = _eval_nights(
        tmp_path, "spark", evalset, model_from=duck_eng
    )
    print(f"spark: two nights linked in {time.perf_counter() - started:.1f} s")
    # the paths the comparison covers: EM trained on night 1 (DuckDB), the stored model scoring on
    # Spark, ID-less rows linked by the model, and a review queue
    assert [s["model"]["source"] for s in duck_summaries] == ["em_trained_tonight", "em_stored"]
    assert [s["model"]["source"] for s in spark_summaries] == ["em_stored", "em_stored"]
    assert sum(1 for r in spark_states[-1]["rows"] if r[4] == "model") > 50
    assert spark_states[-1]["reviews"]
    assert duck_metrics["household"]["f1"] > 0.99
    # the same links, keys, methods, probabilities and review queue, night after night
    for night, (d, s) in enumerate(zip(duck_states, spark_states, strict=True), start=1):
        for part in ("rows", "reviews", "merges"):
            assert s[part] == d[part], f"night {night}: {part} differ"
    assert spark_metrics == duck_metrics
    for d, s in zip(duck_summaries, spark_summaries, strict=True):
        assert s["clusters"] == d["clusters"]


REGISTER = {
    "household": "SELECT household_key, head_name, town, village, status FROM household ORDER BY 1",
    "household_category": "SELECT household_key, category, status FROM household_category ORDER BY 1, 2",
    "cadre": "SELECT cadre_key, name, rank, status FROM cadre ORDER BY 1",
    "pairing": (
        "SELECT cadre_key, target_kind, target_key FROM pairing WHERE valid_to IS NULL ORDER BY 1, 2, 3"
    ),
    "link_review": (
        "SELECT entity_kind, reason, record_id_l, record_id_r, status FROM link_review ORDER BY 1, 2, 3, 4"
    ),
}


def _id_less_guardians(intake: Path) -> int:
    """A women's federation list without ID numbers: every 3rd hardship head as an orphan's guardian,
    some names with a full-width space, some phones left out (the sample's own lists all carry IDs)."""
    from python_calamine import CalamineWorkbook

    (path,) = (intake / "civil_affairs").glob("*.xlsx")
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    header = next(i for i, r in enumerate(rows) if "户主姓名" in [str(c) for c in r])
    cols = {str(c): j for j, c in enumerate(rows[header])}
    town, out = "", ["儿童姓名,监护人姓名,与儿童关系,镇街,村(居),联系电话"]
    for n, r in enumerate(rows[header + 1 :]):
        town = str(r[cols["镇(街)"]]).strip() or town
        name = str(r[cols["户主姓名"]]).strip()
        if n % 3 or not name:
            continue
        phone = r[cols["联系电话"]]
        phone = "" if n % 5 == 0 else str(int(phone)) if isinstance(phone, float) else str(phone)
        guardian = name[:1] + "\u3000" + name[1:] if n % 2 else name
        out.append(
            f"{name[:1]}小{'明红军芳强丽伟静涛燕'[n % 10]},{guardian},{'祖母' if n % 4 else '外祖父'},{town},"
            f"{r[cols['村（居）']]},{phone}"
        )
    (intake / "womens_federation" / "失亲儿童补充名单.csv").write_text(
        "\n".join(out) + "\n", encoding="utf-8"
    )
    return len(out) - 1


def test_nightly_dag_on_spark_writes_the_register_of_the_duckdb_night(
    tmp_path, spark_ready, backend, run_night
):
    intake = tmp_path / "intake"
    sample.generate(intake, night=1)
    assert _id_less_guardians(intake) > 100
    registers = {}
    for name in ("duckdb", "spark"):
        backend(name)
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        if name == "spark":  # the model DuckDB trained tonight (see the module docstring)
            _copy_models(warehouse.connect(f"sqlite:///{tmp_path / 'duckdb.db'}"), warehouse.connect(url))
        assert run_night(intake, url, tmp_path / f"exports-{name}", as_of="2026-11-25") == "success"
        eng = warehouse.connect(url)
        registers[name] = {table: q(eng, sql) for table, sql in REGISTER.items()}
    assert len(registers["spark"]["household"]) > 1000
    models = q(
        warehouse.connect(f"sqlite:///{tmp_path / 'spark.db'}"),
        "SELECT COUNT(*) FROM source_row WHERE link_method = 'model'",
    )
    assert models[0][0] > 50  # the ID-less guardians were linked by the model, on Spark
    for table in registers["duckdb"]:
        assert registers["spark"][table] == registers["duckdb"][table], table
