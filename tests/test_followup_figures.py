"""The nightly follow-through figures (``followup_household``) brought up to date household by
household: after every night they hold exactly what the full rebuild gives, and the night says how
many households' figures changed (``figures_changed``).

A small generated district lives in the warehouse itself: households in three towns, cadres, pairs
made and ended the way the pairing stage writes them (``valid_from`` / ``valid_to`` = the night),
visit log rows loaded the way the load stage leaves them (``source_record``, matched by the real
follow-through stage, re-sent corrections included), towns corrected, households merged. Nights
run through :func:`rosterlink.followup.match.match`, as the DAG's follow-through task calls it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import pytest
import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.followup import figures, match
from rosterlink.followup.config import FollowupConfig
from rosterlink.warehouse import schema

TOWNS = ("店子镇", "东城街道", "西河乡")
START = dt.date(2026, 8, 1)
CFG = FollowupConfig.load()
# the nights of the season: the first-visit deadline (2026-09-25) passes between two of them, the
# calendar year turns between two others, some nights drop nothing
NIGHTS = (
    dt.date(2026, 8, 1),
    dt.date(2026, 8, 12),
    dt.date(2026, 8, 13),
    dt.date(2026, 9, 1),
    dt.date(2026, 9, 20),
    dt.date(2026, 9, 24),
    dt.date(2026, 9, 27),
    dt.date(2026, 10, 15),
    dt.date(2026, 10, 16),
    dt.date(2026, 12, 30),
    dt.date(2027, 1, 2),
    dt.date(2027, 1, 3),
    dt.date(2027, 2, 1),
)
QUIET = {dt.date(2026, 8, 13), dt.date(2026, 10, 16), dt.date(2027, 1, 3)}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@dataclasses.dataclass
class District:
    """A generated district in a warehouse, and the nights the units and departments make."""

    eng: sa.Engine
    rng: random.Random
    households: int = 60
    cadres: int = 12
    files: int = 0
    sent: list[tuple[str, int, dict]] = dataclasses.field(default_factory=list)  # file name, row, attrs

    def __post_init__(self) -> None:
        with self.eng.begin() as conn:
            conn.execute(
                schema.household.insert(),
                [
                    {
                        "household_key": self.household(i),
                        "head_name": f"户主{i}",
                        "head_id_number": f"37{i:016d}",
                        "town": TOWNS[i % len(TOWNS)],
                        "status": "active",
                    }
                    for i in range(self.households)
                ],
            )
            conn.execute(
                schema.cadre.insert(),
                [
                    {
                        "cadre_key": self.cadre(i),
                        "name": f"干部{i}",
                        "id_number": f"11{i:016d}",
                        "status": "active",
                    }
                    for i in range(self.cadres)
                ],
            )

    @staticmethod
    def household(i: int) -> str:
        return f"H{i:05d}"

    @staticmethod
    def cadre(i: int) -> str:
        return f"C{i:05d}"

    def current(self, conn: sa.Connection) -> dict[str, sa.Row]:
        p = schema.pairing
        return {
            r.target_key: r
            for r in conn.execute(
                sa.select(p)
                .where(p.c.target_kind == "household", p.c.valid_to.is_(None))
                .order_by(p.c.pairing_id)
            )
        }

    def pair(self, conn: sa.Connection, keys: list[str], day: dt.date) -> None:
        if not keys:
            return
        conn.execute(
            schema.pairing.insert(),
            [
                {
                    "cadre_key": self.cadre(self.rng.randrange(self.cadres)),
                    "target_kind": "household",
                    "target_key": key,
                    "valid_from": day,
                    "made_reason": "new_target",
                    "run_id": f"night-{day}",
                }
                for key in keys
            ],
        )

    def end(self, conn: sa.Connection, pairing_ids: list[int], day: dt.date) -> None:
        p = schema.pairing
        conn.execute(
            p.update().where(p.c.pairing_id.in_(pairing_ids)).values(valid_to=day, end_reason="cadre_left")
        )

    def first_night(self) -> None:
        with self.eng.begin() as conn:
            self.pair(conn, [self.household(i) for i in range(self.households) if i % 6], START)

    def churn(self, day: dt.date) -> None:
        """The departments' night: pairs ended and made, a town corrected, now and then a merge."""
        rng = self.rng
        h, m = schema.household, schema.household_merge
        with self.eng.begin() as conn:
            current = self.current(conn)
            merged = set(conn.execute(sa.select(m.c.retired_key)).scalars())
            alive = [k for k in conn.execute(sa.select(h.c.household_key)).scalars() if k not in merged]
            ending = rng.sample(sorted(current), k=min(len(current), rng.randint(0, 3)))
            self.end(conn, [current[k].pairing_id for k in ending], day)
            again = [k for k in ending if rng.random() < 0.7 and k in alive]  # another cadre takes it on
            unpaired = sorted(set(alive) - set(current))
            self.pair(conn, again + rng.sample(unpaired, k=min(len(unpaired), rng.randint(0, 2))), day)
            for key in rng.sample(alive, k=rng.randint(0, 2)):
                conn.execute(
                    h.update().where(h.c.household_key == key).values(town=rng.choice((*TOWNS, None)))
                )
            if rng.random() < 0.35 and len(alive) > 2:
                kept, retired = rng.sample(alive, k=2)
                conn.execute(
                    m.insert().values(
                        retired_key=retired, surviving_key=kept, merged_at=warehouse.now(), reason="model"
                    )
                )
                conn.execute(h.delete().where(h.c.household_key == retired))

    def visits(self, day: dt.date, rows: int, ahead: float = 0.1) -> None:
        """A unit's visit log of ``rows`` visits to current pairs, loaded (matched tonight); now and
        then a visit logged ahead of its date, and a correction of a row sent on an earlier night."""
        rng = self.rng
        h, c = schema.household, schema.cadre
        with self.eng.begin() as conn:
            current = list(self.current(conn).values())
            heads = dict(conn.execute(sa.select(h.c.household_key, h.c.head_id_number)).all())
            cadre_ids = dict(conn.execute(sa.select(c.c.cadre_key, c.c.id_number)).all())
            lines = []
            for _ in range(rows):
                pair = rng.choice(current)
                if pair.target_key not in heads:
                    continue  # a household merged away: the unit still writes the old head
                earliest = max(pair.valid_from, day - dt.timedelta(days=20))
                when = earliest + dt.timedelta(days=rng.randint(0, (day - earliest).days))
                if rng.random() < ahead:
                    when = day + dt.timedelta(days=rng.randint(1, 10))
                lines.append((heads[pair.target_key], self._attrs(cadre_ids[pair.cadre_key], when)))
            name = f"visits/走访记录_{day:%Y%m%d}.xlsx"
            self.file(conn, name, [(i + 3, head, attrs, False) for i, (head, attrs) in enumerate(lines)])
            self.sent.extend((name, i + 3, {"head": head, **attrs}) for i, (head, attrs) in enumerate(lines))
            if self.sent and rng.random() < 0.5:
                file_name, row, attrs = rng.choice(self.sent)
                fixed = {**attrs, "help_value": str(rng.choice((80, 450, 4000))), "help_kind": "实物"}
                self.file(conn, file_name, [(row, fixed.pop("head"), fixed, True)])

    def _attrs(self, cadre_id: str, when: dt.date) -> dict:
        rng = self.rng
        value = rng.choice(("", "", "50", "300", "5000"))
        return {
            "cadre_id_number": cadre_id,
            "visit_date": when.isoformat(),
            "visit_kind": rng.choice(("in_person", "in_person", "phone")),
            "problems_found": rng.choice(("无", "1、看病贵；2、房屋漏雨", "孩子上学远")),
            "problems_solved": rng.choice(("无", "房屋漏雨")),
            "help_kind": "资金" if value else "",
            "help_value": value,
            "help_source": rng.choice(("个人出资", "财政专项资金")) if value else "",
        }

    def file(self, conn: sa.Connection, name: str, rows: list[tuple[int, str, dict, bool]]) -> None:
        self.files += 1
        file_id = conn.execute(
            schema.intake_file.insert().values(
                department="visits",
                file_name=name,
                sha256=f"{self.files:064d}",
                size_bytes=1,
                status="loaded",
                rows_read=len(rows),
                rows_loaded=len(rows),
                received_at=warehouse.now(),
            )
        ).inserted_primary_key[0]
        for row, head, attrs, resent in rows:
            conn.execute(
                schema.source_record.insert().values(
                    file_id=file_id,
                    sheet="Sheet",
                    row_number=row,
                    department="visits",
                    roster="visit",
                    entity_kind="visit",
                    id_number=head,
                    attrs=json.dumps(attrs, ensure_ascii=False),
                    loaded_at=warehouse.now(),
                    resent=resent,
                )
            )


def table(conn: sa.Connection) -> dict[str, dict]:
    fh = schema.followup_household
    return {r.household_key: dict(r._asdict()) for r in conn.execute(sa.select(fh))}


def tables(eng: sa.Engine, as_of: dt.date, cfg: FollowupConfig = CFG) -> tuple[dict, dict]:
    """(the table as the night left it, what the full rebuild gives; the rebuild rolled back)."""
    with eng.connect() as conn, conn.begin() as tx:
        kept = table(conn)
        figures.rebuild_followup(conn, as_of, cfg)
        rebuilt = table(conn)
        tx.rollback()
    return kept, rebuilt


def shown(rows: dict[str, dict]) -> dict[str, dict]:
    return {k: {c: v for c, v in r.items() if c not in figures.DATED} for k, r in rows.items()}


def last_build_was_full(eng: sa.Engine) -> bool:
    with eng.connect() as conn:
        return bool(conn.execute(sa.select(schema.followup_build.c.full)).scalar_one())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_night_the_figures_equal_the_full_rebuild_and_say_how_many_changed(url, seed):
    eng = warehouse.connect(url)
    district = District(eng, random.Random(seed))
    before: dict[str, dict] = {}
    full_nights = []
    for n, day in enumerate(NIGHTS):
        if n == 0:
            district.first_night()
        elif day not in QUIET:
            district.churn(day)
            district.visits(day, rows=district.rng.randint(1, 25))
        done = match.match(eng, day, run_id=f"night-{day}", cfg=CFG)
        kept, rebuilt = tables(eng, day)
        assert kept == rebuilt, (seed, day)
        assert {r["as_of"] for r in kept.values()} <= {day}
        old, new = shown(before), shown(kept)
        assert done["figures_changed"] == sum(1 for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        assert done["households"] == len(kept)
        full_nights.append(last_build_was_full(eng))
        before = kept
    # the first night and the first night of 2027 are rebuilt in full; the others follow what changed
    assert [d for d, full in zip(NIGHTS, full_nights, strict=True) if full] == [
        NIGHTS[0],
        dt.date(2027, 1, 2),
    ]
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.household_merge)).scalar_one() > 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.visit)).scalar_one() > 50


def _district_with_visits(url: str) -> District:
    eng = warehouse.connect(url)
    district = District(eng, random.Random(7))
    district.first_night()
    match.match(eng, START, cfg=CFG)
    district.visits(dt.date(2026, 8, 20), rows=30, ahead=0)
    match.match(eng, dt.date(2026, 8, 20), cfg=CFG)
    return district


def _row_versions(eng: sa.Engine) -> dict[str, str]:
    """PostgreSQL: household -> the transaction that wrote its row of ``followup_figures`` (a row
    rewritten gets a new one)."""
    with eng.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT household_key, xmin::text FROM followup_figures").all())


def test_a_night_with_nothing_new_changes_no_figures_but_moves_the_date(url):
    eng = _district_with_visits(url).eng
    with eng.connect() as conn:
        before = table(conn)
    versions = _row_versions(eng) if url.startswith("postgresql") else None
    done = match.match(eng, dt.date(2026, 8, 23), cfg=CFG)
    if versions is not None:  # the date moved without writing a household's row
        assert _row_versions(eng) == versions
    assert (done["rows_matched"], done["figures_changed"], done["households"]) == (0, 0, len(before))
    assert not last_build_was_full(eng)
    with eng.connect() as conn:
        after = table(conn)
    assert shown(after) == shown(before)
    assert {r["as_of"] for r in after.values()} == {dt.date(2026, 8, 23)}
    contacted = {k: r["days_since_contact"] for k, r in before.items() if r["last_contact_on"] is not None}
    assert contacted, "some households were visited"
    assert {k: after[k]["days_since_contact"] - d for k, d in contacted.items()} == dict.fromkeys(
        contacted, 3
    )
    assert all(r["days_since_contact"] is None for k, r in after.items() if k not in contacted)


def test_a_new_visit_or_a_changed_pair_counts_as_changed_figures(url):
    district = _district_with_visits(url)
    eng = district.eng
    day = dt.date(2026, 8, 22)
    with eng.begin() as conn:
        pair = district.current(conn)[district.household(1)]
        head = conn.execute(
            sa.select(schema.household.c.head_id_number).where(
                schema.household.c.household_key == pair.target_key
            )
        ).scalar_one()
        cadre_id = conn.execute(
            sa.select(schema.cadre.c.id_number).where(schema.cadre.c.cadre_key == pair.cadre_key)
        ).scalar_one()
        attrs = {"cadre_id_number": cadre_id, "visit_date": "2026-08-21", "visit_kind": "phone"}
        district.file(conn, "visits/电话记录.xlsx", [(3, head, attrs, False)])
    done = match.match(eng, day, cfg=CFG)
    assert (done["rows_matched"], done["figures_changed"]) == (1, 1)

    day += dt.timedelta(days=1)
    with eng.begin() as conn:
        district.end(conn, [pair.pairing_id], day)
        conn.execute(
            schema.pairing.insert().values(
                cadre_key=district.cadre(11 if pair.cadre_key != district.cadre(11) else 10),
                target_kind="household",
                target_key=pair.target_key,
                valid_from=day,
                made_reason="cadre_left",
            )
        )
    done = match.match(eng, day, cfg=CFG)
    assert (done["rows_matched"], done["figures_changed"]) == (0, 1)
    assert not last_build_was_full(eng)
    with eng.connect() as conn:
        row = table(conn)[pair.target_key]
    assert row["cadre_key"] != pair.cadre_key
    assert row["carried_over"] == 1  # the phone call by the cadre before counts for the household


def test_a_night_that_cannot_be_followed_rebuilds_the_figures_in_full(url):
    district = _district_with_visits(url)
    eng = district.eng
    b = schema.followup_build
    # a night not after the last one (a retried stage, a night run again for an earlier date)
    for day in (dt.date(2026, 8, 20), dt.date(2026, 8, 19)):
        match.match(eng, day, cfg=CFG)
        assert last_build_was_full(eng), day
        assert tables(eng, day)[0] == tables(eng, day)[1]
    match.match(eng, dt.date(2026, 8, 21), cfg=CFG)
    assert not last_build_was_full(eng)
    # the table built by another version of the code
    with eng.begin() as conn:
        conn.execute(b.update().values(code_version=figures.CODE_VERSION - 1))
    match.match(eng, dt.date(2026, 8, 22), cfg=CFG)
    assert last_build_was_full(eng)
    # old ended pairs purged: a household paired again has its first pair later than it was
    day = dt.date(2026, 8, 23)
    with eng.begin() as conn:
        pair = district.current(conn)[district.household(1)]
        district.end(conn, [pair.pairing_id], day)
        district.pair(conn, [pair.target_key], day)
    match.match(eng, day, cfg=CFG)
    assert not last_build_was_full(eng)
    from rosterlink.privacy import retention

    report = retention.purge(eng, 30, ended_pairs_older_than_days=1096, moment=dt.datetime(2030, 1, 1))
    assert report.ended_pairs == 1
    day = dt.date(2026, 8, 24)
    match.match(eng, day, cfg=CFG)
    assert last_build_was_full(eng)
    kept, rebuilt = tables(eng, day)
    assert kept == rebuilt
    assert kept[pair.target_key]["paired_on"] == dt.date(2026, 8, 23)
    # another help band: every household's flag is judged again
    wider = dataclasses.replace(CFG, help_max=4000.0)
    for day in (dt.date(2026, 8, 25), dt.date(2026, 8, 26)):
        match.match(eng, day, cfg=wider)
        assert last_build_was_full(eng) == (day == dt.date(2026, 8, 25))
        kept, rebuilt = tables(eng, day, wider)
        assert kept == rebuilt


@pytest.mark.slow
def test_real_nights_of_a_sample_district_keep_the_figures_equal_to_the_full_rebuild(
    tmp_path, sqlite_url, run_night
):
    """The sample generator's district through the real night (Airflow ``dag.test``): the pairs of
    night 1, the units' visit logs, a quiet night, a churn night after the first-visit deadline,
    more logs, a churn night in the new year and a quiet one."""
    from rosterlink.synthetic import visits as sample_visits
    from rosterlink.synthetic.churn import Churn

    intake, exports, url = tmp_path / "intake", tmp_path / "exports", sqlite_url
    churn = Churn(intake, seed=5, scale=0.2, first_night=dt.date(2026, 9, 1))
    eng = warehouse.connect(url)
    before: dict[str, dict] = {}

    def night(day: dt.date) -> dict:
        nonlocal before
        assert run_night(intake, url, exports, as_of=day.isoformat()) == "success", day
        kept, rebuilt = tables(eng, day)
        assert kept == rebuilt, day
        with eng.connect() as conn:
            n = schema.night_run
            recorded = conn.execute(
                sa.select(n.c.summary).order_by(n.c.started_at.desc()).limit(1)
            ).scalar_one()
        done = json.loads(recorded)["followup"]
        old, new = shown(before), shown(kept)
        assert done["figures_changed"] == sum(1 for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        assert done["households"] == len(kept)
        before = kept
        return done

    churn.write_night(1)
    night(dt.date(2026, 9, 1))
    sample_visits.generate(intake, url, dt.date(2026, 9, 20), seed=5)
    assert night(dt.date(2026, 9, 20))["rows_matched"] > 0
    quiet = night(dt.date(2026, 9, 21))
    assert (quiet["rows_matched"], quiet["figures_changed"]) == (0, 0)
    assert not last_build_was_full(eng)
    churn.write_night(2)
    assert night(dt.date(2026, 9, 27))["figures_changed"] > 0  # the deadline passed, pairs changed
    assert not last_build_was_full(eng)
    sample_visits.generate(intake, url, dt.date(2026, 12, 30), seed=5)
    night(dt.date(2026, 12, 30))
    churn.write_night(3)
    night(dt.date(2027, 1, 2))
    assert last_build_was_full(eng)  # a new year: the year's help starts again
    assert night(dt.date(2027, 1, 3))["figures_changed"] == 0
    assert not last_build_was_full(eng)


def test_a_sheet_that_lists_the_first_overdue_households_reads_only_those_and_every_help_line(url):
    """The summary's 走访预警 lists the first overdue households and every help line: read with a
    cap, the lines are the full list's with the overdue ones past the cap left out, in the same
    order, and the count of overdue households is the full list's (every town, or some)."""
    district = _district_with_visits(url)
    eng, day = district.eng, dt.date(2026, 10, 15)  # the first-visit deadline has passed
    district.visits(dt.date(2026, 9, 1), rows=25)
    match.match(eng, day, cfg=CFG)
    with eng.connect() as conn:
        for towns in (None, TOWNS[:2]):
            full = figures.warnings(conn, day, CFG, towns)
            overdue = [i for i, w in enumerate(full) if w[0] == "超期未走访"]
            helped = {w[4] for w in full if w[0].startswith("帮扶")}
            assert len(overdue) > 10, "households overdue for their first visit"
            assert helped, "households helped outside the band"
            if towns is None:  # some household with help outside the band is overdue past a cap
                assert helped & {full[i][4] for i in overdue[3:]}
            for cap in (0, 1, 3, len(overdue) // 2, len(overdue), len(overdue) + 5):
                dropped = set(overdue[cap:])
                expected = [w for i, w in enumerate(full) if i not in dropped]
                assert figures.warnings(conn, day, CFG, towns, overdue_cap=cap) == expected, (towns, cap)
        assert figures.overdue_households(conn) == sum(
            1 for w in figures.warnings(conn, day, CFG) if w[0] == "超期未走访"
        )
