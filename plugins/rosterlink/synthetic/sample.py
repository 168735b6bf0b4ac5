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

CLI: ``python -m rosterlink.synthetic.sample --out DIR [--seed N] [--scale X] [--night N] [--truth FILE]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import random
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rosterlink.core import idnumber, spec

DEFAULT_SEED = 20261125
NIGHT1_FILL_DATE = dt.date(2026, 11, 20)
FIXED_TIMESTAMP = dt.datetime(2026, 11, 20, 9, 0, 0)
_ZIP_TIME = (2026, 11, 20, 9, 0, 0)
_EXCEL_EPOCH = dt.date(1899, 12, 30)

# What each bad-row kind is, and the reason codes (config/messages.json) a pipeline may give it.
BAD_KINDS: dict[str, tuple[str, ...]] = {
    "numeric_id": ("id_numeric_cell",),  # 18 digits in a number cell: last digits lost
    "numeric_id_text": ("id_numeric_cell", "id_bad_chars"),  # "3.70406E+17" from a CSV export
    "bad_checksum": ("id_bad_checksum",),
    "bad_length": ("id_bad_length",),
    "bad_birthdate": ("id_bad_birthdate",),
    "town_outside": ("town_unknown",),
    "empty_name": ("required_missing", "name_invalid"),
    "formula_name": ("name_invalid",),
    "missing_required": ("required_missing",),
    "bad_date": ("date_invalid",),
}

# Defects on rows that still load (a true entity; the value is dropped or kept, and flagged): an
# optional field that cannot be normalised, an unusual ID region code.
WARNING_KINDS: dict[str, tuple[str, ...]] = {
    "phone_invalid": ("phone_invalid",),
    "region_unknown": ("id_region_unknown",),
    "town_outside": ("town_unknown",),  # an optional town field (cadre 联系镇街)
    "bad_date": ("date_invalid",),  # an optional date (case 登记时间)
}

FORMULA_NAME = '=HYPERLINK("http://x","点我")'
UNUSUAL_REGION = "320321"  # 江苏丰县: a valid number, but not a region code the district knows

# Towns of neighbouring districts, with the region code their residents carry.
OUTSIDE_TOWNS = (
    ("薛城区常庄镇", "370403"),
    ("峄城区坛山街道", "370404"),
    ("市中区孟庄镇", "370402"),
    ("台儿庄区马兰屯镇", "370405"),
    ("滕州市羊庄镇", "370481"),
    ("薛城区陶庄镇", "370403"),
)

# ---------------------------------------------------------------------------------------------
# vocabulary (all synthetic)

_SURNAMES_COMMON = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗"
_SURNAMES_OTHER = "郑梁谢宋唐许韩冯邓曹彭田董袁于蒋蔡杜程魏苏吕丁任姚卢姜崔谭范金石贾夏付方白邹孟秦邱尹薛闫段侯史陶褚颜孔种满"
_GIVEN = {
    (
        "adult",
        "M",
    ): "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊旭宁龙林东亮成建国庆文志海山峰玉德兴福贵昌春永广新学民金宝生长友振家利全",
    ("adult", "F"): "芳娜敏静丽艳娟霞燕玲桂英秀兰梅红萍琴云莲凤洁琳婷雪慧倩颖佳欣悦晶月彩春巧菊荣翠美玉珍荷",
    ("child", "M"): "子梓浩宇轩一诺俊博泽睿思嘉铭辰逸航皓宸煜峻哲瑞晨阳",
    ("child", "F"): "梓涵欣怡雨思佳梦可紫馨若乐萱彤瑶诗语婉雅琪琳悦晨妍",
    ("old", "M"): "德福贵荣华明山成全文武顺常守殿炳树振洪兆庆传广修清义田增",
    ("old", "F"): "凤兰英秀玉桂珍花菊芝荣淑素翠爱",
}
_VILLAGE_FIRST = "东西南北前后上下大小中新老王李张刘孙马褚颜高石柳杏枣桃杨槐松梨龙凤牛黄白青"
_VILLAGE_SECOND = "庄岭峪沟泉埠洼湖坡河山屯楼集营店庙台寨涧口林园"
_COMMUNITY_FIRST = (
    "府前",
    "东方",
    "城东",
    "城南",
    "兴华",
    "凤凰",
    "翼云",
    "汉诺",
    "新城",
    "文化",
    "明珠",
    "驿庄",
)

_CAUSES = (
    ("因病", 30),
    ("因残", 22),
    ("缺劳动力", 15),
    ("因学", 8),
    ("因灾", 4),
    ("缺技术", 8),
    ("自身发展动力不足", 5),
    ("因病因残", 8),
)
_SITUATIONS = ("父母双亡", "父亡母改嫁", "母亡父失联", "父母一方死亡另一方服刑", "父亡母重残", "事实无人抚养")
# relation -> (guardian sex, birth range, child carries the guardian's surname)
_RELATIONS = {
    "祖父": ("M", (1944, 1970), True),
    "祖母": ("F", (1946, 1972), False),
    "外祖父": ("M", (1944, 1970), False),
    "外祖母": ("F", (1946, 1972), False),
    "伯父": ("M", (1970, 1990), True),
    "叔叔": ("M", (1975, 1995), True),
    "姑姑": ("F", (1975, 1995), False),
    "舅舅": ("M", (1975, 1995), False),
    "姨妈": ("F", (1975, 1995), False),
    "哥哥": ("M", (1996, 2005), True),
    "姐姐": ("F", (1996, 2005), True),
}
_RELATION_WEIGHTS = (
    ("祖父", 22),
    ("祖母", 26),
    ("外祖父", 8),
    ("外祖母", 10),
    ("伯父", 8),
    ("叔叔", 8),
    ("姑姑", 5),
    ("舅舅", 5),
    ("姨妈", 4),
    ("哥哥", 2),
    ("姐姐", 2),
)

_COUNTY_POSTS = (
    ("区委", "区委书记", "正县级"),
    ("区政府", "区委副书记、区长", "正县级"),
    ("区人大常委会", "区人大常委会主任", "正县级"),
    ("区政协", "区政协主席", "正县级"),
    ("区委", "区委副书记", "副县级"),
    ("区委", "区委常委、组织部部长", "副县级"),
    ("区委", "区委常委、宣传部部长", "副县级"),
    ("区纪委监委", "区委常委、区纪委书记、区监委主任", "副县级"),
    ("区委", "区委常委、政法委书记", "副县级"),
    ("区政府", "区委常委、常务副区长", "副县级"),
    ("区委", "区委常委、统战部部长", "副县级"),
    ("区委", "区委常委、办公室主任", "副县级"),
    ("区人武部", "区委常委、人武部部长", "副县级"),
)
_COUNTY_REPEAT = (
    ("区政府", "副区长", "副县级"),
    ("区人大常委会", "区人大常委会副主任", "副县级"),
    ("区政协", "区政协副主席", "副县级"),
    ("区委", "二级调研员", "副县级"),
    ("区政府", "一级调研员", "正县级"),
)
_LEADERSHIP_UNITS = ("区委", "区人大常委会", "区政府", "区政协", "区纪委监委", "区人武部")
_DEPARTMENTS = (
    "区委办公室",
    "区委组织部",
    "区委宣传部",
    "区委统战部",
    "区委政法委",
    "区纪委监委机关",
    "区政府办公室",
    "区发展和改革局",
    "区教育和体育局",
    "区科学技术局",
    "区工业和信息化局",
    "区公安分局",
    "区民政局",
    "区司法局",
    "区财政局",
    "区人力资源和社会保障局",
    "区自然资源局",
    "区住房和城乡建设局",
    "区交通运输局",
    "区水务局",
    "区农业农村局",
    "区商务局",
    "区文化和旅游局",
    "区卫生健康局",
    "区退役军人事务局",
    "区应急管理局",
    "区审计局",
    "区市场监督管理局",
    "区统计局",
    "区医疗保障局",
    "区信访局",
    "区行政审批服务局",
    "区妇联",
    "团区委",
    "区总工会",
    "区残联",
)
_RANK_ORDER = ("正县级", "副县级", "正科级", "副科级", "科员", "办事员", "一般干部")
_RANK_CODE = {
    "正县级": "county",
    "副县级": "county",
    "正科级": "section",
    "副科级": "section",
    "科员": "ordinary",
    "办事员": "ordinary",
    "一般干部": "ordinary",
}
_ORDINARY = (("科员", "科员", 55), ("办事员", "办事员", 20), ("工作人员", "一般干部", 25))

_TOPICS = {
    "征地拆迁": (
        ("反映村集体土地被征收后补偿款未足额发放，要求按标准补偿", "区自然资源局"),
        ("对房屋拆迁安置面积认定有异议，要求重新测量", "区住房和城乡建设局"),
    ),
    "劳动社保": (
        ("反映在建筑工地务工被拖欠工资，要求帮助追讨", "区人力资源和社会保障局"),
        ("要求补缴养老保险并办理退休手续", "区人力资源和社会保障局"),
    ),
    "涉法涉诉": (("对民事判决不服，认为认定事实不清", "区法院"), ("反映判决生效后长期未执行到位", "区法院")),
    "农村农业": (
        ("反映土地承包经营权被他人侵占，要求依法确权", "区农业农村局"),
        ("反映村务不公开，要求审计村集体账目", "{town}"),
    ),
    "城乡建设": (
        ("反映小区房屋漏水、墙体开裂，开发商拒不维修", "区住房和城乡建设局"),
        ("反映道路施工影响出行，要求尽快恢复", "区交通运输局"),
    ),
    "民政事务": (("要求将家庭纳入低保救助范围", "区民政局"), ("反映残疾人补贴发放不及时", "区残联")),
    "环境保护": (
        ("反映附近石料厂粉尘、噪声扰民，要求整治", "市生态环境局山亭分局"),
        ("反映养殖场污水直排河道，要求关停", "{town}"),
    ),
    "退役军人事务": (
        ("要求落实退役士兵安置待遇", "区退役军人事务局"),
        ("要求认定参战人员身份并落实优抚待遇", "区退役军人事务局"),
    ),
    "医疗卫生": (
        ("对医疗纠纷处理结果不满，要求赔偿", "区卫生健康局"),
        ("反映村卫生室收费不规范", "区卫生健康局"),
    ),
}
_EXIT_REASONS = {
    "退出": ("户主死亡，家庭无其他成员", "迁出本区", "享受其他救助政策", "经复核不符合认定条件"),
    "脱困": ("家庭人均收入稳定超过标准", "子女就业后收入增加", "经营增收，已稳定脱困"),
}
_ADD_REASONS = ("突发重病，家庭支出骤增", "因意外致残，丧失劳动能力", "经排查新认定", "家庭遭受自然灾害")
_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "199",
)
_FW_DIGITS = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")


def _weighted(rng: random.Random, pairs) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[-1] for p in pairs])[0]


# ---------------------------------------------------------------------------------------------
# truth


@dataclass
class BadRow:
    sheet: str  # sheet name (the file's stem for CSV)
    row: int  # Excel row number as the clerk sees it (CSV: line number, header = line 1)
    field: str  # canonical field name
    header: str  # the header as written in the file
    kind: str  # one of BAD_KINDS
    codes: list[str]  # reason codes a correct pipeline may give the row (any one of them)


@dataclass
class SheetInfo:
    name: str
    header_row: int  # Excel row (CSV line) of the header; rows above it are title/filler rows
    rows: int  # data rows written in this sheet (good + bad, blank rows and footers excluded)
    blank_rows: list[int] = field(default_factory=list)  # empty rows below the header
    footer_rows: list[int] = field(default_factory=list)  # 合计/制表人 rows below the data


@dataclass
class FileTruth:
    path: str  # relative to out_dir, POSIX separators
    department: str
    roster: str  # roster kind (config/rosters.json)
    format: str  # xlsx | xls | csv
    encoding: str | None  # csv only: "gbk" or "utf-8-sig"
    sheets: list[SheetInfo]
    rows: int  # data rows written (title, header, blank and footer rows excluded)
    good_rows: int  # rows that must pass validation (rows - len(bad_rows))
    duplicate_rows: int  # good rows repeating an entity already listed earlier in the same file
    entities: int  # distinct entities among the good rows (households, families, cadres, cases, changes)
    bad_rows: list[BadRow]
    duplicates: list[dict] = field(default_factory=list)  # {sheet, row, first_row}: same entity twice
    warning_rows: list[BadRow] = field(default_factory=list)  # good rows with a flagged value (WARNING_KINDS)


@dataclass
class Truth:
    """What a correct pipeline must make of the files (JSON: :meth:`to_json`).

    ``counts`` and ``active`` are the state *after* the night (cumulative); ``changes`` is what
    this night's files change (empty lists on night 1). Household IDs are the head's (hardship,
    old member) or the guardian's (orphan) canonical 18-digit ID; 15-digit IDs appear upgraded.
    """

    seed: int
    scale: float
    night: int
    fill_date: str
    district: str
    files: dict[str, FileTruth]
    counts: dict
    active: dict
    changes: dict
    namesakes: list[list[str]] = field(default_factory=list)  # distinct people sharing a name

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> Truth:
        files = {
            path: FileTruth(
                **{
                    **f,
                    "sheets": [SheetInfo(**s) for s in f["sheets"]],
                    "bad_rows": [BadRow(**b) for b in f["bad_rows"]],
                    "warning_rows": [BadRow(**b) for b in f.get("warning_rows", [])],
                }
            )
            for path, f in data["files"].items()
        }
        return cls(**{**data, "files": files})

    @classmethod
    def load(cls, path: Path) -> Truth:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------
# population


@dataclass
class _Person:
    name: str | None
    id18: str
    sex: str  # "M" | "F"


@dataclass
class _Household:
    category: str  # hardship | orphan | old_member
    head: _Person  # hardship head / orphan guardian / old member
    town: str
    village: str
    phone: str | None
    size: int = 1
    cause: str = ""
    income: float = 0.0
    relation: str = ""
    children: list[tuple[_Person, str]] = field(default_factory=list)  # (child, situation)
    id15: str | None = None
    joined: dt.date | None = None


@dataclass
class _Cadre:
    person: _Person
    unit: str
    post: str
    rank_label: str
    linked_town: str
    phone: str | None

    @property
    def rank(self) -> str:
        return _RANK_CODE[self.rank_label]


@dataclass
class _Case:
    number: str
    petitioner: _Person
    town: str
    topic: str
    summary: str
    unit: str
    registered: dt.date
    status: str


@dataclass
class _Bad:
    kind: str
    field: str
    entity: object  # _Household | _Cadre | _Case, a fresh one (or, night >= 2, an existing one)
    extra: dict = field(default_factory=dict)


class _Registry:
    """Hands out unique IDs and (mostly) unique names across every person ever generated."""

    def __init__(self, district: spec.District) -> None:
        self.home = district.region_code
        others = tuple(c for c in district.known_region_codes if c != district.region_code)
        self.others = others or (self.home,)
        self.ids: set[str] = set()
        self.names: set[str] = set()

    def person(
        self,
        rng: random.Random,
        *,
        born: tuple[int, int],
        style: str = "adult",
        sex: str | None = None,
        surname: str | None = None,
        region: str | None = None,
        home_share: float = 0.82,
        digits_only: bool = False,
    ) -> _Person:
        sex = sex or rng.choice("MF")
        while True:
            lo, hi = dt.date(born[0], 1, 1), dt.date(born[1], 12, 31)
            day = lo + dt.timedelta(days=rng.randrange((hi - lo).days + 1))
            code = region or (self.home if rng.random() < home_share else rng.choice(self.others))
            seq = rng.randrange(500) * 2 + (1 if sex == "M" else 0)
            id18 = idnumber.make(code, day, seq)
            if id18 in self.ids or (digits_only and not id18.isdigit()):
                continue
            self.ids.add(id18)
            break
        return _Person(self.name(rng, style, sex, surname), id18, sex)

    def name(self, rng: random.Random, style: str, sex: str, surname: str | None = None) -> str:
        chars = _GIVEN[(style, sex)]
        for attempt in range(200):
            pool = _SURNAMES_COMMON if rng.random() < 0.7 else _SURNAMES_OTHER
            family = surname or rng.choice(pool)
            if rng.random() < 0.28 and attempt < 100:
                given = rng.choice(chars)
            else:
                given = "".join(rng.sample(chars, 2))
            name = family + given
            if name not in self.names:
                self.names.add(name)
                return name
        return name  # pools exhausted: a namesake is realistic anyway


def _mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _phone(rng: random.Random, none_share: float = 0.04) -> str | None:
    return None if rng.random() < none_share else _mobile(rng)


def _scaled(value: int, scale: float) -> int:
    return max(1, round(value * scale))


@dataclass
class _Population:
    towns: tuple[str, ...]
    villages: dict[str, list[str]]
    hardship: list[_Household]
    orphan: list[_Household]
    old_member: list[_Household]
    cadres: list[_Cadre]
    cases: list[_Case]
    bad: dict[str, list[_Bad]]  # roster kind -> night-1 bad rows
    namesakes: list[list[str]]
    picker: _PostPicker = field(default_factory=lambda: _PostPicker())
    # roster kind -> entity key (head/guardian/cadre ID, case number) -> (kind, field, value to write)
    warn: dict[str, dict[str, tuple[str, str, object]]] = field(default_factory=dict)
    closed_cases: list[_Case] = field(default_factory=list)

    def warned(self) -> set[str]:
        return {key for per_roster in self.warn.values() for key in per_roster}


def _villages(rng: random.Random, towns: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t, town in enumerate(towns):
        names: list[str] = []
        communities = 4 if t == 0 else 1
        firsts = list(_COMMUNITY_FIRST)
        rng.shuffle(firsts)
        for i in range(communities):
            names.append(firsts[i] + "社区")
        while len(names) < rng.randint(10, 15):
            v = rng.choice(_VILLAGE_FIRST) + rng.choice(_VILLAGE_SECOND) + "村"
            if v not in names:
                names.append(v)
        out[town] = names
    return out


def _town_weights(rng: random.Random, towns: tuple[str, ...]) -> list[float]:
    return [0.6 + 0.8 * rng.random() for _ in towns]


def _hardship_household(rng, reg, towns, weights, villages, *, town=None, region=None) -> _Household:
    head = reg.person(rng, born=(1938, 1996), sex="M" if rng.random() < 0.7 else "F", region=region)
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    return _Household(
        category="hardship",
        head=head,
        town=town,
        village=village,
        phone=_phone(rng),
        size=rng.choices([1, 2, 3, 4, 5, 6], weights=[22, 30, 22, 15, 8, 3])[0],
        cause=_weighted(rng, _CAUSES),
        income=rng.randrange(180, 720) * 10 + (rng.choice((0.5, 0.25, 0.8)) if rng.random() < 0.08 else 0.0),
    )


def _orphan_family(rng, reg, towns, weights, villages, *, children=1, town=None, region=None) -> _Household:
    relation = _weighted(rng, _RELATION_WEIGHTS)
    sex, born, same_surname = _RELATIONS[relation]
    guardian = reg.person(rng, born=born, sex=sex, region=region)
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    kids = []
    for _ in range(children):
        surname = guardian.name[0] if same_surname and guardian.name else None
        child = reg.person(rng, born=(2009, 2022), style="child", surname=surname, home_share=0.95)
        kids.append((child, rng.choice(_SITUATIONS)))
    return _Household(
        category="orphan",
        head=guardian,
        town=town,
        village=village,
        phone=_phone(rng, 0.02),
        relation=relation,
        children=kids,
    )


def _old_member(rng, reg, towns, weights, villages, *, legacy: bool, town=None, region=None) -> _Household:
    sex = "M" if rng.random() < 0.85 else "F"
    person = reg.person(rng, born=(1914, 1931), style="old", sex=sex, home_share=0.95, region=region)
    born = idnumber.birth_date(person.id18)
    earliest = max(dt.date(1937, 1, 1), dt.date(born.year + 16, born.month, 1))
    latest = dt.date(1949, 9, 30)
    joined = earliest + dt.timedelta(days=rng.randrange((latest - earliest).days + 1))
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    r = rng.random()
    landline = f"0632-{rng.choice('3678')}{rng.randrange(10**6):06d}"
    phone = None if r < 0.1 else (landline if r < 0.3 else _mobile(rng))
    id15 = person.id18[:6] + person.id18[8:17] if legacy else None
    return _Household(
        category="old_member", head=person, town=town, village=village, phone=phone, id15=id15, joined=joined
    )


def _town_gov(town: str) -> str:
    return town + ("办事处" if town.endswith("街道") else "人民政府")


def _head_title(unit: str) -> str:
    special = {
        "区妇联": "主席",
        "区总工会": "常务副主席",
        "区残联": "理事长",
        "团区委": "书记",
        "区委政法委": "常务副书记",
    }
    if unit in special:
        return special[unit]
    if unit.endswith("办公室") or unit.endswith("委") or unit.endswith("机关"):
        return "主任"
    if unit.endswith("部"):
        return "常务副部长"
    return "局长"


class _PostPicker:
    """Posts that exist once per unit (局长, 党委书记) are handed out once; the rest repeat."""

    def __init__(self) -> None:
        self.taken: set[tuple[str, str]] = set()

    def pick(
        self, rng: random.Random, unit: str, rank_label: str, is_town: bool, town_is_street: bool
    ) -> str:
        if rank_label in ("正科级", "副科级"):
            if is_town:
                once = (
                    [
                        "党委书记",
                        "主任" if town_is_street else "镇长",
                        "人大工委主任" if town_is_street else "人大主席",
                    ]
                    if rank_label == "正科级"
                    else ["党委副书记", "武装部部长", "纪委书记"]
                )
                many = (
                    ["一级主任科员", "二级主任科员"]
                    if rank_label == "正科级"
                    else [
                        "副主任" if town_is_street else "副镇长",
                        "党委委员",
                        "三级主任科员",
                        "四级主任科员",
                    ]
                )
            else:
                head = _head_title(unit)
                once = [head, "党组书记"] if rank_label == "正科级" else []
                many = (
                    ["一级主任科员", "二级主任科员", "四级调研员"]
                    if rank_label == "正科级"
                    else ["副" + head.removeprefix("常务副"), "党组成员", "三级主任科员", "四级主任科员"]
                )
            for post in once:
                if (unit, post) not in self.taken:
                    self.taken.add((unit, post))
                    return post
            return rng.choice(many)
        return {"科员": "科员", "办事员": "办事员", "一般干部": "工作人员"}[rank_label]


def _cadre_units(towns: tuple[str, ...]) -> tuple[list[str], list[float]]:
    units = list(_DEPARTMENTS) + [_town_gov(t) for t in towns]
    weights = [1.0] * len(_DEPARTMENTS) + [2.5] * len(towns)
    return units, weights


def _unit_order(towns: tuple[str, ...]) -> dict[str, int]:
    order = list(_LEADERSHIP_UNITS) + list(_DEPARTMENTS) + [_town_gov(t) for t in towns]
    return {u: i for i, u in enumerate(order)}


def _new_cadre(
    rng, reg, towns, picker, rank_label: str, *, linked_town=None, born=None, digits_only=False
) -> _Cadre:
    units, weights = _cadre_units(towns)
    unit = rng.choices(units, weights=weights)[0]
    is_town = not unit.startswith(("区", "团区"))
    town_of_unit = next((t for t in towns if _town_gov(t) == unit), None)
    post = picker.pick(rng, unit, rank_label, is_town, bool(town_of_unit and town_of_unit.endswith("街道")))
    born = born or ((1968, 1995) if rank_label in ("正科级", "副科级") else (1975, 2002))
    person = reg.person(rng, born=born, sex="M" if rng.random() < 0.68 else "F", digits_only=digits_only)
    linked = linked_town or town_of_unit or rng.choice(towns)
    return _Cadre(person, unit, post, rank_label, linked, _phone(rng, 0.0))


def _case_number(year: int, seq: int) -> str:
    return f"XF{year}-{seq:04d}"


def _new_case(rng, reg, towns, *, registered: dt.date, town=None, region=None) -> _Case:
    town = town or rng.choice(towns)
    topic = rng.choice(list(_TOPICS))
    summary, unit = rng.choice(_TOPICS[topic])
    person = reg.person(rng, born=(1950, 1995), sex="M" if rng.random() < 0.6 else "F", region=region)
    unit = unit.format(town=_town_gov(town) if town in towns else town)
    return _Case(
        "", person, town, topic, summary, unit, registered, "在办" if rng.random() < 0.85 else "办理中"
    )


def _numeric_id_person(rng, reg, **kw) -> _Person:
    """A person whose ID, once stored as a double, loses digits and fails the checksum."""
    while True:
        p = reg.person(rng, digits_only=True, **kw)
        rounded = str(int(float(int(p.id18))))
        if rounded != p.id18 and not idnumber.is_valid_checksum(rounded):
            return p


def _build_population(seed: int, scale: float) -> tuple[_Population, _Registry]:
    district = spec.district()
    towns = district.towns
    ref = district.reference_counts
    rng = random.Random(f"{seed}:population")
    reg = _Registry(district)
    villages = _villages(rng, towns)
    weights = _town_weights(rng, towns)

    n_hard = _scaled(ref.get("hardship", 936), scale)
    n_orphan = _scaled(ref.get("orphan", 468), scale)
    n_old = _scaled(ref.get("old_member", 53), scale)
    n_case = _scaled(ref.get("case", 49), scale)
    n_county = _scaled(ref.get("cadre_county", 38), scale)
    n_section = _scaled(ref.get("cadre_section", 1088), scale)
    n_ordinary = _scaled(ref.get("cadre_ordinary", 331), scale)

    hardship = [_hardship_household(rng, reg, towns, weights, villages) for _ in range(n_hard)]
    namesakes: list[list[str]] = []
    if len(hardship) >= 2:  # one deliberate namesake: two different heads, same name, other towns
        a = hardship[0]
        b = next((h for h in hardship[1:] if h.town != a.town and h.head.sex == a.head.sex), None)
        if b is not None:
            b.head.name = a.head.name
            namesakes.append(sorted([a.head.id18, b.head.id18]))

    n_two = min(n_orphan, max(1, round(0.05 * n_orphan)))
    two_child = set(rng.sample(range(n_orphan), n_two))
    orphan = [
        _orphan_family(rng, reg, towns, weights, villages, children=2 if i in two_child else 1)
        for i in range(n_orphan)
    ]
    old = [_old_member(rng, reg, towns, weights, villages, legacy=rng.random() < 1 / 3) for _ in range(n_old)]
    if n_old >= 3 and not any(m.id15 for m in old):
        old[0].id15 = old[0].head.id18[:6] + old[0].head.id18[8:17]

    # cadres: linked towns follow the households' towns so pairing can stay within a town
    picker = _PostPicker()
    cadres: list[_Cadre] = []
    for i in range(n_county):
        unit, post, rank_label = (
            _COUNTY_POSTS[i]
            if i < len(_COUNTY_POSTS)
            else _COUNTY_REPEAT[(i - len(_COUNTY_POSTS)) % len(_COUNTY_REPEAT)]
        )
        person = reg.person(rng, born=(1965, 1982), sex="M" if rng.random() < 0.8 else "F")
        cadres.append(_Cadre(person, unit, post, rank_label, "", _phone(rng, 0.0)))
    for _ in range(n_section):
        rank_label = "正科级" if rng.random() < 0.4 else "副科级"
        cadres.append(_new_cadre(rng, reg, towns, picker, rank_label, linked_town="-"))
    for _ in range(n_ordinary):
        cadres.append(
            _new_cadre(
                rng, reg, towns, picker, _weighted(rng, [(r, w) for _, r, w in _ORDINARY]), linked_town="-"
            )
        )
    pool: dict[str, int] = dict.fromkeys(towns, 0)
    for h in hardship + orphan + old:
        pool[h.town] += 1
    for c in cadres:  # town-government cadres link their own town first
        own = next((t for t in towns if _town_gov(t) == c.unit), None)
        if own and pool[own] > 0:
            c.linked_town = own
            pool[own] -= 1
        else:
            c.linked_town = ""
    rest = [t for t in towns for _ in range(pool[t])]
    rng.shuffle(rest)
    for c in cadres:
        if not c.linked_town:
            c.linked_town = rest.pop() if rest else rng.choice(towns)

    # cases: registered over the last two years, numbered per year in registration order
    cases = []
    for _ in range(n_case):
        span = (dt.date(2026, 11, 10) - dt.date(2025, 1, 2)).days
        day = dt.date(2025, 1, 2) + dt.timedelta(days=rng.randrange(span))
        cases.append(_new_case(rng, reg, towns, registered=day))

    # night-1 bad rows: fresh people, one known defect each
    def outside() -> tuple[str, str]:
        return rng.choice(OUTSIDE_TOWNS)

    bad: dict[str, list[_Bad]] = {}
    hw = dict(towns=towns, weights=weights, villages=villages)
    o_town, o_region = outside()
    bad["hardship"] = [
        _Bad(
            "numeric_id",
            "head_id_number",
            _hardship_household(rng, reg, **hw),
            {"person": _numeric_id_person(rng, reg, born=(1950, 1990))},
        ),
        _Bad("bad_checksum", "head_id_number", _hardship_household(rng, reg, **hw)),
        _Bad("bad_length", "head_id_number", _hardship_household(rng, reg, **hw)),
        _Bad("town_outside", "town", _hardship_household(rng, reg, **hw, town=o_town, region=o_region)),
        _Bad("empty_name", "head_name", _hardship_household(rng, reg, **hw)),
        _Bad("formula_name", "head_name", _hardship_household(rng, reg, **hw)),
    ]
    o_town, o_region = outside()
    bad["orphan"] = [
        _Bad(
            "numeric_id",
            "guardian_id_number",
            _orphan_family(rng, reg, **hw),
            {"person": _numeric_id_person(rng, reg, born=(1950, 1970))},
        ),
        _Bad("bad_checksum", "guardian_id_number", _orphan_family(rng, reg, **hw)),
        _Bad("town_outside", "town", _orphan_family(rng, reg, **hw, town=o_town, region=o_region)),
        _Bad("empty_name", "child_name", _orphan_family(rng, reg, **hw)),
        _Bad("formula_name", "guardian_name", _orphan_family(rng, reg, **hw)),
    ]
    bad["cadre"] = [
        _Bad(
            "numeric_id",
            "id_number",
            _new_cadre(rng, reg, towns, picker, "副科级", digits_only=True),
            {"person": _numeric_id_person(rng, reg, born=(1970, 1995))},
        ),
        _Bad("bad_checksum", "id_number", _new_cadre(rng, reg, towns, picker, "科员")),
        _Bad("bad_length", "id_number", _new_cadre(rng, reg, towns, picker, "副科级")),
        _Bad("empty_name", "name", _new_cadre(rng, reg, towns, picker, "正科级")),
        _Bad("formula_name", "name", _new_cadre(rng, reg, towns, picker, "办事员")),
        _Bad("missing_required", "rank", _new_cadre(rng, reg, towns, picker, "副科级")),
    ]
    o_town, o_region = outside()
    bad["old_member"] = [
        _Bad("numeric_id_text", "id_number", _old_member(rng, reg, **hw, legacy=False)),
        _Bad("bad_checksum", "id_number", _old_member(rng, reg, **hw, legacy=False)),
        _Bad("bad_birthdate", "id_number", _old_member(rng, reg, **hw, legacy=True)),
        _Bad("town_outside", "town", _old_member(rng, reg, **hw, legacy=False, town=o_town, region=o_region)),
        _Bad("formula_name", "name", _old_member(rng, reg, **hw, legacy=False)),
    ]
    o_town, o_region = outside()

    def bad_case_day() -> dt.date:
        return dt.date(2025, 6, 1) + dt.timedelta(days=rng.randrange(500))

    bad["case"] = [
        _Bad("bad_checksum", "petitioner_id_number", _new_case(rng, reg, towns, registered=bad_case_day())),
        _Bad(
            "town_outside",
            "town",
            _new_case(rng, reg, towns, registered=bad_case_day(), town=o_town, region=o_region),
        ),
        _Bad("empty_name", "petitioner_name", _new_case(rng, reg, towns, registered=bad_case_day())),
        _Bad("formula_name", "petitioner_name", _new_case(rng, reg, towns, registered=bad_case_day())),
        _Bad(
            "numeric_id_text", "petitioner_id_number", _new_case(rng, reg, towns, registered=bad_case_day())
        ),
    ]
    for b in bad["case"]:
        if b.kind == "town_outside":
            b.entity.unit = "区信访局"
    # number all cases (good and bad) per year in registration order
    all_cases = sorted(
        cases + [b.entity for b in bad["case"]], key=lambda c: (c.registered, c.petitioner.id18)
    )
    per_year: dict[int, int] = {}
    for c in all_cases:
        per_year[c.registered.year] = per_year.get(c.registered.year, 0) + 1
        c.number = _case_number(c.registered.year, per_year[c.registered.year])

    # warnings on true entities (they load): chosen away from the namesakes
    taken = {i for pair in namesakes for i in pair}
    warn: dict[str, dict[str, tuple[str, str, object]]] = {
        k: {} for k in ("hardship", "orphan", "cadre", "case")
    }
    free = [h for h in hardship if h.head.id18 not in taken]
    if len(free) >= 2:
        h_region, h_phone = rng.sample(free, 2)
        reg.ids.discard(h_region.head.id18)
        moved = reg.person(rng, born=(1960, 1990), sex=h_region.head.sex, region=UNUSUAL_REGION)
        h_region.head = _Person(h_region.head.name, moved.id18, h_region.head.sex)
        warn["hardship"][h_region.head.id18] = ("region_unknown", "head_id_number", None)
        warn["hardship"][h_phone.head.id18] = ("phone_invalid", "phone", _mobile(rng)[:10])
    singles = [f for f in orphan if len(f.children) == 1]
    if singles:
        warn["orphan"][rng.choice(singles).head.id18] = ("phone_invalid", "phone", _mobile(rng)[:10])
    if len(cadres) >= 2:
        c_town, c_phone = rng.sample(cadres, 2)
        warn["cadre"][c_town.person.id18] = ("town_outside", "linked_town", rng.choice(OUTSIDE_TOWNS)[0])
        warn["cadre"][c_phone.person.id18] = ("phone_invalid", "phone", _mobile(rng)[:9])
    if cases:
        c = rng.choice(cases)
        bad_day = f"{c.registered.year}年13月{c.registered.day}日"
        warn["case"][c.number] = ("bad_date", "registered_date", bad_day)

    pop = _Population(towns, villages, hardship, orphan, old, cadres, cases, bad, namesakes, picker, warn)
    return pop, reg


@dataclass
class _Round:
    night: int
    fill_date: dt.date
    exits: list[tuple[_Household, str, str, dt.date]]  # household, 退出/脱困, reason, date
    adds: list[tuple[_Household, str, dt.date]]  # household, reason, date
    departures: list[tuple[_Cadre, str, dt.date]]  # cadre, 调离/退休, date
    joins: list[tuple[_Cadre, dt.date]]
    closures: list[tuple[_Case, dt.date]]
    bad: dict[str, list[_Bad]]


def _fill_date(night: int) -> dt.date:
    return NIGHT1_FILL_DATE + dt.timedelta(days=night - 1)


def _apply_round(pop: _Population, reg: _Registry, seed: int, night: int, base: dict[str, int]) -> _Round:
    """Night >= 2: pick changes among the active population and apply them to ``pop``."""
    rng = random.Random(f"{seed}:round:{night}")
    fill = _fill_date(night)
    towns = pop.towns
    weights = [1.0] * len(towns)
    hw = dict(towns=towns, weights=weights, villages=pop.villages)

    def day() -> dt.date:
        # night 2 reports the changes of the month before its list; later nights report the changes
        # since the previous night, dated on their own night, so a household's exit is never dated
        # before its addition on an earlier night (the status stage takes the latest change by date)
        back = rng.randint(1, 30)  # drawn on every night, so the other choices stay what they were
        return fill - dt.timedelta(days=back) if night == 2 else fill

    picker = pop.picker
    n_exit = min(len(pop.hardship), max(1, round(0.03 * base["hardship"])))
    n_add = max(1, round(0.02 * base["hardship"]))
    n_leave = min(len(pop.cadres), max(1, round(0.02 * base["cadres"])))
    n_join = max(1, round(0.01 * base["cadres"]))
    n_close = min(len(pop.cases), max(1, round(0.10 * base["cases"])))

    warned = pop.warned()  # entities whose night-1 row carried a warning stay out of the changes
    hardship = [h for h in pop.hardship if h.head.id18 not in warned]
    cadres = [c for c in pop.cadres if c.person.id18 not in warned]
    cases = [c for c in pop.cases if c.number not in warned]
    n_exit = min(n_exit, len(hardship))
    n_leave = min(n_leave, len(cadres))
    n_close = min(n_close, len(cases))
    exits = []
    for i in sorted(rng.sample(range(len(hardship)), n_exit)):
        kind = "退出" if rng.random() < 0.5 else "脱困"
        exits.append((hardship[i], kind, rng.choice(_EXIT_REASONS[kind]), day()))
    adds = [(_hardship_household(rng, reg, **hw), rng.choice(_ADD_REASONS), day()) for _ in range(n_add)]

    departures = []
    for i in sorted(rng.sample(range(len(cadres)), n_leave)):
        c = cadres[i]
        born = idnumber.birth_date(c.person.id18)
        kind = "退休" if born and born.year <= 1968 and rng.random() < 0.7 else "调离"
        departures.append((c, kind, day()))
    joins = []
    for _ in range(n_join):
        r = rng.random()
        if r < 0.04:
            person = reg.person(rng, born=(1968, 1982), sex="M")
            cadre = _Cadre(person, "区政府", "副区长", "副县级", rng.choice(towns), _phone(rng, 0.0))
        else:
            ordinary = _weighted(rng, [(x, w) for _, x, w in _ORDINARY])
            rank_label = rng.choice(("正科级", "副科级")) if r < 0.5 else ordinary
            cadre = _new_cadre(rng, reg, towns, picker, rank_label, linked_town=rng.choice(towns))
        joins.append((cadre, day()))

    closures = []
    for i in sorted(rng.sample(range(len(cases)), n_close)):
        closed = max(day(), cases[i].registered + dt.timedelta(days=7))
        closures.append((cases[i], min(fill - dt.timedelta(days=1), closed)))

    # bad rows: a malformed date on a real row (the change must NOT happen) and a fresh person
    # with a broken checksum
    exiting = {h.head.id18 for h, *_ in exits}
    stay_h = [h for h in hardship if h.head.id18 not in exiting]
    leaving = {c.person.id18 for c, *_ in departures}
    stay_c = [c for c in cadres if c.person.id18 not in leaving]
    closing = {c.number for c, _ in closures}
    stay_k = [c for c in cases if c.number not in closing]
    bad: dict[str, list[_Bad]] = {"hardship_adjustment": [], "cadre_change": [], "case_closure": []}
    if stay_h:
        bad["hardship_adjustment"].append(
            _Bad(
                "bad_date",
                "adjustment_date",
                rng.choice(stay_h),
                {
                    "type": "退出",
                    "reason": "迁出本区",
                    "value": rng.choice(("2026.11.31", "待定", "十一月中旬")),
                },
            )
        )
    bad["hardship_adjustment"].append(
        _Bad(
            "bad_checksum",
            "head_id_number",
            _hardship_household(rng, reg, **hw),
            {"type": "新增", "reason": "经排查新认定", "date": day()},
        )
    )
    if stay_c:
        bad["cadre_change"].append(
            _Bad(
                "bad_date",
                "change_date",
                rng.choice(stay_c),
                {"type": "调离", "value": rng.choice(("2026年11月31日", "近期", "2026.13.2"))},
            )
        )
    bad["cadre_change"].append(
        _Bad(
            "bad_checksum",
            "id_number",
            _new_cadre(rng, reg, towns, picker, "科员", linked_town=rng.choice(towns)),
            {"type": "新增", "date": day()},
        )
    )
    if stay_k:
        bad["case_closure"].append(
            _Bad(
                "bad_date", "closure_date", rng.choice(stay_k), {"value": rng.choice(("待定", "2026.11.31"))}
            )
        )

    # apply
    pop.hardship = [h for h in pop.hardship if h.head.id18 not in exiting] + [h for h, *_ in adds]
    pop.cadres = [c for c in pop.cadres if c.person.id18 not in leaving] + [c for c, _ in joins]
    pop.closed_cases += [c for c, _ in closures]
    pop.cases = [c for c in pop.cases if c.number not in closing]
    for c, _ in closures:
        c.status = "已销号"
    return _Round(night, fill, exits, adds, departures, joins, closures, bad)


# ---------------------------------------------------------------------------------------------
# cell mess


@dataclass
class _Cell:
    """A value with an Excel number format (xlsx/xls writers)."""

    value: object
    number_format: str | None = None


def _messy_id(id_: str, rng: random.Random) -> str:
    s = id_
    if s.endswith("X") and rng.random() < 0.5:
        s = s[:-1] + "x"
    r = rng.random()
    if r < 0.04:
        return f"{s[:6]} {s[6:14]} {s[14:]}"
    if r < 0.065:
        return s.translate(_FW_DIGITS)
    if r < 0.08:
        return s + " "
    if r < 0.09:
        return s[:6] + "\u3000" + s[6:]
    return s


def _messy_phone(phone: str | None, rng: random.Random, *, numeric_ok: bool) -> object:
    if phone is None:
        return None
    if not phone.startswith("1"):
        return phone
    r = rng.random()
    if r < 0.06:
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if r < 0.11:
        return f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
    if numeric_ok and r < 0.2:
        return int(phone)
    return phone


def _date_text(d: dt.date, style: str) -> str:
    return {
        "iso": f"{d:%Y-%m-%d}",
        "cn": f"{d.year}年{d.month}月{d.day}日",
        "dot": f"{d.year}.{d.month}.{d.day}",
        "slash0": f"{d:%Y/%m/%d}",
        "slash": f"{d.year}/{d.month}/{d.day}",
    }[style]


def _messy_date_xlsx(d: dt.date, rng: random.Random) -> _Cell:
    r = rng.random()
    if r < 0.35:
        return _Cell(dt.datetime(d.year, d.month, d.day), "yyyy-mm-dd")
    if r < 0.5:
        return _Cell(dt.datetime(d.year, d.month, d.day), 'yyyy"年"m"月"d"日"')
    if r < 0.65:
        return _Cell((d - _EXCEL_EPOCH).days, "General")  # an Excel serial in a General cell
    return _Cell(_date_text(d, rng.choice(("cn", "dot", "slash0"))))


def _messy_date_csv(d: dt.date, rng: random.Random, *, month_only_ok: bool = False) -> str:
    if month_only_ok and rng.random() < 0.12:
        return f"{d.year}年{d.month}月"
    styles = (("iso", 40), ("slash", 20), ("cn", 20), ("dot", 10), ("slash0", 10))
    return _date_text(d, _weighted(rng, styles))


def _corrupt_checksum(id18: str, rng: random.Random) -> str:
    right = idnumber.check_digit(id18[:17])
    wrong = rng.choice([c for c in "0123456789X" if c != right])
    return id18[:17] + wrong


def _numeric_id_value(person: _Person) -> float:
    return float(int(person.id18))


# ---------------------------------------------------------------------------------------------
# writers


def _save_xlsx(wb, path: Path) -> None:
    """Save with fixed properties and fixed zip timestamps: same content -> same bytes."""
    from openpyxl.writer.excel import ExcelWriter

    wb.properties.created = FIXED_TIMESTAMP
    wb.properties.modified = FIXED_TIMESTAMP
    wb.properties.creator = "Administrator"
    wb.properties.lastModifiedBy = "Administrator"
    raw = io.BytesIO()
    archive = zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
    ExcelWriter(wb, archive).save()  # closes the archive; unlike save_workbook, keeps `modified`
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, src.read(info.filename))
    path.write_bytes(out.getvalue())


def _runs(rows: list, col: int) -> list[tuple[int, int]]:
    """(first, last) index of runs of >= 2 consecutive non-blank rows with the same value in col."""
    out = []
    i = 0
    while i < len(rows):
        if rows[i] is None or rows[i][col] is None:
            i += 1
            continue
        j = i
        while j + 1 < len(rows) and rows[j + 1] is not None and rows[j + 1][col] == rows[i][col]:
            j += 1
        if j > i:
            out.append((i, j))
        i = j + 1
    return out


def _xlsx_sheet(
    ws,
    *,
    title: str,
    subtitle: str | None,
    headers: list[str],
    rows: list,
    merge_cols=(),
    footers=(),
    widths=(),
    text_cols=(),
) -> tuple[int, list[int | None], list[int], list[int]]:
    """Write one sheet; ``rows`` items are lists of cell values or None (a blank row).

    ``footers`` items: None (a blank row), a str (in column A) or a list of ``(column, text, span)``
    (1-based column; span > 1 merges the cell to the right). Returns the header row number, the
    Excel row number of every item (None for blanks), the blank rows and the footer rows."""
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    ncol = len(headers)
    last = get_column_letter(ncol)
    ws["A1"] = title
    ws["A1"].font = Font(name="宋体", size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.merge_cells(f"A1:{last}1")
    ws.row_dimensions[1].height = 30
    r = 2
    if subtitle:
        ws.cell(2, 1, subtitle).data_type = "s"
        ws.merge_cells(f"A2:{last}2")
        r = 3
    header_row = r
    for c, h in enumerate(headers, 1):
        cell = ws.cell(r, c, h)
        cell.data_type = "s"
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    first = r + 1
    skip: set[tuple[int, int]] = set()
    merges = []
    for col in merge_cols:
        for i, j in _runs(rows, col):
            merges.append((first + i, first + j, col + 1))
            skip.update((k, col) for k in range(i + 1, j + 1))
    numbers: list[int | None] = []
    for i, row in enumerate(rows):
        rn = first + i
        numbers.append(None if row is None else rn)
        if row is None:
            continue
        for c, v in enumerate(row):
            if v is None or (i, c) in skip:
                continue
            fmt = None
            if isinstance(v, _Cell):
                v, fmt = v.value, v.number_format
            cell = ws.cell(rn, c + 1)
            cell.value = v
            if isinstance(v, str):
                cell.data_type = "s"  # never a formula, whatever the text starts with
            if fmt:
                cell.number_format = fmt
            elif c in text_cols and isinstance(v, str):
                cell.number_format = "@"
    for a, b, col in merges:
        ws.merge_cells(start_row=a, start_column=col, end_row=b, end_column=col)
        ws.cell(a, col).alignment = Alignment(horizontal="center", vertical="center")
    r = first + len(rows)
    blanks = [first + i for i, row in enumerate(rows) if row is None]
    footer_rows = []
    for item in footers:
        if item is None:
            blanks.append(r)
        else:
            footer_rows.append(r)
            for col, text, span in [(1, item, 1)] if isinstance(item, str) else item:
                ws.cell(r, col, text).data_type = "s"
                if span > 1:
                    ws.merge_cells(start_row=r, start_column=col, end_row=r, end_column=col + span - 1)
        r += 1
    for c, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(c)].width = w
    return header_row, numbers, blanks, footer_rows


def _csv_bytes(headers: list[str], rows: list[list[object]], encoding: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode(encoding)


class _FileRecord:
    """Collects a file's truth while it is being written."""

    def __init__(
        self, path: str, department: str, roster: str, fmt: str, encoding: str | None = None
    ) -> None:
        self.truth = FileTruth(path, department, roster, fmt, encoding, [], 0, 0, 0, 0, [])

    def sheet(self, name: str, header_row: int, rows: int, blanks=(), footers=()) -> None:
        self.truth.sheets.append(SheetInfo(name, header_row, rows, list(blanks), list(footers)))
        self.truth.rows += rows

    def bad(self, sheet: str, row: int, b: _Bad, header: str) -> None:
        self.truth.bad_rows.append(BadRow(sheet, row, b.field, header, b.kind, list(BAD_KINDS[b.kind])))

    def warn(self, sheet: str, row: int, warning: tuple[str, str, object], headers, fields) -> None:
        kind, fld, _ = warning
        header = headers[list(fields).index(fld)]
        self.truth.warning_rows.append(BadRow(sheet, row, fld, header, kind, list(WARNING_KINDS[kind])))

    def done(self, entities: int, duplicates: int = 0) -> FileTruth:
        t = self.truth
        t.bad_rows.sort(key=lambda b: ([s.name for s in t.sheets].index(b.sheet), b.row))
        t.warning_rows.sort(key=lambda b: ([s.name for s in t.sheets].index(b.sheet), b.row))
        t.good_rows = t.rows - len(t.bad_rows)
        t.entities = entities
        t.duplicate_rows = duplicates
        return t


def _apply_person_bad(
    b: _Bad, values: dict, rng: random.Random, *, name_key: str, id_key: str, id18: str
) -> None:
    """Put the bad row's defect into its cell values (dict keyed by canonical field)."""
    if b.kind == "numeric_id":
        values[id_key] = _Cell(_numeric_id_value(b.extra["person"]), "0")
    elif b.kind == "numeric_id_text":
        values[id_key] = f"{int(id18[:17]) * 10.0:.5E}"  # what Excel exports from a number cell: 3.70406E+17
    elif b.kind == "bad_checksum":
        values[id_key] = _corrupt_checksum(id18, rng)
    elif b.kind == "bad_length":
        cut = rng.randrange(6, 17)
        values[id_key] = id18[:cut] + id18[cut + 1 :]
    elif b.kind == "empty_name":
        values[name_key] = None
    elif b.kind == "formula_name":
        values[name_key] = FORMULA_NAME
    elif b.kind == "missing_required":
        values[b.field] = None


# --- night 1: hardship roster (.xlsx, two sheets) --------------------------------------------

_HARDSHIP_COLS = (
    "seq",
    "town",
    "village",
    "head_name",
    "head_id_number",
    "household_size",
    "cause",
    "income",
    "phone",
    "remark",
)
_HARDSHIP_HEADERS = (
    [
        "序号",
        "镇(街)",
        "村（居）",
        "户主姓名",
        "*户主身份证号(必填)",
        "家庭人口",
        "致困原因",
        "人均年收入(元)",
        "联系电话",
        "备注",
    ],
    [
        "序号",
        "镇街",
        "村(居)",
        "姓名",
        "身份证号码",
        "人口数",
        "困难类型",
        "人均年收入(元)",
        "手机号码",
        "备注",
    ],
)
_REMARKS = ("低保户", "残疾人家庭", "独居老人", "重病患者", "五保户")


def _hardship_values(h: _Household, rng: random.Random) -> dict:
    income: object = int(h.income) if float(h.income).is_integer() else h.income
    r = rng.random()
    if r < 0.04:
        income = f"{income}元"
    elif r < 0.08:
        income = f"{income}"
    size: object = h.size if rng.random() > 0.05 else f"{h.size}人"
    return {
        "town": h.town,
        "village": h.village,
        "head_name": h.head.name,
        "head_id_number": _messy_id(h.head.id18, rng),
        "household_size": size,
        "cause": h.cause,
        "income": income,
        "phone": _messy_phone(h.phone, rng, numeric_ok=True),
        "remark": rng.choice(_REMARKS) if rng.random() < 0.08 else None,
    }


def _write_hardship(
    out_dir: Path, rel: str, pop: _Population, rng: random.Random, fill: dt.date
) -> FileTruth:
    from openpyxl import Workbook

    rec = _FileRecord(rel, "civil_affairs", "hardship", "xlsx")
    wb = Workbook()
    wb.remove(wb.active)
    towns = pop.towns
    half = (len(towns) + 1) // 2
    parts = [("特困家庭(一)", towns[:half]), ("特困家庭(二)", towns[half:])]
    n_dup = min(len(pop.hardship), max(1, round(0.01 * len(pop.hardship))))
    dup_pool = [h for h in pop.hardship if h.head.id18 not in pop.warn["hardship"]]
    n_dup = min(n_dup, len(dup_pool))
    dup_ids = {h.head.id18 for h in rng.sample(dup_pool, n_dup)}
    bad_by_town: dict[str, list[_Bad]] = {}
    outside_bad = []
    for b in pop.bad["hardship"]:
        if b.entity.town in towns:
            bad_by_town.setdefault(b.entity.town, []).append(b)
        else:
            outside_bad.append(b)
    village_rank = {t: {v: i for i, v in enumerate(vs)} for t, vs in pop.villages.items()}

    for s, (sheet_name, sheet_towns) in enumerate(parts):
        ws = wb.create_sheet(sheet_name)
        items: list = []  # (kind, household or bad) or None
        blank_before = {rng.randint(1, 2)} if s == 0 else set(rng.sample(range(1, 6), rng.randint(0, 2)))
        groups = 0
        for town in sheet_towns:
            group = sorted(
                (h for h in pop.hardship if h.town == town),
                key=lambda h: (village_rank[town][h.village], h.head.id18),
            )
            entries: list = [("good", h) for h in group]
            for h in group:
                if h.head.id18 in dup_ids:
                    at = entries.index(("good", h))
                    entries.insert(rng.randint(at + 1, len(entries)), ("dup", h))
            for b in bad_by_town.get(town, []):
                entries.insert(rng.randint(0, len(entries)), ("bad", b))
            if not entries:
                continue
            if groups in blank_before and items:
                items.append(None)
            groups += 1
            items.extend(entries)
        if s == len(parts) - 1:
            items.extend(("bad", b) for b in outside_bad)
        rows: list = []
        seq = 0
        households = 0
        for item in items:
            if item is None:
                rows.append(None)
                continue
            kind, obj = item
            seq += 1
            if kind == "bad":
                values = _hardship_values(obj.entity, rng)
                _apply_person_bad(
                    obj, values, rng, name_key="head_name", id_key="head_id_number", id18=obj.entity.head.id18
                )
            else:
                values = _hardship_values(obj, rng)
                households += kind == "good"
                _, fld, value = pop.warn["hardship"].get(obj.head.id18, (None, None, None))
                if value is not None:
                    values[fld] = value
            values["seq"] = seq
            rows.append([values.get(k) for k in _HARDSHIP_COLS])
        headers = _HARDSHIP_HEADERS[s % 2]
        footers = [
            None,
            [(1, f"合计:{households}户", 4)],
            "制表人:孙丽        审核人:刘强" if s == 0 else [(2, "制表人:孙丽", 1), (6, "审核人:刘强", 1)],
        ]
        header_row, numbers, blanks, footer_rows = _xlsx_sheet(
            ws,
            title=f"{spec.district().name}特困家庭花名册",
            subtitle=f"填报单位(盖章):{spec.district().name}民政局    填报日期:{fill.year}年{fill.month}月{fill.day}日",
            headers=headers,
            rows=rows,
            merge_cols=(1,),
            footers=footers,
            widths=(6, 12, 12, 10, 22, 8, 12, 12, 15, 10),
            text_cols=(4,),
        )
        rec.sheet(sheet_name, header_row, sum(1 for x in rows if x is not None), blanks, footer_rows)
        first_row: dict[str, int] = {}
        for item, rn in zip(items, numbers, strict=True):
            if item is not None and item[0] == "bad":
                b = item[1]
                rec.bad(sheet_name, rn, b, headers[_HARDSHIP_COLS.index(b.field)])
            elif item is not None and item[0] == "good":
                first_row[item[1].head.id18] = rn
                if item[1].head.id18 in pop.warn["hardship"]:
                    rec.warn(sheet_name, rn, pop.warn["hardship"][item[1].head.id18], headers, _HARDSHIP_COLS)
        for item, rn in zip(items, numbers, strict=True):
            if item is not None and item[0] == "dup":
                first = first_row[item[1].head.id18]
                rec.truth.duplicates.append({"sheet": sheet_name, "row": rn, "first_row": first})
    _save_xlsx(wb, out_dir / rel)
    return rec.done(entities=len(pop.hardship), duplicates=n_dup)


# --- night 1: orphan families (.xls) ---------------------------------------------------------

_ORPHAN_COLS = (
    "seq",
    "child_name",
    "child_id_number",
    "situation",
    "guardian_name",
    "guardian_id_number",
    "relation",
    "town",
    "village",
    "phone",
)
_ORPHAN_HEADERS = [
    "序号",
    "儿童姓名",
    "儿童身份证号",
    "失亲情况",
    "监护人姓名",
    "监护人身份证号",
    "与儿童关系",
    "镇街",
    "村居",
    "联系电话",
]


def _orphan_rows(f: _Household, rng: random.Random) -> list[dict]:
    guardian_id = _messy_id(f.head.id18, rng)
    phone = _messy_phone(f.phone, rng, numeric_ok=True)
    out = []
    for child, situation in f.children:
        out.append(
            {
                "child_name": child.name,
                "child_id_number": _messy_id(child.id18, rng),
                "situation": situation,
                "guardian_name": f.head.name,
                "guardian_id_number": guardian_id,
                "relation": f.relation,
                "town": f.town,
                "village": f.village,
                "phone": phone,
            }
        )
    return out


def _write_orphan(out_dir: Path, rel: str, pop: _Population, rng: random.Random, fill: dt.date) -> FileTruth:
    import xlwt

    rec = _FileRecord(rel, "womens_federation", "orphan", "xls")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    village_rank = {t: {v: i for i, v in enumerate(vs)} for t, vs in pop.villages.items()}

    def key(f: _Household) -> tuple:
        village = village_rank.get(f.town, {}).get(f.village, 99)
        return (town_rank.get(f.town, len(pop.towns)), village, f.head.id18)

    entries = [("good", f) for f in pop.orphan] + [("bad", b) for b in pop.bad["orphan"]]
    entries.sort(key=lambda e: key(e[1] if e[0] == "good" else e[1].entity))
    rows: list[list] = []
    owners: list = []
    for kind, obj in entries:
        fam = obj if kind == "good" else obj.entity
        for values in _orphan_rows(fam, rng):
            if kind == "bad":
                if obj.kind == "numeric_id":
                    values["guardian_id_number"] = _numeric_id_value(obj.extra["person"])
                else:
                    _apply_person_bad(
                        obj,
                        values,
                        rng,
                        name_key="child_name" if obj.field == "child_name" else "guardian_name",
                        id_key="guardian_id_number",
                        id18=fam.head.id18,
                    )
            elif fam.head.id18 in pop.warn["orphan"]:
                _, fld, value = pop.warn["orphan"][fam.head.id18]
                values[fld] = value
            values["seq"] = len(rows) + 1
            rows.append([values.get(k) for k in _ORPHAN_COLS])
            owners.append((kind, obj))

    wb = xlwt.Workbook(encoding="utf-8")
    sheet_name = "失亲儿童家庭"
    ws = wb.add_sheet(sheet_name)
    title_style = xlwt.easyxf("font: name 宋体, bold on, height 320; align: horiz center, vert center")
    head_style = xlwt.easyxf(
        "font: bold on; align: horiz center, vert center, wrap on; "
        "borders: left thin, right thin, top thin, bottom thin"
    )
    merged_style = xlwt.easyxf("align: horiz center, vert center")
    num_style = xlwt.easyxf(num_format_str="0")
    ncol = len(_ORPHAN_HEADERS)
    ws.write_merge(0, 0, 0, ncol - 1, f"{spec.district().name}失亲儿童家庭花名册", title_style)
    ws.row(0).height_mismatch = True
    ws.row(0).height = 600
    for c, h in enumerate(_ORPHAN_HEADERS):
        ws.write(1, c, h, head_style)
    first = 2  # 0-based sheet row of the first data row (Excel row 3)
    village_col = _ORPHAN_COLS.index("village")
    runs = _runs([[(r[7], r[8])] for r in rows], 0)  # same town AND village
    covered: set[int] = set()
    for i, j in runs:
        ws.write_merge(first + i, first + j, village_col, village_col, rows[i][village_col], merged_style)
        covered.update(range(i, j + 1))
    for i, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is None or (c == village_col and i in covered):
                continue
            if isinstance(v, float) and c == _ORPHAN_COLS.index("guardian_id_number"):
                ws.write(first + i, c, v, num_style)
            else:
                ws.write(first + i, c, v)
    families = len(pop.orphan)
    children = sum(len(f.children) for f in pop.orphan)
    blank = first + len(rows)  # 0-based index of the blank row under the data, then two footers
    ws.write(blank + 1, 0, f"合计：{families}户{children}人")
    ws.write(
        blank + 2,
        0,
        f"填报单位：{spec.district().name}妇联    填报时间：{fill.year}年{fill.month}月{fill.day}日",
    )
    for c, w in enumerate((6, 10, 22, 14, 10, 22, 10, 10, 12, 14)):
        ws.col(c).width = 256 * w
    buf = io.BytesIO()
    wb.save(buf)
    (out_dir / rel).write_bytes(buf.getvalue())

    rec.sheet(sheet_name, 2, len(rows), [blank + 1], [blank + 2, blank + 3])  # Excel = 0-based + 1
    for i, (kind, obj) in enumerate(owners):
        if kind == "bad":
            rec.bad(sheet_name, first + i + 1, obj, _ORPHAN_HEADERS[_ORPHAN_COLS.index(obj.field)])
        elif obj.head.id18 in pop.warn["orphan"]:
            warning = pop.warn["orphan"][obj.head.id18]
            rec.warn(sheet_name, first + i + 1, warning, _ORPHAN_HEADERS, _ORPHAN_COLS)
    return rec.done(entities=families)


# --- night 1: cadre roster (.xlsx) -----------------------------------------------------------

_CADRE_COLS = ("seq", "name", "sex", "id_number", "unit", "post", "rank", "linked_town", "phone")
_CADRE_HEADERS = ["序号", "姓名", "性别", "身份证号码", "工作单位", "职务", "职级", "联系镇街", "联系电话"]
_SEX_LABEL = {"M": "男", "F": "女"}


def _pad_name(name: str | None, rng: random.Random, share: float) -> str | None:
    """Cadre rosters often pad two-character names with a full-width space: ``王　伟``."""
    if name and len(name) == 2 and rng.random() < share:
        return name[0] + "\u3000" + name[1]
    return name


def _cadre_values(c: _Cadre, rng: random.Random, pad: float = 0.15) -> dict:
    return {
        "name": _pad_name(c.person.name, rng, pad),
        "sex": _SEX_LABEL[c.person.sex],
        "id_number": _messy_id(c.person.id18, rng),
        "unit": c.unit,
        "post": c.post,
        "rank": c.rank_label,
        "linked_town": c.linked_town,
        "phone": _messy_phone(c.phone, rng, numeric_ok=True),
    }


def _write_cadres(out_dir: Path, rel: str, pop: _Population, rng: random.Random, fill: dt.date) -> FileTruth:
    from openpyxl import Workbook

    rec = _FileRecord(rel, "organization", "cadre", "xlsx")
    order = _unit_order(pop.towns)
    rank_order = {r: i for i, r in enumerate(_RANK_ORDER)}

    def key(c: _Cadre) -> tuple:
        return (order.get(c.unit, len(order)), rank_order[c.rank_label], c.person.id18)

    entries = [("good", c) for c in pop.cadres] + [("bad", b) for b in pop.bad["cadre"]]
    entries.sort(key=lambda e: key(e[1] if e[0] == "good" else e[1].entity))
    rows = []
    for i, (kind, obj) in enumerate(entries):
        if kind == "good":
            values = _cadre_values(obj, rng)
            _, fld, value = pop.warn["cadre"].get(obj.person.id18, (None, None, None))
            if value is not None:
                values[fld] = value
        else:
            values = _cadre_values(obj.entity, rng, pad=0.0)
            _apply_person_bad(
                obj, values, rng, name_key="name", id_key="id_number", id18=obj.entity.person.id18
            )
        values["seq"] = i + 1
        rows.append([values.get(k) for k in _CADRE_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "干部名册"
    header_row, numbers, blanks, footer_rows = _xlsx_sheet(
        ws,
        title=f"{spec.district().name}机关事业单位干部花名册",
        subtitle=None,
        headers=_CADRE_HEADERS,
        rows=rows,
        merge_cols=(4,),
        footers=[None, f"合计：{len(pop.cadres)}人", "制表人：王敏    审核人：张建国"],
        widths=(6, 10, 6, 22, 24, 28, 10, 12, 15),
        text_cols=(3,),
    )
    notes = wb.create_sheet("填表说明")
    for r, text in enumerate(
        (
            "填表说明",
            "1.身份证号码一列请先设置为文本格式再录入,避免末尾几位变成0。",
            "2.职级按正县级、副县级、正科级、副科级、科员、办事员、一般干部填写。",
            "3.联系镇街填写所联系帮扶的镇(街道)全称。",
        ),
        1,
    ):
        notes.cell(r, 1, text).data_type = "s"
    notes.column_dimensions["A"].width = 70
    _save_xlsx(wb, out_dir / rel)
    rec.sheet("干部名册", header_row, len(rows), blanks, footer_rows)
    for (kind, obj), rn in zip(entries, numbers, strict=True):
        if kind == "bad":
            rec.bad("干部名册", rn, obj, _CADRE_HEADERS[_CADRE_COLS.index(obj.field)])
        elif obj.person.id18 in pop.warn["cadre"]:
            rec.warn("干部名册", rn, pop.warn["cadre"][obj.person.id18], _CADRE_HEADERS, _CADRE_COLS)
    return rec.done(entities=len(pop.cadres))


# --- night 1: pre-1949 party members (GBK .csv) ----------------------------------------------

_OLD_HEADERS = ["序号", "姓 名", "性别", "公民身份号码", "入党时间", "乡镇(街道)", "村", "联系电话"]
_OLD_FIELDS = ("seq", "name", "sex", "id_number", "joined_date", "town", "village", "phone")


def _write_old_members(out_dir: Path, rel: str, pop: _Population, rng: random.Random) -> FileTruth:
    rec = _FileRecord(rel, "organization", "old_member", "csv", "gbk")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    entries = [("good", m) for m in pop.old_member] + [("bad", b) for b in pop.bad["old_member"]]
    entries.sort(
        key=lambda e: (
            town_rank.get((e[1] if e[0] == "good" else e[1].entity).town, 99),
            (e[1] if e[0] == "good" else e[1].entity).head.id18,
        )
    )
    rows = []
    for i, (kind, obj) in enumerate(entries):
        m = obj if kind == "good" else obj.entity
        id_value = m.id15 if m.id15 else _messy_id(m.head.id18, rng).replace("\u3000", " ")
        if m.id15 and rng.random() < 0.1:
            id_value = m.id15[:6] + " " + m.id15[6:]
        values = {
            "seq": i + 1,
            "name": m.head.name,
            "sex": _SEX_LABEL[m.head.sex],
            "id_number": id_value,
            "joined_date": _messy_date_csv(m.joined, rng, month_only_ok=True),
            "town": m.town,
            "village": m.village,
            "phone": _messy_phone(m.phone, rng, numeric_ok=False),
        }
        if kind == "bad":
            if obj.kind == "bad_birthdate":
                values["id_number"] = m.id15[:8] + "13" + m.id15[10:]  # month 13
            else:
                _apply_person_bad(obj, values, rng, name_key="name", id_key="id_number", id18=m.head.id18)
        rows.append([values.get(k) for k in _OLD_FIELDS])
    rows.append([None] * len(_OLD_HEADERS))  # the empty line Excel leaves at the end of an export
    (out_dir / rel).write_bytes(_csv_bytes(_OLD_HEADERS, rows, "gbk"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows) - 1, [len(rows) + 1])
    for i, (kind, obj) in enumerate(entries):
        if kind == "bad":
            rec.bad(sheet, i + 2, obj, _OLD_HEADERS[_OLD_FIELDS.index(obj.field)])
    return rec.done(entities=len(pop.old_member))


# --- night 1: key petition cases (UTF-8 BOM .csv) --------------------------------------------

_CASE_HEADERS = [
    "序号",
    "案件编号",
    "信访人",
    "信访人身份证号",
    "所属镇街",
    "诉求类别",
    "诉求摘要",
    "责任单位",
    "登记时间",
    "办理状态",
]
_CASE_FIELDS = (
    "seq",
    "case_number",
    "petitioner_name",
    "petitioner_id_number",
    "town",
    "topic",
    "summary",
    "responsible_unit",
    "registered_date",
    "case_status",
)


def _write_cases(out_dir: Path, rel: str, pop: _Population, rng: random.Random) -> FileTruth:
    rec = _FileRecord(rel, "petition", "case", "csv", "utf-8-sig")
    entries = [("good", c) for c in pop.cases] + [("bad", b) for b in pop.bad["case"]]
    entries.sort(key=lambda e: (e[1] if e[0] == "good" else e[1].entity).number)
    rows = []
    for i, (kind, obj) in enumerate(entries):
        c = obj if kind == "good" else obj.entity
        summary = c.summary.replace("，", ",") if rng.random() < 0.3 else c.summary  # ASCII commas: quoted
        values = {
            "seq": i + 1,
            "case_number": c.number,
            "petitioner_name": c.petitioner.name,
            "petitioner_id_number": _messy_id(c.petitioner.id18, rng).replace("\u3000", " "),
            "town": c.town,
            "topic": c.topic,
            "summary": summary,
            "responsible_unit": c.unit,
            "registered_date": _messy_date_csv(c.registered, rng),
            "case_status": c.status,
        }
        if kind == "bad":
            _apply_person_bad(
                obj,
                values,
                rng,
                name_key="petitioner_name",
                id_key="petitioner_id_number",
                id18=c.petitioner.id18,
            )
        elif c.number in pop.warn["case"]:
            _, fld, value = pop.warn["case"][c.number]
            values[fld] = value
        rows.append([values.get(k) for k in _CASE_FIELDS])
    (out_dir / rel).write_bytes(_csv_bytes(_CASE_HEADERS, rows, "utf-8-sig"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows))
    for i, (kind, obj) in enumerate(entries):
        if kind == "bad":
            rec.bad(sheet, i + 2, obj, _CASE_HEADERS[_CASE_FIELDS.index(obj.field)])
        elif obj.number in pop.warn["case"]:
            rec.warn(sheet, i + 2, pop.warn["case"][obj.number], _CASE_HEADERS, _CASE_FIELDS)
    return rec.done(entities=len(pop.cases))


# --- night >= 2: hardship adjustment list (.xlsx) --------------------------------------------

_ADJ_COLS = (
    "seq",
    "adjustment_type",
    "head_name",
    "head_id_number",
    "town",
    "village",
    "household_size",
    "cause",
    "income",
    "phone",
    "adjustment_date",
    "adjustment_reason",
)
_ADJ_HEADERS = [
    "序号",
    "调整类型",
    "户主姓名",
    "身份证号码",
    "镇街",
    "村(居)",
    "家庭人口",
    "致困原因",
    "人均年收入(元)",
    "联系电话",
    "调整时间",
    "调整原因",
]


def _write_adjustments(
    out_dir: Path, rel: str, rnd: _Round, pop: _Population, rng: random.Random
) -> FileTruth:
    from openpyxl import Workbook

    rec = _FileRecord(rel, "civil_affairs", "hardship_adjustment", "xlsx")
    town_rank = {t: i for i, t in enumerate(pop.towns)}
    entries: list = []
    for h, kind, reason, day in rnd.exits:
        entries.append(("good", h, kind, reason, _messy_date_xlsx(day, rng)))
    for h, reason, day in rnd.adds:
        entries.append(("good", h, "新增", reason, _messy_date_xlsx(day, rng)))
    for b in rnd.bad["hardship_adjustment"]:
        date = _Cell(b.extra["value"]) if b.kind == "bad_date" else _messy_date_xlsx(b.extra["date"], rng)
        entries.append(("bad", b, b.extra["type"], b.extra["reason"], date))
    entries.sort(
        key=lambda e: (
            town_rank.get((e[1] if e[0] == "good" else e[1].entity).town, 99),
            (e[1] if e[0] == "good" else e[1].entity).head.id18,
        )
    )
    rows = []
    for i, (kind, obj, adj_type, reason, date) in enumerate(entries):
        h = obj if kind == "good" else obj.entity
        values = _hardship_values(h, rng)
        values.update(seq=i + 1, adjustment_type=adj_type, adjustment_date=date, adjustment_reason=reason)
        if kind == "bad" and obj.kind != "bad_date":
            _apply_person_bad(
                obj, values, rng, name_key="head_name", id_key="head_id_number", id18=h.head.id18
            )
        rows.append([values.get(k) for k in _ADJ_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "动态调整"
    fill = rnd.fill_date
    header_row, numbers, blanks, footer_rows = _xlsx_sheet(
        ws,
        title=f"{spec.district().name}特困家庭动态调整名单",
        subtitle=f"填报单位(盖章):{spec.district().name}民政局    填报日期:{fill.year}年{fill.month}月{fill.day}日",
        headers=_ADJ_HEADERS,
        rows=rows,
        footers=[None, f"合计:退出{sum(1 for e in rnd.exits)}户,新增{len(rnd.adds)}户", "制表人:孙丽"],
        widths=(6, 10, 10, 22, 12, 12, 8, 12, 12, 15, 14, 28),
        text_cols=(3,),
    )
    _save_xlsx(wb, out_dir / rel)
    rec.sheet("动态调整", header_row, len(rows), blanks, footer_rows)
    for e, rn in zip(entries, numbers, strict=True):
        if e[0] == "bad":
            rec.bad("动态调整", rn, e[1], _ADJ_HEADERS[_ADJ_COLS.index(e[1].field)])
    return rec.done(entities=len(rnd.exits) + len(rnd.adds))


# --- night >= 2: cadre changes (.xlsx) -------------------------------------------------------

_CHANGE_COLS = (
    "seq",
    "name",
    "sex",
    "id_number",
    "change_type",
    "change_date",
    "unit",
    "post",
    "rank",
    "linked_town",
    "phone",
)
_CHANGE_HEADERS = [
    "序号",
    "姓名",
    "性别",
    "身份证号码",
    "变动类型",
    "变动时间",
    "工作单位",
    "职务",
    "职级",
    "联系镇街",
    "联系电话",
]


def _write_cadre_changes(
    out_dir: Path, rel: str, rnd: _Round, pop: _Population, rng: random.Random
) -> FileTruth:
    from openpyxl import Workbook

    rec = _FileRecord(rel, "organization", "cadre_change", "xlsx")
    entries: list = []
    for c, kind, day in rnd.departures:
        entries.append(("good", c, kind, _messy_date_xlsx(day, rng)))
    for c, day in rnd.joins:
        entries.append(("good", c, "新增", _messy_date_xlsx(day, rng)))
    for b in rnd.bad["cadre_change"]:
        date = _Cell(b.extra["value"]) if b.kind == "bad_date" else _messy_date_xlsx(b.extra["date"], rng)
        entries.append(("bad", b, b.extra["type"], date))
    kind_rank = {"调离": 0, "退休": 1, "新增": 2}
    order = _unit_order(pop.towns)

    def key(e: tuple) -> tuple:
        c = e[1] if e[0] == "good" else e[1].entity
        unit = order.get(c.unit, len(order))
        return (kind_rank[e[2]], unit, _RANK_ORDER.index(c.rank_label), c.person.id18)

    entries.sort(key=key)
    rows = []
    for i, (kind, obj, change, date) in enumerate(entries):
        c = obj if kind == "good" else obj.entity
        values = _cadre_values(c, rng, pad=0.1)
        values.update(seq=i + 1, change_type=change, change_date=date)
        if kind == "bad" and obj.kind != "bad_date":
            _apply_person_bad(obj, values, rng, name_key="name", id_key="id_number", id18=c.person.id18)
        rows.append([values.get(k) for k in _CHANGE_COLS])
    wb = Workbook()
    ws = wb.active
    ws.title = "干部变动"
    fill = rnd.fill_date
    header_row, numbers, blanks, footer_rows = _xlsx_sheet(
        ws,
        title=f"{spec.district().name}干部变动情况表",
        subtitle=f"报送单位:区委组织部干部科    报送时间:{fill.year}年{fill.month}月{fill.day}日",
        headers=_CHANGE_HEADERS,
        rows=rows,
        footers=[None, "制表人:王敏"],
        widths=(6, 10, 6, 22, 10, 14, 24, 28, 10, 12, 15),
        text_cols=(3,),
    )
    _save_xlsx(wb, out_dir / rel)
    rec.sheet("干部变动", header_row, len(rows), blanks, footer_rows)
    for e, rn in zip(entries, numbers, strict=True):
        if e[0] == "bad":
            rec.bad("干部变动", rn, e[1], _CHANGE_HEADERS[_CHANGE_COLS.index(e[1].field)])
    return rec.done(entities=len(rnd.departures) + len(rnd.joins))


# --- night >= 2: case closures (UTF-8 BOM .csv) ----------------------------------------------

_CLOSURE_HEADERS = ["序号", "案件编号", "办理状态", "销号时间"]


def _write_closures(out_dir: Path, rel: str, rnd: _Round, rng: random.Random) -> FileTruth:
    rec = _FileRecord(rel, "petition", "case_closure", "csv", "utf-8-sig")
    entries = [("good", c, _messy_date_csv(day, rng)) for c, day in rnd.closures]
    entries += [("bad", b, b.extra["value"]) for b in rnd.bad["case_closure"]]
    entries.sort(key=lambda e: (e[1] if e[0] == "good" else e[1].entity).number)
    rows = [
        [i + 1, (obj if kind == "good" else obj.entity).number, "已销号", date]
        for i, (kind, obj, date) in enumerate(entries)
    ]
    (out_dir / rel).write_bytes(_csv_bytes(_CLOSURE_HEADERS, rows, "utf-8-sig"))
    sheet = Path(rel).stem
    rec.sheet(sheet, 1, len(rows))
    for i, (kind, obj, _) in enumerate(entries):
        if kind == "bad":
            rec.bad(sheet, i + 2, obj, "销号时间")
    return rec.done(entities=len(rnd.closures))


# ---------------------------------------------------------------------------------------------
# entry points

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
    stamp = f"{_fill_date(night):%Y%m%d}"
    return {
        "hardship_adjustment": f"civil_affairs/特困家庭动态调整名单_{stamp}.xlsx",
        "cadre_change": f"organization/干部变动名单_{stamp}.xlsx",
        "case_closure": f"petition/信访案件销号名单_{stamp}.csv",
    }


def _state(pop: _Population) -> tuple[dict, dict]:
    def ids(items) -> list[str]:
        return sorted(x.head.id18 for x in items)

    cadres_by_rank = {
        r: sorted(c.person.id18 for c in pop.cadres if c.rank == r) for r in ("county", "section", "ordinary")
    }
    active = {
        "households": {
            "hardship": ids(pop.hardship),
            "orphan": ids(pop.orphan),
            "old_member": ids(pop.old_member),
        },
        "cadres": cadres_by_rank,
        "open_cases": sorted(c.number for c in pop.cases),
        "closed_cases": sorted(c.number for c in pop.closed_cases),
    }
    counts = {
        "households": {
            "hardship": len(pop.hardship),
            "orphan": len(pop.orphan),
            "old_member": len(pop.old_member),
            "total": len(pop.hardship) + len(pop.orphan) + len(pop.old_member),
        },
        "orphan_children": sum(len(f.children) for f in pop.orphan),
        "cadres": {**{r: len(v) for r, v in cadres_by_rank.items()}, "total": len(pop.cadres)},
        "cases": {
            "open": len(pop.cases),
            "closed": len(pop.closed_cases),
            "total": len(pop.cases) + len(pop.closed_cases),
        },
    }
    return counts, active


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

    pop, reg = _build_population(seed, scale)
    base = {"hardship": len(pop.hardship), "cadres": len(pop.cadres), "cases": len(pop.cases)}
    rnd: _Round | None = None
    for n in range(2, night + 1):
        rnd = _apply_round(pop, reg, seed, n, base)

    for dept in spec.DEPARTMENTS:
        (out_dir / dept).mkdir(parents=True, exist_ok=True)
    fill = _fill_date(night)
    files = night_files(night)

    def wrng(rel: str) -> random.Random:
        return random.Random(f"{seed}:write:{night}:{rel}")

    written: dict[str, FileTruth] = {}
    if night == 1:
        # the writers read the night-1 population, so write before anything mutates it
        rel = files["hardship"]
        written[rel] = _write_hardship(out_dir, rel, pop, wrng(rel), fill)
        written[files["orphan"]] = _write_orphan(out_dir, files["orphan"], pop, wrng(files["orphan"]), fill)
        written[files["cadre"]] = _write_cadres(out_dir, files["cadre"], pop, wrng(files["cadre"]), fill)
        written[files["old_member"]] = _write_old_members(
            out_dir, files["old_member"], pop, wrng(files["old_member"])
        )
        written[files["case"]] = _write_cases(out_dir, files["case"], pop, wrng(files["case"]))
        changes = {
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
        written[rel] = _write_adjustments(out_dir, rel, rnd, pop, wrng(rel))
        rel = files["cadre_change"]
        written[rel] = _write_cadre_changes(out_dir, rel, rnd, pop, wrng(rel))
        rel = files["case_closure"]
        written[rel] = _write_closures(out_dir, rel, rnd, wrng(rel))
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

    counts, active = _state(pop)
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
    for rel, f in truth.files.items():
        print(f"{rel}\t{f.format}\trows={f.rows}\tgood={f.good_rows}\tbad={len(f.bad_rows)}")
    c = truth.counts
    print(
        f"households={c['households']['total']} cadres={c['cadres']['total']} open_cases={c['cases']['open']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
