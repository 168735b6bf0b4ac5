"""Many consecutive nights of churn for soak runs, built on the sample generator (:mod:`sample`).

:class:`Churn` keeps one synthetic district in memory and writes, night after night, what the
departments would drop: night 1 is ``sample.generate(night=1)`` (the whole district, ``scale``
times the reference size); every later night is one round of the sample generator's own changes
(:func:`population.apply_round`: about 3 % of the hardship households exit and 2 % are added through
the adjustment list, 2 % of the cadres leave and 1 % join through the change list, 10 % of the
open cases are closed through the closure list, each list with its deliberately bad rows) plus a
petition ledger of newly registered cases (as many as were closed), so the case book does not run
dry over a month.

What differs from ``sample.generate(night=N)``, and why:

* one population is carried from night to night (generate replays nights 1..N-1 each time);
* the dates. The sample dates night N at 2026-11-20 + N - 1 and every change up to 30 days
  before it, which over many nights puts changes in the future (the validator refuses a date
  after today) and, worse, can date an exit before the same household's addition a few nights
  earlier (status takes the latest change by date). Here night ``n`` is ``first_night + n - 1``
  and every change of that night carries the night's date, so dates never go backwards.

Usage::

    churn = Churn(intake_dir, seed=1, scale=10, first_night=dt.date(2026, 11, 2))
    for n in range(1, 31):
        night = churn.write_night(n)   # NightFiles: as_of, files (rel -> FileTruth), expected counts
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

from rosterlink.core import spec
from rosterlink.synthetic import population, sample, writers
from rosterlink.synthetic.population import Bad, Case, Entity, Round, RoundBad
from rosterlink.synthetic.truth import Counts, FileTruth

__all__ = ["Churn", "NightFiles", "first_night_for"]


def first_night_for(nights: int, today: dt.date | None = None) -> dt.date:
    """The date of night 1 such that ``nights`` daily nights end no later than ``today``.

    Never later than the sample's own fill date (its night-1 files are dated then)."""
    today = today or dt.date.today()
    return min(population.NIGHT1_FILL_DATE, today - dt.timedelta(days=nights - 1))


@dataclass
class NightFiles:
    night: int
    as_of: dt.date
    files: dict[str, FileTruth]  # relative path -> what a correct pipeline makes of it
    changes: dict[str, int]  # how many of each change the night's files carry (good rows only)
    expected: Counts  # counts after the night (sample.Truth.counts shape)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files.values())

    @property
    def bad_rows(self) -> int:
        return sum(len(f.bad_rows) for f in self.files.values())


@dataclass
class Churn:
    out_dir: Path
    seed: int = sample.DEFAULT_SEED
    scale: float = 1.0
    first_night: dt.date = field(default_factory=lambda: population.NIGHT1_FILL_DATE)
    case_open_share: float = 0.10  # of the night-1 case count, opened each night
    # night 1's files written by another writer of the same population (the province benchmark
    # writes its own 40 files): the first night written here is night 2
    night_1_written: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self._pop, self._reg = population.build_population(self.seed, self.scale)
        self._base = {
            "hardship": len(self._pop.hardship),
            "cadres": len(self._pop.cadres),
            "cases": len(self._pop.cases),
        }
        self._last = 1 if self.night_1_written else 0

    def as_of(self, night: int) -> dt.date:
        return self.first_night + dt.timedelta(days=night - 1)

    def write_night(self, night: int) -> NightFiles:
        """Write night ``night``'s files under ``out_dir`` (nights must come in order, from 1)."""
        import time

        if night != self._last + 1:
            raise ValueError(f"nights come in order: expected night {self._last + 1}, got {night}")
        started = time.perf_counter()
        if night == 1:
            truth = sample.generate(self.out_dir, seed=self.seed, scale=self.scale, night=1)
            changes = dict.fromkeys(("exits", "adds", "departures", "joins", "closures", "opens"), 0)
            files = truth.files
        else:
            files, changes = self._change_night(night)
        self._last = night
        expected, _ = population.state(self._pop)
        return NightFiles(
            night, self.as_of(night), files, changes, expected, round(time.perf_counter() - started, 2)
        )

    # ------------------------------------------------------------------------------------------

    def _change_night(self, night: int) -> tuple[dict[str, FileTruth], dict[str, int]]:
        pop, day = self._pop, self.as_of(night)
        rnd = population.apply_round(pop, self._reg, self.seed, night, self._base)
        rnd = _redated(rnd, day)
        opens = self._open_cases(night, day)
        stamp = f"{day:%Y%m%d}"
        rels = {
            "hardship_adjustment": f"civil_affairs/特困家庭动态调整名单_{stamp}.xlsx",
            "cadre_change": f"organization/干部变动名单_{stamp}.xlsx",
            "case_closure": f"petition/信访案件销号名单_{stamp}.csv",
            "case": f"petition/重点信访案件台账_新登记_{stamp}.csv",
        }
        for dept in spec.DEPARTMENTS:
            (self.out_dir / dept).mkdir(parents=True, exist_ok=True)

        def rng(rel: str) -> random.Random:
            return random.Random(f"{self.seed}:churn:{night}:{rel}")

        files: dict[str, FileTruth] = {}
        rel = rels["hardship_adjustment"]
        files[rel] = writers.write_adjustments(self.out_dir, rel, rnd, pop, rng(rel))
        rel = rels["cadre_change"]
        files[rel] = writers.write_cadre_changes(self.out_dir, rel, rnd, pop, rng(rel))
        rel = rels["case_closure"]
        files[rel] = writers.write_closures(self.out_dir, rel, rnd, rng(rel))
        if opens:
            rel = rels["case"]
            only_new = dataclasses.replace(
                pop, cases=opens, bad=population.no_bad_rows(), warn={**pop.warn, "case": {}}
            )
            files[rel] = writers.write_cases(self.out_dir, rel, only_new, rng(rel))
        changes = {
            "exits": len(rnd.exits),
            "adds": len(rnd.adds),
            "departures": len(rnd.departures),
            "joins": len(rnd.joins),
            "closures": len(rnd.closures),
            "opens": len(opens),
        }
        return files, changes

    def _open_cases(self, night: int, day: dt.date) -> list[Case]:
        """Newly registered cases, numbered after every number already handed out this year."""
        pop = self._pop
        count = max(1, round(self.case_open_share * self._base["cases"]))
        rng = random.Random(f"{self.seed}:churn-cases:{night}")
        taken = [c.number for c in (*pop.cases, *pop.closed_cases)]
        taken += [b.entity.number for b in pop.bad.get("case", [])]
        prefix = f"XF{day.year}-"
        seq = max((int(n[len(prefix) :]) for n in taken if n.startswith(prefix)), default=0)
        opened = []
        for _ in range(count):
            case = population.new_case(rng, self._reg, pop.towns, registered=day)
            seq += 1
            case.number = population.case_number(day.year, seq)
            opened.append(case)
        pop.cases.extend(opened)
        return opened


def _redated(rnd: Round, day: dt.date) -> Round:
    """The round with every change dated ``day`` (closures: not before the case's registration)."""

    def redated(rows: list[Bad[Entity]]) -> list[Bad[Entity]]:
        out = []
        for b in rows:
            if "date" in b.extra:
                extra = b.extra.copy()
                extra["date"] = day
                b = dataclasses.replace(b, extra=extra)
            out.append(b)
        return out

    bad: RoundBad = {
        "hardship_adjustment": redated(rnd.bad["hardship_adjustment"]),
        "cadre_change": redated(rnd.bad["cadre_change"]),
        "case_closure": redated(rnd.bad["case_closure"]),
    }
    return dataclasses.replace(
        rnd,
        fill_date=day,
        exits=[(h, kind, reason, day) for h, kind, reason, _ in rnd.exits],
        adds=[(h, reason, day) for h, reason, _ in rnd.adds],
        departures=[(c, kind, day) for c, kind, _ in rnd.departures],
        joins=[(c, day) for c, _ in rnd.joins],
        closures=[(c, max(day, c.registered)) for c, _ in rnd.closures],
        bad=bad,
    )
