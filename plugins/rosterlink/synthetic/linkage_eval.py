"""A labelled evaluation set for linkage, built from the sample generator's population, with truth.

:func:`generate` takes the reference district's synthetic population (``population.build_population``:
the same people, names, towns, villages and phones as the sample intake) and writes it out the way
the load stage would leave it in ``source_record``, over two nights, with the problems real rosters
have and the answer for every row (``truth``: the head's / guardian's / cadre's canonical ID):

- overlaps across departments: an orphan family's guardian who heads a hardship household, an old
  party member who heads one (the same person in two or three rosters);
- guardians listed without an ID number (the women's federation list), so only name, town,
  village, phone and the relation (祖母 is a woman) tie them to the household;
- on those rows: homophone surnames (张/章, 王/汪 ...), a full-width space inside the name, a
  homophone or a wrong character in the given name, a changed or missing phone, the village
  written differently (东庄 / 东庄村 / 东庄村委会);
- duplicates within a file (the hardship roster, the orphan list, the cadre roster);
- namesakes that must NOT be merged: a different person with the same name in the same town
  (another village, another phone), with and without an ID;
- the same ID written with a different name (a conflict for review), and, rarely, the same person
  under a second valid ID (kept apart by the rules: a recall loss until a reviewer merges them);
- night 2: adjustment rows (新增 for households first seen as ID-less guardians: the ID-less
  household must merge into the new row and keep its night-1 key; 退出 for existing ones), new
  orphan families, cadre changes.

Unlike :func:`rosterlink.synthetic.sample.generate` (whose default output is fixed), this writes no files:
:func:`load` inserts a night's rows into a warehouse's ``source_record`` as loaded rows, and
:func:`evaluate` compares the link stage's keys with the truth (pairwise precision, recall, F1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from rosterlink.core import idnumber
from rosterlink.synthetic import population
from rosterlink.synthetic.population import Household, Person
from rosterlink.warehouse import dumps, insert_many, now, schema

DEFAULT_SEED = 20261125

RATES = {
    "guardian_heads_hardship": 0.25,  # orphan guardian who also heads a hardship household
    "old_member_heads_hardship": 0.25,  # old party member who heads a hardship household
    "guardian_id_missing": 0.35,  # orphan families listed without the guardian's ID
    "homophone_surname": 0.08,
    "fullwidth_space": 0.10,
    "given_homophone": 0.04,
    "given_typo": 0.02,
    "phone_changed": 0.20,
    "phone_missing": 0.05,
    "village_variant": 0.10,
    "duplicate_hardship": 0.01,
    "duplicate_orphan": 0.02,
    "duplicate_cadre": 0.01,
    "namesake": 0.05,  # per ID-less family: another person with the same name in the same town
    "id_name_conflict": 0.05,  # per old-member overlap: the ID written with a homophone name
    "second_id": 0.01,  # per old-member overlap: the same person under another valid ID
    "cadre_padded_name": 0.15,
    "night2_adds": 0.02,  # of hardship households: 新增 on night 2, half of them guardians seen ID-less
    "night2_exits": 0.01,
    "night2_orphans": 0.02,
    "night2_cadre_changes": 0.01,
}

HOMOPHONE_SURNAMES = {
    "张": "章",
    "章": "张",
    "王": "汪",
    "汪": "王",
    "李": "黎",
    "黎": "李",
    "刘": "柳",
    "柳": "刘",
    "杨": "阳",
    "吴": "伍",
    "伍": "吴",
    "徐": "许",
    "许": "徐",
    "朱": "诸",
    "何": "和",
    "林": "蔺",
    "高": "郜",
    "罗": "骆",
    "于": "余",
    "余": "于",
    "陈": "谌",
    "周": "州",
    "孙": "荪",
    "马": "玛",
    "胡": "扈",
    "郭": "虢",
    "赵": "兆",
    "黄": "皇",
    "郑": "正",
    "梁": "良",
    "谢": "解",
    "宋": "送",
    "唐": "汤",
    "汤": "唐",
    "韩": "寒",
    "冯": "逢",
    "邓": "登",
    "曹": "漕",
    "彭": "蓬",
    "田": "甜",
    "董": "懂",
    "袁": "原",
    "蒋": "奖",
    "蔡": "菜",
    "杜": "度",
    "程": "成",
    "成": "程",
    "魏": "卫",
    "卫": "魏",
    "苏": "酥",
    "吕": "侣",
    "丁": "钉",
    "任": "仁",
    "姚": "尧",
    "卢": "芦",
    "姜": "江",
    "江": "姜",
    "崔": "催",
    "谭": "谈",
    "范": "樊",
    "樊": "范",
    "金": "晋",
    "石": "时",
    "时": "石",
    "贾": "甲",
    "夏": "厦",
    "付": "傅",
    "傅": "付",
    "方": "芳",
    "白": "柏",
    "邹": "驺",
    "孟": "梦",
    "秦": "勤",
    "邱": "丘",
    "丘": "邱",
    "尹": "隐",
    "薛": "雪",
    "闫": "严",
    "严": "闫",
    "段": "断",
    "侯": "候",
    "史": "使",
    "陶": "桃",
    "褚": "楚",
    "颜": "严",
    "孔": "恐",
    "种": "仲",
    "满": "蛮",
}
# given-name characters and a homophone a clerk might type instead
HOMOPHONE_GIVEN = {
    "伟": "玮",
    "强": "墙",
    "磊": "垒",
    "军": "君",
    "勇": "永",
    "杰": "洁",
    "涛": "滔",
    "明": "铭",
    "超": "潮",
    "刚": "钢",
    "平": "萍",
    "辉": "晖",
    "鹏": "朋",
    "华": "桦",
    "飞": "菲",
    "波": "博",
    "斌": "彬",
    "宇": "雨",
    "浩": "昊",
    "凯": "恺",
    "健": "建",
    "俊": "峻",
    "旭": "序",
    "宁": "凝",
    "龙": "隆",
    "林": "琳",
    "东": "冬",
    "亮": "谅",
    "成": "诚",
    "建": "健",
    "国": "帼",
    "庆": "青",
    "文": "雯",
    "志": "智",
    "海": "凯",
    "山": "珊",
    "峰": "锋",
    "玉": "钰",
    "德": "得",
    "兴": "星",
    "福": "富",
    "贵": "桂",
    "昌": "常",
    "春": "纯",
    "永": "勇",
    "广": "光",
    "新": "欣",
    "学": "雪",
    "民": "敏",
    "金": "锦",
    "宝": "保",
    "生": "升",
    "长": "常",
    "友": "有",
    "振": "震",
    "家": "佳",
    "利": "力",
    "全": "泉",
    "芳": "方",
    "娜": "纳",
    "敏": "民",
    "静": "晶",
    "丽": "莉",
    "艳": "燕",
    "娟": "鹃",
    "霞": "侠",
    "燕": "艳",
    "玲": "铃",
    "桂": "贵",
    "英": "瑛",
    "秀": "绣",
    "兰": "岚",
    "梅": "玫",
    "红": "虹",
    "萍": "平",
    "琴": "勤",
    "云": "芸",
    "莲": "连",
    "凤": "风",
    "洁": "杰",
    "琳": "林",
    "婷": "亭",
    "雪": "学",
    "慧": "惠",
    "倩": "茜",
    "颖": "影",
    "佳": "家",
    "欣": "新",
    "悦": "月",
    "晶": "静",
    "月": "悦",
    "彩": "采",
    "巧": "乔",
    "菊": "局",
    "荣": "容",
    "翠": "萃",
    "美": "梅",
    "珍": "真",
    "荷": "和",
    "殿": "电",
    "炳": "饼",
    "树": "术",
    "洪": "宏",
    "兆": "召",
    "传": "川",
    "修": "秀",
    "清": "青",
    "义": "艺",
    "田": "甜",
    "增": "曾",
    "武": "五",
    "顺": "舜",
    "常": "长",
    "守": "首",
    "花": "华",
    "芝": "之",
    "淑": "书",
    "素": "苏",
    "爱": "艾",
}
_TYPO_CHARS = "大小中天方正同和平安元才于上下千万土工石日白立心永"

RELATIONS_BY_SEX = {"M": ("祖父", "外祖父", "伯父", "叔叔", "舅舅"), "F": ("祖母", "外祖母", "姑姑", "姨妈")}


@dataclass
class EvalRow:
    night: int
    file: str  # department/file name (one ledger file per department and roster per night)
    department: str
    roster: str
    entity_kind: str
    category: str | None
    person_name: str | None
    id_number: str | None
    town: str | None
    village: str | None
    phone: str | None
    event: str | None
    event_date: dt.date | None
    attrs: dict
    truth: str  # canonical ID of the person the row is about
    tags: list[str] = field(default_factory=list)  # what was done to the row


@dataclass
class EvalSet:
    seed: int
    scale: float
    rows: list[EvalRow]
    namesakes: list[tuple[str, str]]  # truth ids of distinct people given the same name and town

    def nights(self) -> list[int]:
        return sorted({r.night for r in self.rows})

    def tag_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(t for r in self.rows for t in r.tags).items()))


def _mobile(rng: random.Random) -> str:
    return rng.choice(population.MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _variant_village(village: str, rng: random.Random) -> str:
    for suffix in ("村", "社区"):
        if village.endswith(suffix):
            stem = village[: -len(suffix)]
            return rng.choice((stem, village + "委会" if suffix == "村" else stem + "居委会"))
    return village + "村"


def _perturb_name(name: str, rng: random.Random, rates: dict, tags: list[str]) -> str:
    surname, given = name[0], name[1:]
    if rng.random() < rates["homophone_surname"] and surname in HOMOPHONE_SURNAMES:
        surname = HOMOPHONE_SURNAMES[surname]
        tags.append("homophone_surname")
    if given and rng.random() < rates["given_homophone"]:
        i = rng.randrange(len(given))
        if given[i] in HOMOPHONE_GIVEN:
            given = given[:i] + HOMOPHONE_GIVEN[given[i]] + given[i + 1 :]
            tags.append("given_homophone")
    elif given and rng.random() < rates["given_typo"]:
        i = rng.randrange(len(given))
        given = given[:i] + rng.choice(_TYPO_CHARS) + given[i + 1 :]
        tags.append("given_typo")
    out = surname + given
    if rng.random() < rates["fullwidth_space"]:
        out = surname + "\u3000" + given
        tags.append("fullwidth_space")
    return out


def _messy_contact(
    village: str, phone: str | None, rng: random.Random, rates: dict, tags: list[str]
) -> tuple[str, str | None]:
    if phone is not None and rng.random() < rates["phone_changed"]:
        phone = _mobile(rng)
        tags.append("phone_changed")
    elif phone is not None and rng.random() < rates["phone_missing"]:
        phone = None
        tags.append("phone_missing")
    if rng.random() < rates["village_variant"]:
        village = _variant_village(village, rng)
        tags.append("village_variant")
    return village, phone


def _other_valid_id(id18: str, rng: random.Random, taken: set[str]) -> str:
    born = idnumber.birth_date(id18)
    assert born is not None  # a generated ID carries its birth date
    while True:
        new = idnumber.make(id18[:6], born, rng.randrange(500) * 2 + (1 if idnumber.sex(id18) == "M" else 0))
        if new not in taken:
            taken.add(new)
            return new


def generate(seed: int = DEFAULT_SEED, scale: float = 1.0, rates: dict | None = None) -> EvalSet:
    """The evaluation rows for ``scale`` times the reference district, over two nights."""
    rates = {**RATES, **(rates or {})}
    pop, reg = population.build_population(seed, scale)
    rng = random.Random(f"{seed}:linkage-eval")
    taken = set(reg.ids)
    hardship = list(pop.hardship)
    free = list(range(len(hardship)))
    rng.shuffle(free)

    def take_hardship() -> Household | None:
        return hardship[free.pop()] if free else None

    # --- overlaps: the same person in two departments --------------------------------------------
    guardian_heads: set[int] = set()  # index into pop.orphan
    for i, fam in enumerate(pop.orphan):
        if rng.random() < rates["guardian_heads_hardship"]:
            h = take_hardship()
            if h is None:
                break
            fam.head = h.head
            fam.town, fam.village, fam.phone = h.town, h.village, h.phone
            fam.relation = rng.choice(RELATIONS_BY_SEX[h.head.sex])
            guardian_heads.add(i)
    old_heads: list[tuple[Household, Household]] = []
    for m in pop.old_member:
        if rng.random() < rates["old_member_heads_hardship"]:
            h = take_hardship()
            if h is None:
                break
            h.head = m.head
            h.town, h.village = m.town, m.village
            h.phone = m.phone if m.phone and m.phone.startswith("1") else h.phone
            old_heads.append((m, h))

    id_less = {i for i in range(len(pop.orphan)) if rng.random() < rates["guardian_id_missing"]}

    # --- namesakes: a different person, same name, same town, another village --------------------
    namesakes: list[tuple[str, str]] = []
    by_town: dict[str, list[int]] = defaultdict(list)
    for j in free:
        by_town[hardship[j].town].append(j)
    used_namesake: set[int] = set()
    orphan_by_town: dict[str, list[int]] = defaultdict(list)
    for i, fam in enumerate(pop.orphan):
        orphan_by_town[fam.town].append(i)
    for i in sorted(id_less):
        if rng.random() >= rates["namesake"]:
            continue
        fam = pop.orphan[i]
        if rng.random() < 0.5:  # a hardship head (with an ID) in another village of the town
            pool = [
                j
                for j in by_town.get(fam.town, [])
                if j not in used_namesake
                and hardship[j].village != fam.village
                and hardship[j].head.id18 != fam.head.id18
            ]
            if not pool:
                continue
            j = rng.choice(pool)
            used_namesake.add(j)
            hardship[j].head.name = fam.head.name
            namesakes.append((fam.head.id18, hardship[j].head.id18))
        else:  # another ID-less guardian in the town
            pool = [
                k
                for k in orphan_by_town[fam.town]
                if k != i
                and k in id_less
                and k not in guardian_heads
                and pop.orphan[k].village != fam.village
                and pop.orphan[k].head.id18 != fam.head.id18
            ]
            if not pool:
                continue
            k = rng.choice(pool)
            pop.orphan[k].head.name = fam.head.name
            namesakes.append((fam.head.id18, pop.orphan[k].head.id18))

    # --- night 2 selections ------------------------------------------------------------------------
    n_adds = max(1, round(rates["night2_adds"] * len(hardship)))
    guardian_adds = [i for i in sorted(id_less) if i not in guardian_heads][: n_adds // 2]
    n_exit = max(1, round(rates["night2_exits"] * len(hardship)))
    exits = rng.sample(range(len(hardship)), min(n_exit, len(hardship)))
    n2_orphans = max(1, round(rates["night2_orphans"] * len(pop.orphan)))

    rows: list[EvalRow] = []
    fill1 = dt.date(2026, 11, 20)

    # --- night 1: hardship roster (IDs) ---------------------------------------------------------------
    f_hard = "civil_affairs/特困家庭花名册.xlsx"
    for h in hardship:
        for copy in range(2 if rng.random() < rates["duplicate_hardship"] else 1):
            tags = ["duplicate_in_file"] if copy else []
            phone = h.phone
            if copy and phone and rng.random() < 0.5:
                phone = _mobile(rng)
                tags.append("phone_changed")
            rows.append(
                EvalRow(
                    1,
                    f_hard,
                    "civil_affairs",
                    "hardship",
                    "household",
                    "hardship",
                    h.head.name,
                    h.head.id18,
                    h.town,
                    h.village,
                    phone,
                    None,
                    None,
                    {"household_size": h.size, "cause": h.cause},
                    h.head.id18,
                    tags,
                )
            )

    # --- night 1: orphan list (guardians; some without ID) ---------------------------------------------
    f_orph = "womens_federation/失亲儿童家庭名单.xls"

    def orphan_rows(fam: Household, night: int, file: str, no_id: bool, overlap: bool) -> None:
        tags: list[str] = ["no_id"] if no_id else []
        if overlap:
            tags.append("heads_hardship")
        name, village, phone = fam.head.name, fam.village, fam.phone
        if no_id:
            name = _perturb_name(name, rng, rates, tags)
            village, phone = _messy_contact(village, phone, rng, rates, tags)
        children: list[tuple[Person | None, str]] = [*fam.children] or [(None, "父母双亡")]
        if rng.random() < rates["duplicate_orphan"]:
            children.append(children[0])
            tags = [*tags, "duplicate_in_file"]
        for child, situation in children:
            attrs = {"relation": fam.relation, "situation": situation}
            if child is not None:
                attrs["child_name"] = child.name
                attrs["child_birth_ym"] = f"{child.id18[6:10]}-{child.id18[10:12]}"
            rows.append(
                EvalRow(
                    night,
                    file,
                    "womens_federation",
                    "orphan",
                    "household",
                    "orphan",
                    name,
                    None if no_id else fam.head.id18,
                    fam.town,
                    village,
                    phone,
                    None,
                    None,
                    attrs,
                    fam.head.id18,
                    list(tags),
                )
            )

    n2_start = len(pop.orphan) - n2_orphans
    for i, fam in enumerate(pop.orphan):
        night = 2 if i >= n2_start else 1
        file = f_orph if night == 1 else "womens_federation/失亲儿童家庭名单_新增.xls"
        orphan_rows(fam, night, file, i in id_less, i in guardian_heads)

    # --- night 1: old party members (IDs; some name conflicts, rarely a second valid ID) -----------------
    f_old = "organization/建国前入党老党员名册.csv"
    overlap_old = {id(m) for m, _ in old_heads}
    for m in pop.old_member:
        tags = ["heads_hardship"] if id(m) in overlap_old else []
        name, id18 = m.head.name, m.head.id18
        if (
            id(m) in overlap_old
            and rng.random() < rates["id_name_conflict"]
            and name[0] in HOMOPHONE_SURNAMES
        ):
            name = HOMOPHONE_SURNAMES[name[0]] + name[1:]
            tags.append("id_name_conflict")
        elif id(m) in overlap_old and rng.random() < rates["second_id"]:
            id18 = _other_valid_id(id18, rng, taken)
            tags.append("second_id")
        rows.append(
            EvalRow(
                1,
                f_old,
                "organization",
                "old_member",
                "household",
                "old_member",
                name,
                id18,
                m.town,
                m.village,
                m.phone,
                None,
                None,
                {"sex": m.head.sex, "joined_date": m.joined.isoformat() if m.joined else None},
                m.head.id18,
                tags,
            )
        )

    # --- night 1: cadre roster ------------------------------------------------------------------------
    f_cad = "organization/干部花名册.xlsx"
    for c in pop.cadres:
        for copy in range(2 if rng.random() < rates["duplicate_cadre"] else 1):
            tags = ["duplicate_in_file"] if copy else []
            name = c.person.name
            if name and len(name) == 2 and rng.random() < rates["cadre_padded_name"]:
                name = name[0] + "\u3000" + name[1]
                tags.append("fullwidth_space")
            rows.append(
                EvalRow(
                    1,
                    f_cad,
                    "organization",
                    "cadre",
                    "cadre",
                    None,
                    name,
                    c.person.id18,
                    c.linked_town,
                    None,
                    c.phone,
                    None,
                    None,
                    {
                        "sex": c.person.sex,
                        "unit": c.unit,
                        "post": c.post,
                        "rank": c.rank,
                        "rank_title": c.rank_label,
                        "linked_town": c.linked_town,
                    },
                    c.person.id18,
                    tags,
                )
            )

    # --- night 2: adjustments, new families, cadre changes -----------------------------------------------
    fill2 = fill1 + dt.timedelta(days=1)
    f_adj = "civil_affairs/特困家庭动态调整名单.xlsx"
    for i in guardian_adds:  # an ID-less guardian's family becomes a hardship household, with the ID now
        fam = pop.orphan[i]
        rows.append(
            EvalRow(
                2,
                f_adj,
                "civil_affairs",
                "hardship_adjustment",
                "household",
                "hardship",
                fam.head.name,
                fam.head.id18,
                fam.town,
                fam.village,
                fam.phone,
                "add",
                fill2,
                {"adjustment_reason": "经排查新认定"},
                fam.head.id18,
                ["guardian_now_hardship"],
            )
        )
    villages = pop.villages
    for _ in range(n_adds - len(guardian_adds)):
        town = rng.choice(pop.towns)
        person = reg.person(rng, born=(1940, 1990))
        taken.add(person.id18)
        rows.append(
            EvalRow(
                2,
                f_adj,
                "civil_affairs",
                "hardship_adjustment",
                "household",
                "hardship",
                person.name,
                person.id18,
                town,
                rng.choice(villages[town]),
                _mobile(rng),
                "add",
                fill2,
                {"adjustment_reason": "突发重病"},
                person.id18,
                ["new_household"],
            )
        )
    for j in exits:
        h = hardship[j]
        rows.append(
            EvalRow(
                2,
                f_adj,
                "civil_affairs",
                "hardship_adjustment",
                "household",
                "hardship",
                h.head.name,
                h.head.id18,
                h.town,
                h.village,
                h.phone,
                "exit",
                fill2,
                {"adjustment_reason": "家庭人均收入稳定超过标准"},
                h.head.id18,
                ["exit"],
            )
        )
    f_chg = "organization/干部变动名单.xlsx"
    n_chg = max(1, round(rates["night2_cadre_changes"] * len(pop.cadres)))
    for c in rng.sample(pop.cadres, min(n_chg, len(pop.cadres))):
        rows.append(
            EvalRow(
                2,
                f_chg,
                "organization",
                "cadre_change",
                "cadre",
                None,
                c.person.name,
                c.person.id18,
                None,
                None,
                c.phone,
                "leave",
                fill2,
                {"change_type": "leave"},
                c.person.id18,
                ["leave"],
            )
        )
    for _ in range(n_chg):
        person = reg.person(rng, born=(1975, 2000))
        taken.add(person.id18)
        town = rng.choice(pop.towns)
        rows.append(
            EvalRow(
                2,
                f_chg,
                "organization",
                "cadre_change",
                "cadre",
                None,
                person.name,
                person.id18,
                town,
                None,
                _mobile(rng),
                "join",
                fill2,
                {
                    "sex": person.sex,
                    "unit": "区财政局",
                    "rank": "ordinary",
                    "rank_title": "科员",
                    "linked_town": town,
                },
                person.id18,
                ["join"],
            )
        )
    return EvalSet(seed=seed, scale=scale, rows=rows, namesakes=namesakes)


# --- into a warehouse ---------------------------------------------------------------------------------
def load(eng: sa.Engine, evalset: EvalSet, night: int) -> dict[tuple[int, int], int]:
    """Insert one night's rows as loaded rows (one ledger file per file name); return
    ``(file_id, row_number) -> index into evalset.rows``."""
    index: dict[tuple[int, int], int] = {}
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(evalset.rows):
        if r.night == night:
            by_file[r.file].append(i)
    with eng.begin() as conn:
        for file, members in by_file.items():
            first = evalset.rows[members[0]]
            inserted = conn.execute(
                schema.intake_file.insert().values(
                    department=first.department,
                    file_name=f"eval/night{night}/{file}",
                    sha256=hashlib.sha256(
                        f"{evalset.seed}:{evalset.scale}:{night}:{file}".encode()
                    ).hexdigest(),
                    size_bytes=1,
                    status="loaded",
                    rows_read=len(members),
                    rows_loaded=len(members),
                    received_at=now(),
                    processed_at=now(),
                )
            ).inserted_primary_key
            assert inserted is not None
            file_id = inserted[0]
            stamp = now()

            def records(file_id: int = file_id, members: list[int] = members, stamp: dt.datetime = stamp):
                for n, i in enumerate(members):
                    r = evalset.rows[i]
                    index[(file_id, n + 2)] = i
                    yield {
                        "file_id": file_id,
                        "sheet": "Sheet1",
                        "row_number": n + 2,
                        "department": r.department,
                        "roster": r.roster,
                        "entity_kind": r.entity_kind,
                        "category": r.category,
                        "person_name": r.person_name,
                        "id_number": r.id_number,
                        "case_number": None,
                        "town": r.town,
                        "village": r.village,
                        "phone": r.phone,
                        "event": r.event,
                        "event_date": r.event_date,
                        "attrs": dumps({k: v for k, v in r.attrs.items() if v is not None}),
                        "loaded_at": stamp,
                    }

            insert_many(conn, schema.source_record, records())
    return index


def pairwise(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering (one label per row) against the truth."""

    def pairs(counts: Counter[Hashable]) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    pred_pairs = pairs(Counter(predicted))
    true_pairs = pairs(Counter(truth))
    tp = pairs(Counter(zip(predicted, truth, strict=True)))
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "rows": len(truth),
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
        "true_positive_pairs": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "entities_true": len(set(truth)),
        "entities_predicted": len(set(predicted)),
    }


def evaluate(eng: sa.Engine, evalset: EvalSet, index: dict[tuple[int, int], int]) -> dict:
    """Compare the warehouse's keys with the truth, per entity kind. A row the link stage rejected
    (it should not happen here) counts as a cluster of its own."""
    s = schema.source_row  # each linked row's key
    with eng.connect() as conn:
        keys = {(f, n): k for f, n, k in conn.execute(sa.select(s.c.file_id, s.c.row_number, s.c.entity_key))}
    out = {}
    for kind in ("household", "cadre"):
        predicted, truth = [], []
        for loc, i in index.items():
            row = evalset.rows[i]
            if row.entity_kind != kind:
                continue
            predicted.append(keys.get(loc) or f"rejected:{loc}")
            truth.append(row.truth)
        out[kind] = pairwise(predicted, truth)
    # namesakes: distinct people with one name in one town that ended under one key
    truth_key: dict[str, set[str]] = defaultdict(set)
    for loc, i in index.items():
        if keys.get(loc):
            truth_key[evalset.rows[i].truth].add(keys[loc])
    out["namesakes"] = {
        "pairs": len(evalset.namesakes),
        "merged": sum(1 for a, b in evalset.namesakes if truth_key[a] & truth_key[b]),
    }
    return out


def to_json(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False, indent=1)
