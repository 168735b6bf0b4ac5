"""Synthetic intake for the reference district: realistic, messy department files plus the truth.

``generate(out_dir, seed=..., scale=..., night=...)`` writes the files four offices would drop into
the intake folders on a given night and returns a :class:`Truth` describing exactly what a correct
pipeline must make of them (rows, rejected rows with their Excel row numbers and reasons, entity
counts and ID lists after the night, and the night's changes).

Night 1 is the whole reference district (``config/district.json`` reference counts times
``scale``): the hardship roster (.xlsx, two sheets, merged title and town cells, footers, a few
within-file duplicates), the orphan-family list (legacy .xls written with xlwt, village merged down),
the cadre roster (.xlsx, unit merged down, an instructions sheet), the pre-1949 party members (GBK
.csv, a third with 15-digit IDs) and the key petition cases (UTF-8-with-BOM .csv). Night N >= 2
adds *new* files only (adjustment list, cadre changes, case closures) that change the population
built by the earlier nights; generating night N replays nights 1..N-1 in memory (same seed and
scale), so the nights stay consistent without reading anything back from disk.

All people are synthetic; every good ID is a valid GB 11643 number built with
:func:`rosterlink.core.idnumber.make`. Bad rows (:data:`BAD_KINDS`: a defect in a required field or in
any ID number, so the row must be rejected) are *extra* rows of fresh people, so the good counts
stay exact; on night >= 2 a bad-date row names a real entity whose change must then NOT happen.
Warning rows (:data:`WARNING_KINDS`: an unusable optional value, an unusual ID region) are rows of
true entities that must still load. Same seed and scale -> byte-identical files (xlsx zip entries get
a fixed timestamp, workbook properties a fixed date; xlwt and csv output carry no clock; nothing
depends on set order or PYTHONHASHSEED).

The people live in :mod:`rosterlink.synthetic.population`, the office file layouts in
:mod:`rosterlink.synthetic.writers`, the truth's shape in :mod:`rosterlink.synthetic.truth`; this
module is the entry points (:func:`generate`, :func:`night_files`, :func:`main`).

CLI: ``python -m rosterlink.synthetic.sample --out DIR [--seed N] [--scale X] [--night N] [--truth FILE]``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from rosterlink.core import spec
from rosterlink.synthetic import writers
from rosterlink.synthetic.population import (
    NIGHT1_FILL_DATE,
    Round,
    apply_round,
    build_population,
    fill_date,
    state,
)
from rosterlink.synthetic.truth import BAD_KINDS, WARNING_KINDS, BadRow, Changes, FileTruth, SheetInfo, Truth
from rosterlink.synthetic.writers import FORMULA_NAME

__all__ = [
    "BAD_KINDS",
    "DEFAULT_SEED",
    "FORMULA_NAME",
    "NIGHT1_FILES",
    "NIGHT1_FILL_DATE",
    "WARNING_KINDS",
    "BadRow",
    "FileTruth",
    "SheetInfo",
    "Truth",
    "generate",
    "main",
    "night_files",
]

DEFAULT_SEED = 20261125

NIGHT1_FILES = {
    "hardship": "civil_affairs/山亭区特困家庭花名册.xlsx",
    "orphan": "womens_federation/山亭区失亲儿童家庭名单.xls",
    "cadre": "organization/山亭区干部花名册.xlsx",
    "old_member": "organization/建国前入党老党员名册.csv",
    "case": "petition/重点信访案件台账.csv",
}


def night_files(night: int) -> dict[str, str]:
    """Roster kind -> relative path of the file written on ``night``."""
    if night == 1:
        return dict(NIGHT1_FILES)
    stamp = f"{fill_date(night):%Y%m%d}"
    return {
        "hardship_adjustment": f"civil_affairs/特困家庭动态调整名单_{stamp}.xlsx",
        "cadre_change": f"organization/干部变动名单_{stamp}.xlsx",
        "case_closure": f"petition/信访案件销号名单_{stamp}.csv",
    }


def generate(
    out_dir: Path,
    *,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    night: int = 1,
    truth_path: Path | None = None,
) -> Truth:
    """Write night ``night``'s intake files under ``out_dir``/<department>/ and return the truth.

    Night 1 writes the five rosters; night N >= 2 writes only that night's change files (the
    earlier nights' files are expected to be in place or already processed). The truth's counts and
    ID lists are the state after the night. ``truth_path`` (JSON) must lie outside ``out_dir``.
    """
    if night < 1:
        raise ValueError("night must be >= 1")
    if scale <= 0:
        raise ValueError("scale must be > 0")
    out_dir = Path(out_dir)
    if truth_path is not None:
        tp = Path(truth_path).resolve()
        if tp == out_dir.resolve() or out_dir.resolve() in tp.parents:
            raise ValueError("truth_path must be outside out_dir")

    pop, reg = build_population(seed, scale)
    base = {"hardship": len(pop.hardship), "cadres": len(pop.cadres), "cases": len(pop.cases)}
    rnd: Round | None = None
    for n in range(2, night + 1):
        rnd = apply_round(pop, reg, seed, n, base)

    for dept in spec.DEPARTMENTS:
        (out_dir / dept).mkdir(parents=True, exist_ok=True)
    fill = fill_date(night)
    files = night_files(night)

    def wrng(rel: str) -> random.Random:
        return random.Random(f"{seed}:write:{night}:{rel}")

    written: dict[str, FileTruth] = {}
    if night == 1:
        # the writers read the night-1 population, so write before anything mutates it
        rel = files["hardship"]
        written[rel] = writers.write_hardship(out_dir, rel, pop, wrng(rel), fill)
        written[files["orphan"]] = writers.write_orphan(
            out_dir, files["orphan"], pop, wrng(files["orphan"]), fill
        )
        written[files["cadre"]] = writers.write_cadres(
            out_dir, files["cadre"], pop, wrng(files["cadre"]), fill
        )
        written[files["old_member"]] = writers.write_old_members(
            out_dir, files["old_member"], pop, wrng(files["old_member"])
        )
        written[files["case"]] = writers.write_cases(out_dir, files["case"], pop, wrng(files["case"]))
        changes: Changes = {
            "exited_household_ids": [],
            "exit_types": {},
            "new_household_ids": [],
            "departed_cadre_ids": [],
            "new_cadre_ids": [],
            "new_cadre_ranks": {},
            "closed_case_numbers": [],
        }
    else:
        assert rnd is not None
        rel = files["hardship_adjustment"]
        written[rel] = writers.write_adjustments(out_dir, rel, rnd, pop, wrng(rel))
        rel = files["cadre_change"]
        written[rel] = writers.write_cadre_changes(out_dir, rel, rnd, pop, wrng(rel))
        rel = files["case_closure"]
        written[rel] = writers.write_closures(out_dir, rel, rnd, wrng(rel))
        changes = {
            "exited_household_ids": sorted(h.head.id18 for h, *_ in rnd.exits),
            "exit_types": {
                h.head.id18: kind for h, kind, *_ in sorted(rnd.exits, key=lambda e: e[0].head.id18)
            },
            "new_household_ids": sorted(h.head.id18 for h, *_ in rnd.adds),
            "departed_cadre_ids": sorted(c.person.id18 for c, *_ in rnd.departures),
            "new_cadre_ids": sorted(c.person.id18 for c, _ in rnd.joins),
            "new_cadre_ranks": {
                c.person.id18: c.rank for c, _ in sorted(rnd.joins, key=lambda j: j[0].person.id18)
            },
            "closed_case_numbers": sorted(c.number for c, _ in rnd.closures),
        }

    counts, active = state(pop)
    truth = Truth(
        seed=seed,
        scale=scale,
        night=night,
        fill_date=fill.isoformat(),
        district=spec.district().name,
        files=written,
        counts=counts,
        active=active,
        changes=changes,
        namesakes=pop.namesakes,
    )
    if truth_path is not None:
        Path(truth_path).parent.mkdir(parents=True, exist_ok=True)
        Path(truth_path).write_text(truth.to_json(), encoding="utf-8")
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rosterlink.synthetic.sample",
        description="Write a synthetic night of department files for the reference district.",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="intake root (department folders are created)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--night", type=int, default=1)
    parser.add_argument("--truth", type=Path, default=None, help="write the truth JSON here (outside --out)")
    args = parser.parse_args(argv)
    try:
        truth = generate(args.out, seed=args.seed, scale=args.scale, night=args.night, truth_path=args.truth)
    except ValueError as exc:
        parser.error(str(exc))
    except ModuleNotFoundError as exc:
        if exc.name != "xlwt":
            raise
        parser.exit(1, f"{exc}\n")
    for rel, f in truth.files.items():
        print(f"{rel}\t{f.format}\trows={f.rows}\tgood={f.good_rows}\tbad={len(f.bad_rows)}")
    c = truth.counts
    print(
        f"households={c['households']['total']} cadres={c['cadres']['total']} open_cases={c['cases']['open']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
