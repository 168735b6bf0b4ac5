"""Linkage benchmark: pairwise precision, recall and F1 of the link stage against known truth.

The labelled rows come from :mod:`rosterlink.synthetic.linkage_eval` (the sample generator's population of
the reference district times ``--scale``, with cross-department overlaps, ID-less guardians,
homophones, typos, changed phones, duplicates and namesakes), over two nights. Each night's rows are
inserted into a fresh SQLite warehouse as loaded rows and the real link stage (``link.link``) runs
in a child process, so its wall time and peak memory (max RSS) are its own.

    .venv/bin/python benchmarks/bench_linkage.py                 # the reference district (1x)
    .venv/bin/python benchmarks/bench_linkage.py --scale 100     # ~150,000 household rows
    .venv/bin/python benchmarks/bench_linkage.py --reviewers     # also: reviewers decide the queue
    .venv/bin/python benchmarks/bench_linkage.py --backend spark # Splink on Spark (local[2]; extra [spark])

``--backend`` sets ``ROSTERLINK_LINKAGE_BACKEND`` for the link stage's process (``--spark-master``
sets ``ROSTERLINK_SPARK_MASTER``); with Spark, each night's wall time includes starting the
session (the JVM), shown separately as ``spark start``.

``--reviewers`` answers every queued review from the truth (as a diligent clerk would) with
``rosterlink review decide`` semantics and runs a third night with no new rows, to show what the
review loop recovers. ``--json FILE`` writes all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


def _child(url: str) -> int:
    """Run one night's link stage (in the child process) and print its summary as JSON."""
    from rosterlink import warehouse
    from rosterlink.link import backends as linkage_backends
    from rosterlink.link import night as link
    from rosterlink.link.config import load_config

    eng = warehouse.connect(url)
    started = time.perf_counter()
    cfg = load_config()
    backend = linkage_backends.backend_name(cfg)
    spark_start = None
    if backend == "spark":  # started here only to time it apart; the stage would start it on first use
        linkage_backends.spark_session(cfg)
        spark_start = round(time.perf_counter() - started, 2)
    summary = link.link(eng)
    summary["backend"] = backend
    summary["spark_start_seconds"] = spark_start
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    summary["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["jvm_peak_mb"] = _descendants_peak_mb() if backend == "spark" else None
    print("BENCH-JSON " + json.dumps(summary, ensure_ascii=False, default=str))
    return 0


def _descendants_peak_mb() -> float:
    """Peak resident memory (VmHWM) of this process's running descendants: Spark's JVM."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, total = list(children.get(os.getpid(), [])), 0.0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


def _run_link(url: str, backend: str | None = None, master: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    if backend:
        env["ROSTERLINK_LINKAGE_BACKEND"] = backend
    if master:
        env["ROSTERLINK_SPARK_MASTER"] = master
    proc = subprocess.run([sys.executable, __file__, "--child", url], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit("link stage failed")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH-JSON "))
    return json.loads(line[len("BENCH-JSON ") :])


def _reviews(eng) -> Counter:
    with eng.connect() as conn:
        return Counter(
            dict(
                conn.exec_driver_sql(
                    "SELECT reason || ':' || status, COUNT(*) FROM link_review GROUP BY reason, status"
                ).all()
            )
        )


def _answer_reviews(eng, evalset, index) -> Counter:
    """Decide every pending review from the truth, as a clerk would."""
    import sqlalchemy as sa

    from rosterlink.link import review
    from rosterlink.warehouse import schema

    r = schema.source_record
    with eng.connect() as conn:
        loc = {
            rid: (f, n) for rid, f, n in conn.execute(sa.select(r.c.record_id, r.c.file_id, r.c.row_number))
        }
    decided: Counter = Counter()
    with eng.begin() as conn:
        for row in review.listed_reviews(conn)[0]:  # every pending review
            a, b = loc.get(row.record_id_l), loc.get(row.record_id_r)
            if a not in index or b not in index:
                continue
            same = evalset.rows[index[a]].truth == evalset.rows[index[b]].truth
            review.decide(conn, row.review_id, "same" if same else "different", "benchmark (truth)")
            decided[f"{row.reason}:{'same' if same else 'different'}"] += 1
    return decided


def _fmt(m: dict) -> str:
    return (
        f"P={m['precision']:.4f} R={m['recall']:.4f} F1={m['f1']:.4f} "
        f"(rows {m['rows']:,}, true pairs {m['true_pairs']:,}, predicted {m['predicted_pairs']:,}, "
        f"entities {m['entities_predicted']:,}/{m['entities_true']:,})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="times the reference district (1,457 households)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--db", help="SQLite file to use (default: a temporary one)")
    parser.add_argument(
        "--reviewers", action="store_true", help="answer the review queue from the truth, relink"
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--backend", choices=("duckdb", "spark"), help="Splink backend (default: the configured one)"
    )
    parser.add_argument("--spark-master", help="Spark master URL (default: the configured one, local[2])")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)

    from rosterlink import warehouse
    from rosterlink.synthetic import linkage_eval

    seed = args.seed if args.seed is not None else linkage_eval.DEFAULT_SEED
    t = time.perf_counter()
    evalset = linkage_eval.generate(seed=seed, scale=args.scale)
    gen_s = time.perf_counter() - t
    kinds = Counter(r.entity_kind for r in evalset.rows)
    print(
        f"evaluation set: scale {args.scale}, seed {seed}: {kinds['household']:,} household rows, "
        f"{kinds['cadre']:,} cadre rows, {len(evalset.namesakes)} namesake pairs ({gen_s:.1f}s to generate)"
    )
    tags = evalset.tag_counts()
    print("  problems planted: " + ", ".join(f"{k} {v:,}" for k, v in tags.items()))

    tmp = tempfile.mkdtemp(prefix="rl-bench-linkage-")
    db = Path(args.db) if args.db else Path(tmp) / "warehouse.db"
    if db.exists():
        db.unlink()
    url = f"sqlite:///{db}"
    eng = warehouse.connect(url)
    index: dict = {}
    figures: dict = {
        "scale": args.scale,
        "seed": seed,
        "backend": args.backend,
        "rows": dict(kinds),
        "planted": tags,
        "nights": [],
    }
    for night in evalset.nights():
        t = time.perf_counter()
        index.update(linkage_eval.load(eng, evalset, night))
        load_s = time.perf_counter() - t
        summary = _run_link(url, args.backend, args.spark_master)
        result = linkage_eval.evaluate(eng, evalset, index)
        reviews = _reviews(eng)
        rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        n_rows = sum(1 for r in evalset.rows if r.night == night)
        print(f"\nnight {night}: {n_rows:,} new rows (inserted in {load_s:.1f}s)")
        jvm = f" + JVM {summary['jvm_peak_mb']:.0f} MB" if summary.get("jvm_peak_mb") else ""
        print(
            f"  link stage: {summary['wall_seconds']:.1f}s wall, "
            f"peak memory {summary['max_rss_mb']:.0f} MB{jvm} "
            f"(model: {summary['model'].get('source')}, "
            f"{summary['timings'].get('household_model', 0):.1f}s in training+scoring; "
            f"backend {summary['backend']}"
            + (
                f", spark start {summary['spark_start_seconds']:.1f}s"
                if summary["spark_start_seconds"]
                else ""
            )
            + ")"
        )
        print(f"  households: {_fmt(result['household'])}")
        print(f"  cadres:     {_fmt(result['cadre'])}")
        print(f"  namesake pairs merged: {result['namesakes']['merged']} of {result['namesakes']['pairs']}")
        clusters = summary["clusters"]
        print(
            f"  clusters: {clusters['households']:,} households, largest {clusters['largest']} rows, "
            f"sizes {clusters['size_histogram']}; "
            f"model-shaped 3+ row clusters {clusters['model_shaped_3plus']}, "
            f"density min {clusters['density_min']} median {clusters['density_median']}, "
            f"below 0.5: {clusters['density_below_half']}"
        )
        print(f"  review queue: {dict(sorted(reviews.items()))}; merges tonight {len(summary['merges'])}")
        figures["nights"].append(
            {
                "night": night,
                "rows": n_rows,
                "link": summary,
                "metrics": result,
                "reviews": dict(reviews),
                "peak_rss_mb_children": rss_children,
            }
        )
    if args.reviewers:
        decided = _answer_reviews(eng, evalset, index)
        summary = _run_link(url, args.backend, args.spark_master)
        result = linkage_eval.evaluate(eng, evalset, index)
        print(f"\nafter reviewers answered the queue ({dict(sorted(decided.items()))}) and one more night:")
        print(f"  households: {_fmt(result['household'])}")
        print(f"  cadres:     {_fmt(result['cadre'])}")
        print(f"  decisions applied: {len(summary['decisions_applied'])}, merges {len(summary['merges'])}")
        figures["after_review"] = {"decided": dict(decided), "metrics": result, "link": summary}
    if args.json:
        Path(args.json).write_text(
            json.dumps(figures, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
