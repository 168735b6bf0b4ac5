"""Issue 14's targets, and the verdict a benchmark prints against them after its nights.

Each target is held against the figures the same run measured: ``bench_night.py``'s nights (a
scaled district through ``dag.test``, each stage beside its bare tool) and ``bench_province.py``'s
(the province on PostgreSQL and Celery). A verdict says the target, the measured figure, ``met``
or ``GAP``, and for a gap what the measured figure is made of (its largest parts, read off the same
run), so the reader sees where the time went without opening the JSON. Why those parts cost what
they cost, and what would remove them, is the analysis in ``docs/BENCHMARKS.md`` ("Targets and
gaps"), which the verdict points to. Nothing here asserts anything: it prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

GAPS_DOC = 'docs/BENCHMARKS.md, "Targets and gaps"'
MEMORY_MB = 3 * 1024  # no process above 3 GB
NIGHT_OVER_READ = 10.0  # the whole night 1 within 10x the bare read of its files
CHURN_SHARE = 1 / 3  # a churn night under a third of night 1
PROVINCE_NIGHT_S = 300.0  # province night 1 under 5 minutes, 2 workers
QUIET_NIGHT_S = 30.0  # a night with no new file under 30 s, province size
STAGE_OVER_BARE = {  # each stage within this many times its bare tool, same rows, same run
    "read_and_validate_file": (3.0, "read + normalise + validate"),
    "load_files": (2.0, "load"),
    "link_entities": (2.0, "link"),
    "rebuild_pairings": (1.2, "pairing"),
    "write_town_workbooks": (1.5, "town workbooks"),
    "write_pairing_summary": (1.5, "pairing summary"),
    "write_change_log": (1.5, "change log"),
}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One target against one run's figure."""

    target: str
    measured: str
    met: bool
    of_it: str = ""  # a gap's largest parts, as measured


def _largest(parts: Mapping[str, float], unit: str, n: int = 3) -> str:
    """The ``n`` largest of ``parts``, largest first: 'a 12.3 s, b 4.5 s'."""
    top = sorted(((v, k) for k, v in parts.items() if v > 0), reverse=True)[:n]
    return ", ".join(f"{k} {v:.1f} {unit}" for v, k in top)


def bare_cpu(name: str, bare: Mapping[str, float]) -> float:
    """The CPU seconds of a stage's bare tool (the link's: DuckDB plus Splink's own time)."""
    splink = float(bare.get("splink_s") or 0.0) if name == "link_entities" else 0.0
    return float(bare.get("cpu_s") or 0.0) + splink


def night_verdicts(nights: Sequence[Mapping]) -> list[Verdict]:
    """``bench_night.py``'s nights (its ``run_night`` results, night 1 first) against the targets
    a scaled district can be held to: the whole night 1 against its bare read, each stage against
    its bare tool (night 1), the churn night against night 1, and every task's peak memory."""
    verdicts: list[Verdict] = []
    first = next((n for n in nights if n["night"] == 1), None)
    if first is not None:
        stages, bare = first["stages"], first["bare"]
        read = bare_cpu("read_and_validate_file", bare.get("read_and_validate_file") or {})
        if read > 0:
            ratio = first["total_cpu_s"] / read
            verdicts.append(
                Verdict(
                    f"night 1 within {NIGHT_OVER_READ:.0f}x the bare read of its files",
                    f"{first['total_cpu_s']:.1f} s CPU / {read:.2f} s = {ratio:.1f}x",
                    ratio <= NIGHT_OVER_READ,
                    f"{_stages(first, 'cpu_s')}; {_floors(first, read)}",
                )
            )
        for name, (limit, label) in STAGE_OVER_BARE.items():
            base = bare_cpu(name, bare.get(name) or {})
            if name not in stages or base <= 0:
                continue
            ratio = stages[name]["cpu_s"] / base
            of_it = f"{stages[name]['cpu_s']:.2f} s CPU against {base:.2f} s"
            if name == "read_and_validate_file":
                parts = {k: v["cpu_s"] for k, v in first.get("parts", {}).items()}
                of_it += f" ({_largest(parts, 's CPU')})" if parts else ""
            verdicts.append(
                Verdict(f"{label} within {limit:g}x its bare tool", f"{ratio:.1f}x", ratio <= limit, of_it)
            )
    second = next((n for n in nights if n["night"] == 2), None)
    if first is not None and second is not None and first["total_cpu_s"] > 0:
        share = second["total_cpu_s"] / first["total_cpu_s"]
        verdicts.append(
            Verdict(
                "churn night (2) under a third of night 1",
                f"{second['total_cpu_s']:.1f} / {first['total_cpu_s']:.1f} s CPU = {share:.2f}",
                share < CHURN_SHARE,
                _stages(second, "cpu_s"),
            )
        )
    peaks = {f"{k} (night {n['night']})": v["peak_rss_mb"] for n in nights for k, v in n["stages"].items()}
    if peaks:
        verdicts.append(_memory(peaks))
    return verdicts


def _floors(night: Mapping, read: float) -> str:
    """What night 1 would cost with every measured stage at its bare tool, and at its own target
    (the stages without a bare tool as they are): how far the whole-night target is reachable by
    meeting the per-stage ones."""
    bare_alone = at_target = 0.0
    for name, st in night["stages"].items():
        base = bare_cpu(name, night["bare"].get(name) or {})
        if name in STAGE_OVER_BARE and base > 0:
            bare_alone += base
            at_target += STAGE_OVER_BARE[name][0] * base
        else:
            at_target += st["cpu_s"]
    return (
        f"the bare tools alone {bare_alone:.1f} s ({bare_alone / read:.1f}x the read); every stage at"
        f" its own target (the others as measured) {at_target:.1f} s ({at_target / read:.1f}x)"
    )


def _stages(night: Mapping, figure: str) -> str:
    """A night's four largest stages by ``figure`` (``cpu_s`` or ``wall_s``)."""
    label = {"cpu_s": "CPU s", "wall_s": "wall s"}[figure]
    return f"{label}: " + _largest({k: v[figure] for k, v in night["stages"].items()}, "s", 4)


def _took(run: Mapping) -> float:
    """A province night's time: run start to end (the DAG run's own, else the benchmark's clock)."""
    return float(run.get("run_s") or run["wall_s"])


def _memory(peaks: Mapping[str, float]) -> Verdict:
    top = max(peaks.values())
    return Verdict(
        f"no process above {MEMORY_MB / 1024:.0f} GB",
        f"largest {top:,.0f} MB",
        top <= MEMORY_MB,
        "peak MB: " + _largest(peaks, "MB"),
    )


def province_verdicts(runs: Iterable[Mapping]) -> list[Verdict]:
    """``bench_province.py``'s nights (each a ``run_nights`` result) against the province's
    targets: night 1 under five minutes with 2 workers, the churn night under a third of it, a
    night with no new file under 30 s, no process above 3 GB."""
    verdicts: list[Verdict] = []
    peaks: dict[str, float] = {}
    runs = list(runs)
    for workers in sorted({r["workers"] for r in runs}):
        nights = [r for r in runs if r["workers"] == workers]
        first = next((r for r in nights if r["night"] == "night 1"), None)
        if first is None:
            continue

        if workers == 2:
            verdicts.append(
                Verdict(
                    f"night 1 under {PROVINCE_NIGHT_S:.0f} s with 2 workers",
                    f"{_took(first):.0f} s",
                    _took(first) < PROVINCE_NIGHT_S,
                    _stages(first, "wall_s"),
                )
            )
        churn = next((r for r in nights if r["night"] == "churn night"), None)
        if churn is not None:
            share = _took(churn) / _took(first)
            verdicts.append(
                Verdict(
                    f"churn night under a third of night 1 ({workers} workers)",
                    f"{_took(churn):.0f} / {_took(first):.0f} s = {share:.2f}",
                    share < CHURN_SHARE,
                    _stages(churn, "wall_s"),
                )
            )
        for r in nights:
            if r["night"].startswith("quiet night"):
                verdicts.append(
                    Verdict(
                        f"{r['night']} under {QUIET_NIGHT_S:.0f} s ({workers} workers)",
                        f"{_took(r):.0f} s",
                        _took(r) < QUIET_NIGHT_S,
                        _stages(r, "wall_s"),
                    )
                )
        for r in nights:
            for name, res in r.get("task_resources", {}).items():
                peaks[f"{name} task ({r['night']})"] = float(res.get("peak_rss_mb") or 0)
            for name, mb in r.get("components_peak_mb", {}).items():
                peaks[f"{name} ({r['night']})"] = float(mb or 0)
    if peaks:
        verdicts.append(_memory(peaks))
    return verdicts


def print_verdicts(title: str, verdicts: Sequence[Verdict]) -> None:
    """The verdicts as a table: target, measured, met or GAP (and, for a gap, what it is made of)."""
    if not verdicts:
        return
    print(f"\n{title}")
    width = max(len(v.target) for v in verdicts)
    for v in verdicts:
        print(f"  {v.target:<{width}}  {v.measured:<28} {'met' if v.met else 'GAP'}")
        if not v.met and v.of_it:
            print(f"  {'':<{width}}    of it: {v.of_it}")
    gaps = sum(not v.met for v in verdicts)
    if gaps:
        print(f"  {gaps} of {len(verdicts)} not met: why, and what would close each, in {GAPS_DOC}")
    else:
        print(f"  all {len(verdicts)} met")
