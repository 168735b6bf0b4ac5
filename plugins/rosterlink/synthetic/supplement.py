"""The town women's federations' supplementary list: guardians re-reported without ID numbers.

Real offices do this: a town's women's federation re-reports families it already listed, from its
own paper records, with the guardian's name, village and phone but no ID number; a few entries
carry a misremembered name, a moved village or a new phone. Nothing in the night-1 sample does
that (every guardian there has an ID), so a newcomer running ``make demo`` would never see the
model link a row or the review queue (``intake/review/待核实.xlsx``) fill. This file is for them.

``write(out_dir, seed=..., scale=...)`` writes ``womens_federation/乡镇妇联补报失亲儿童家庭名单.xlsx``
for the night-1 population of ``seed``/``scale``:

- **exact re-reports** (:data:`EXACT`): a listed orphan family, guardian's name, town, village and
  phone as on the main list, no ID: the model should link each to its family;
- **doubtful re-reports** (:data:`DOUBTFUL`): a listed family whose guardian's given name has one
  character miswritten and whose phone is new: enough doubt that a person should decide (the
  review queue, ``intake/review/待核实.xlsx``). Until someone does, the night keeps them apart
  (a household of its own, paired), which is what the reviewer's 同一 undoes.

Nothing else is new: a night whose review queue is settled ends with the same household counts as
without the file.
The children are named (the clerk's list has them) without their ID numbers. Same seed and scale
-> the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rosterlink.core import spec
from rosterlink.synthetic import writers
from rosterlink.synthetic.population import build_population

REL = "womens_federation/乡镇妇联补报失亲儿童家庭名单.xlsx"
EXACT = 12
DOUBTFUL = 6

# the character a clerk writing from paper puts for the last one of a given name
MISWRITTEN = "明华英秀兰芳军伟强静"

HEADERS = [
    "序号", "儿童姓名", "失亲情况", "监护人姓名", "监护人身份证号", "与儿童关系", "镇街", "村居", "联系电话",
]  # fmt: skip


@dataclass(frozen=True)
class Supplement:
    """What :func:`write` wrote: the file (relative to the intake root) and its rows by kind."""

    rel: str
    rows: int
    exact_families: int
    doubtful_families: int


def _other_phone(rng: random.Random) -> str:
    return "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))


def write(out_dir: Path, *, seed: int, scale: float = 1.0) -> Supplement:
    """Write the supplementary list under ``out_dir`` (the intake root) and say what it holds."""
    from openpyxl import Workbook

    pop, _ = build_population(seed, scale)
    rng = random.Random(f"{seed}:supplement")
    hardship_heads = {h.head.id18 for h in pop.hardship}
    candidates = [f for f in pop.orphan if f.children and f.phone and f.head.id18 not in hardship_heads]
    picked = rng.sample(candidates, min(len(candidates), EXACT + DOUBTFUL))
    exact, doubtful = picked[:EXACT], picked[EXACT:]

    rows: list[list[object] | None] = []
    for fam, is_doubtful in [*((f, False) for f in exact), *((f, True) for f in doubtful)]:
        name, village, phone = fam.head.name, fam.village, fam.phone
        if is_doubtful:  # the given name miswritten by one character, and a new phone
            name = name[:-1] + rng.choice([c for c in MISWRITTEN if c != name[-1]])
            phone = _other_phone(rng)
        for child, situation in fam.children:
            seq = len(rows) + 1
            rows.append([seq, child.name, situation, name, None, fam.relation, fam.town, village, phone])

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "补报名单"
    district = spec.district().name
    writers.xlsx_sheet(
        ws,
        title=f"{district}乡镇妇联补报失亲儿童家庭名单",
        subtitle="（据各镇街妇联纸质台账补报，监护人身份证号待补）",
        headers=HEADERS,
        rows=rows,
        footers=[None, f"合计：{len(picked)}户{len(rows)}人"],
        widths=[6, 10, 12, 10, 20, 10, 10, 12, 14],
        text_cols=[8],
    )
    path = Path(out_dir) / REL
    path.parent.mkdir(parents=True, exist_ok=True)
    writers.save_xlsx(wb, path)
    return Supplement(REL, len(rows), len(exact), len(doubtful))
