"""The synthetic district's people: households, cadres, petition cases, and the nights' changes.

:func:`build_population` makes night 1's population (the reference counts of
``config/district.json`` times ``scale``, plus the deliberately bad and warning rows);
:func:`apply_round` applies one later night's changes to it (exits, additions, departures, joins,
closures, with that night's bad rows); :func:`state` is the counts and ID lists a correct pipeline
must reach. Everything is drawn from seeded ``random.Random`` streams: same seed and scale, same
people. The writers (:mod:`rosterlink.synthetic.writers`) turn them into files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypedDict, TypeVar

from rosterlink.core import idnumber, spec
from rosterlink.synthetic.truth import Active, Counts

NIGHT1_FILL_DATE = dt.date(2026, 11, 20)

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
_SURNAMES_OTHER = (
    "郑梁谢宋唐许韩冯邓曹彭田董袁于蒋蔡杜程魏苏吕丁任姚卢姜崔谭范金石贾夏付方白邹"  # one string, two lines
    "孟秦邱尹薛闫段侯史陶褚颜孔种满"
)
_GIVEN = {
    ("adult", "M"): (
        "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊旭宁龙林东亮成建国庆文志海山峰"
        "玉德兴福贵昌春永广新学民金宝生长友振家利全"
    ),
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
RANK_ORDER = ("正县级", "副县级", "正科级", "副科级", "科员", "办事员", "一般干部")
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
MOBILE_PREFIXES = (
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


def weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    """One of ``pairs``' names, drawn with the pairs' weights."""
    return rng.choices([p[0] for p in pairs], weights=[p[-1] for p in pairs])[0]


# ---------------------------------------------------------------------------------------------
# population


@dataclass
class Person:
    """One synthetic person: name, canonical 18-digit ID, sex."""

    name: str
    id18: str
    sex: str  # "M" | "F"


@dataclass
class Household:
    """A hardship household (head), an orphan family (guardian and children) or a pre-1949 member."""

    category: str  # hardship | orphan | old_member
    head: Person  # hardship head / orphan guardian / old member
    town: str
    village: str
    phone: str | None
    size: int = 1
    cause: str = ""
    income: float = 0.0
    relation: str = ""
    children: list[tuple[Person, str]] = field(default_factory=list)  # (child, situation)
    id15: str | None = None
    joined: dt.date | None = None


@dataclass
class Cadre:
    """A cadre as the organisation department lists them (unit, post, rank, the town they help)."""

    person: Person
    unit: str
    post: str
    rank_label: str
    linked_town: str
    phone: str | None

    @property
    def rank(self) -> str:
        """The rank's code (county / section / ordinary)."""
        return _RANK_CODE[self.rank_label]


@dataclass
class Case:
    """A key petition case (number XF<year>-<seq>, petitioner, topic, responsible unit)."""

    number: str
    petitioner: Person
    town: str
    topic: str
    summary: str
    unit: str
    registered: dt.date
    status: str


Entity = TypeVar("Entity", Household, Cadre, Case)


class BadExtra(TypedDict, total=False):
    """What a bad row needs besides its entity."""

    person: Person  # numeric_id: whose ID, stored as a number, loses its last digits
    type: str  # night >= 2: the change type written on the row (退出, 新增, 调离)
    reason: str  # hardship adjustment: the reason written on the row
    value: str  # bad_date: the malformed date text
    date: dt.date  # night >= 2, a fresh person's row: the change date


@dataclass
class Bad(Generic[Entity]):
    """A row that must be rejected: ``kind`` (one of ``BAD_KINDS``) in ``field`` of ``entity``'s row."""

    kind: str
    field: str
    entity: Entity  # a fresh one (or, night >= 2, an existing one)
    extra: BadExtra = dataclasses.field(default_factory=lambda: BadExtra())


class NightOneBad(TypedDict):
    """Night 1's bad rows, by roster kind."""

    hardship: list[Bad[Household]]
    orphan: list[Bad[Household]]
    cadre: list[Bad[Cadre]]
    old_member: list[Bad[Household]]
    case: list[Bad[Case]]


class RoundBad(TypedDict):
    """A later night's bad rows, by roster kind."""

    hardship_adjustment: list[Bad[Household]]
    cadre_change: list[Bad[Cadre]]
    case_closure: list[Bad[Case]]


def no_bad_rows() -> NightOneBad:
    """Night-1 bad rows of no roster (for writing a population's files without them)."""
    return {"hardship": [], "orphan": [], "cadre": [], "old_member": [], "case": []}


class _Places(TypedDict):
    towns: tuple[str, ...]
    weights: list[float]
    villages: dict[str, list[str]]


class Registry:
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
    ) -> Person:
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
        return Person(self.name(rng, style, sex, surname), id18, sex)

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
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _phone(rng: random.Random, none_share: float = 0.04) -> str | None:
    return None if rng.random() < none_share else _mobile(rng)


def _scaled(value: int, scale: float) -> int:
    return max(1, round(value * scale))


@dataclass
class Population:
    """The district's entities now, night 1's bad rows and the warning rows (see :func:`build_population`)."""

    towns: tuple[str, ...]
    villages: dict[str, list[str]]
    hardship: list[Household]
    orphan: list[Household]
    old_member: list[Household]
    cadres: list[Cadre]
    cases: list[Case]
    bad: NightOneBad  # roster kind -> night-1 bad rows
    namesakes: list[list[str]]
    picker: PostPicker = field(default_factory=lambda: PostPicker())
    # roster kind -> entity key (head/guardian/cadre ID, case number) -> (kind, field, value to write)
    warn: dict[str, dict[str, tuple[str, str, object]]] = field(default_factory=dict)
    closed_cases: list[Case] = field(default_factory=list)

    def warned(self) -> set[str]:
        """Keys (IDs, case numbers) of the entities whose night-1 row carries a warning."""
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


def _hardship_household(
    rng: random.Random,
    reg: Registry,
    towns: tuple[str, ...],
    weights: list[float],
    villages: dict[str, list[str]],
    *,
    town: str | None = None,
    region: str | None = None,
) -> Household:
    head = reg.person(rng, born=(1938, 1996), sex="M" if rng.random() < 0.7 else "F", region=region)
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    return Household(
        category="hardship",
        head=head,
        town=town,
        village=village,
        phone=_phone(rng),
        size=rng.choices([1, 2, 3, 4, 5, 6], weights=[22, 30, 22, 15, 8, 3])[0],
        cause=weighted(rng, _CAUSES),
        income=rng.randrange(180, 720) * 10 + (rng.choice((0.5, 0.25, 0.8)) if rng.random() < 0.08 else 0.0),
    )


def _orphan_family(
    rng: random.Random,
    reg: Registry,
    towns: tuple[str, ...],
    weights: list[float],
    villages: dict[str, list[str]],
    *,
    children: int = 1,
    town: str | None = None,
    region: str | None = None,
) -> Household:
    relation = weighted(rng, _RELATION_WEIGHTS)
    sex, born, same_surname = _RELATIONS[relation]
    guardian = reg.person(rng, born=born, sex=sex, region=region)
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    kids: list[tuple[Person, str]] = []
    for _ in range(children):
        surname = guardian.name[0] if same_surname and guardian.name else None
        child = reg.person(rng, born=(2009, 2022), style="child", surname=surname, home_share=0.95)
        kids.append((child, rng.choice(_SITUATIONS)))
    return Household(
        category="orphan",
        head=guardian,
        town=town,
        village=village,
        phone=_phone(rng, 0.02),
        relation=relation,
        children=kids,
    )


def _old_member(
    rng: random.Random,
    reg: Registry,
    towns: tuple[str, ...],
    weights: list[float],
    villages: dict[str, list[str]],
    *,
    legacy: bool,
    town: str | None = None,
    region: str | None = None,
) -> Household:
    sex = "M" if rng.random() < 0.85 else "F"
    person = reg.person(rng, born=(1914, 1931), style="old", sex=sex, home_share=0.95, region=region)
    born = idnumber.birth_date(person.id18)
    assert born is not None  # a generated ID carries its birth date
    earliest = max(dt.date(1937, 1, 1), dt.date(born.year + 16, born.month, 1))
    latest = dt.date(1949, 9, 30)
    joined = earliest + dt.timedelta(days=rng.randrange((latest - earliest).days + 1))
    town = town or rng.choices(towns, weights=weights)[0]
    village = rng.choice(villages[town]) if town in villages else rng.choice(_VILLAGE_FIRST) + "庄村"
    r = rng.random()
    landline = f"0632-{rng.choice('3678')}{rng.randrange(10**6):06d}"
    phone = None if r < 0.1 else (landline if r < 0.3 else _mobile(rng))
    id15 = person.id18[:6] + person.id18[8:17] if legacy else None
    return Household(
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


class PostPicker:
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


def unit_order(towns: tuple[str, ...]) -> dict[str, int]:
    """Unit -> its place in a cadre roster (leadership, departments, then the towns' governments)."""
    order = list(_LEADERSHIP_UNITS) + list(_DEPARTMENTS) + [_town_gov(t) for t in towns]
    return {u: i for i, u in enumerate(order)}


def _new_cadre(
    rng: random.Random,
    reg: Registry,
    towns: tuple[str, ...],
    picker: PostPicker,
    rank_label: str,
    *,
    linked_town: str | None = None,
    born: tuple[int, int] | None = None,
    digits_only: bool = False,
) -> Cadre:
    units, weights = _cadre_units(towns)
    unit = rng.choices(units, weights=weights)[0]
    is_town = not unit.startswith(("区", "团区"))
    town_of_unit = next((t for t in towns if _town_gov(t) == unit), None)
    post = picker.pick(rng, unit, rank_label, is_town, bool(town_of_unit and town_of_unit.endswith("街道")))
    born = born or ((1968, 1995) if rank_label in ("正科级", "副科级") else (1975, 2002))
    person = reg.person(rng, born=born, sex="M" if rng.random() < 0.68 else "F", digits_only=digits_only)
    linked = linked_town or town_of_unit or rng.choice(towns)
    return Cadre(person, unit, post, rank_label, linked, _phone(rng, 0.0))


def case_number(year: int, seq: int) -> str:
    """The petition office's case number: ``XF2026-0007``."""
    return f"XF{year}-{seq:04d}"


def new_case(
    rng: random.Random,
    reg: Registry,
    towns: tuple[str, ...],
    *,
    registered: dt.date,
    town: str | None = None,
    region: str | None = None,
) -> Case:
    """A fresh open case registered on ``registered`` (its number is given later, in registration order)."""
    town = town or rng.choice(towns)
    topic = rng.choice(list(_TOPICS))
    summary, unit = rng.choice(_TOPICS[topic])
    person = reg.person(rng, born=(1950, 1995), sex="M" if rng.random() < 0.6 else "F", region=region)
    unit = unit.format(town=_town_gov(town) if town in towns else town)
    return Case(
        "", person, town, topic, summary, unit, registered, "在办" if rng.random() < 0.85 else "办理中"
    )


def _numeric_id_person(rng: random.Random, reg: Registry, *, born: tuple[int, int]) -> Person:
    """A person whose ID, once stored as a double, loses digits and fails the checksum."""
    while True:
        p = reg.person(rng, digits_only=True, born=born)
        rounded = str(int(float(int(p.id18))))
        if rounded != p.id18 and not idnumber.is_valid_checksum(rounded):
            return p


def build_population(seed: int, scale: float) -> tuple[Population, Registry]:
    """Night 1's district: ``config/district.json``'s reference counts times ``scale``, seeded by ``seed``."""
    district = spec.district()
    towns = district.towns
    ref = district.reference_counts
    rng = random.Random(f"{seed}:population")
    reg = Registry(district)
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
    picker = PostPicker()
    cadres: list[Cadre] = []
    for i in range(n_county):
        unit, post, rank_label = (
            _COUNTY_POSTS[i]
            if i < len(_COUNTY_POSTS)
            else _COUNTY_REPEAT[(i - len(_COUNTY_POSTS)) % len(_COUNTY_REPEAT)]
        )
        person = reg.person(rng, born=(1965, 1982), sex="M" if rng.random() < 0.8 else "F")
        cadres.append(Cadre(person, unit, post, rank_label, "", _phone(rng, 0.0)))
    for _ in range(n_section):
        rank_label = "正科级" if rng.random() < 0.4 else "副科级"
        cadres.append(_new_cadre(rng, reg, towns, picker, rank_label, linked_town="-"))
    for _ in range(n_ordinary):
        cadres.append(
            _new_cadre(
                rng, reg, towns, picker, weighted(rng, [(r, w) for _, r, w in _ORDINARY]), linked_town="-"
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
        cases.append(new_case(rng, reg, towns, registered=day))

    # night-1 bad rows: fresh people, one known defect each
    def outside() -> tuple[str, str]:
        return rng.choice(OUTSIDE_TOWNS)

    hw: _Places = {"towns": towns, "weights": weights, "villages": villages}
    o_town, o_region = outside()
    bad_hardship: list[Bad[Household]] = [
        Bad(
            "numeric_id",
            "head_id_number",
            _hardship_household(rng, reg, **hw),
            {"person": _numeric_id_person(rng, reg, born=(1950, 1990))},
        ),
        Bad("bad_checksum", "head_id_number", _hardship_household(rng, reg, **hw)),
        Bad("bad_length", "head_id_number", _hardship_household(rng, reg, **hw)),
        Bad("town_outside", "town", _hardship_household(rng, reg, **hw, town=o_town, region=o_region)),
        Bad("empty_name", "head_name", _hardship_household(rng, reg, **hw)),
        Bad("formula_name", "head_name", _hardship_household(rng, reg, **hw)),
    ]
    o_town, o_region = outside()
    bad_orphan: list[Bad[Household]] = [
        Bad(
            "numeric_id",
            "guardian_id_number",
            _orphan_family(rng, reg, **hw),
            {"person": _numeric_id_person(rng, reg, born=(1950, 1970))},
        ),
        Bad("bad_checksum", "guardian_id_number", _orphan_family(rng, reg, **hw)),
        Bad("town_outside", "town", _orphan_family(rng, reg, **hw, town=o_town, region=o_region)),
        Bad("empty_name", "child_name", _orphan_family(rng, reg, **hw)),
        Bad("formula_name", "guardian_name", _orphan_family(rng, reg, **hw)),
    ]
    bad_cadre: list[Bad[Cadre]] = [
        Bad(
            "numeric_id",
            "id_number",
            _new_cadre(rng, reg, towns, picker, "副科级", digits_only=True),
            {"person": _numeric_id_person(rng, reg, born=(1970, 1995))},
        ),
        Bad("bad_checksum", "id_number", _new_cadre(rng, reg, towns, picker, "科员")),
        Bad("bad_length", "id_number", _new_cadre(rng, reg, towns, picker, "副科级")),
        Bad("empty_name", "name", _new_cadre(rng, reg, towns, picker, "正科级")),
        Bad("formula_name", "name", _new_cadre(rng, reg, towns, picker, "办事员")),
        Bad("missing_required", "rank", _new_cadre(rng, reg, towns, picker, "副科级")),
    ]
    o_town, o_region = outside()
    bad_old_member: list[Bad[Household]] = [
        Bad("numeric_id_text", "id_number", _old_member(rng, reg, **hw, legacy=False)),
        Bad("bad_checksum", "id_number", _old_member(rng, reg, **hw, legacy=False)),
        Bad("bad_birthdate", "id_number", _old_member(rng, reg, **hw, legacy=True)),
        Bad("town_outside", "town", _old_member(rng, reg, **hw, legacy=False, town=o_town, region=o_region)),
        Bad("formula_name", "name", _old_member(rng, reg, **hw, legacy=False)),
    ]
    o_town, o_region = outside()

    def bad_case_day() -> dt.date:
        return dt.date(2025, 6, 1) + dt.timedelta(days=rng.randrange(500))

    bad_case: list[Bad[Case]] = [
        Bad("bad_checksum", "petitioner_id_number", new_case(rng, reg, towns, registered=bad_case_day())),
        Bad(
            "town_outside",
            "town",
            new_case(rng, reg, towns, registered=bad_case_day(), town=o_town, region=o_region),
        ),
        Bad("empty_name", "petitioner_name", new_case(rng, reg, towns, registered=bad_case_day())),
        Bad("formula_name", "petitioner_name", new_case(rng, reg, towns, registered=bad_case_day())),
        Bad("numeric_id_text", "petitioner_id_number", new_case(rng, reg, towns, registered=bad_case_day())),
    ]
    for bad_row in bad_case:
        if bad_row.kind == "town_outside":
            bad_row.entity.unit = "区信访局"
    bad: NightOneBad = {
        "hardship": bad_hardship,
        "orphan": bad_orphan,
        "cadre": bad_cadre,
        "old_member": bad_old_member,
        "case": bad_case,
    }
    # number all cases (good and bad) per year in registration order
    all_cases = sorted(cases + [b.entity for b in bad_case], key=lambda c: (c.registered, c.petitioner.id18))
    per_year: dict[int, int] = {}
    for case in all_cases:
        per_year[case.registered.year] = per_year.get(case.registered.year, 0) + 1
        case.number = case_number(case.registered.year, per_year[case.registered.year])

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
        h_region.head = Person(h_region.head.name, moved.id18, h_region.head.sex)
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
        warned_case = rng.choice(cases)
        bad_day = f"{warned_case.registered.year}年13月{warned_case.registered.day}日"
        warn["case"][warned_case.number] = ("bad_date", "registered_date", bad_day)

    pop = Population(towns, villages, hardship, orphan, old, cadres, cases, bad, namesakes, picker, warn)
    return pop, reg


@dataclass
class Round:
    """One later night's changes (already applied to the population) and its bad rows."""

    night: int
    fill_date: dt.date
    exits: list[tuple[Household, str, str, dt.date]]  # household, 退出/脱困, reason, date
    adds: list[tuple[Household, str, dt.date]]  # household, reason, date
    departures: list[tuple[Cadre, str, dt.date]]  # cadre, 调离/退休, date
    joins: list[tuple[Cadre, dt.date]]
    closures: list[tuple[Case, dt.date]]
    bad: RoundBad


def fill_date(night: int) -> dt.date:
    """The date the offices fill night ``night``'s files (night 1: 2026-11-20, then a day a night)."""
    return NIGHT1_FILL_DATE + dt.timedelta(days=night - 1)


def apply_round(pop: Population, reg: Registry, seed: int, night: int, base: dict[str, int]) -> Round:
    """Night >= 2: pick changes among the active population and apply them to ``pop``."""
    rng = random.Random(f"{seed}:round:{night}")
    fill = fill_date(night)
    towns = pop.towns
    weights = [1.0] * len(towns)
    hw: _Places = {"towns": towns, "weights": weights, "villages": pop.villages}

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
            cadre = Cadre(person, "区政府", "副区长", "副县级", rng.choice(towns), _phone(rng, 0.0))
        else:
            ordinary = weighted(rng, [(x, w) for _, x, w in _ORDINARY])
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
    bad: RoundBad = {"hardship_adjustment": [], "cadre_change": [], "case_closure": []}
    if stay_h:
        bad["hardship_adjustment"].append(
            Bad(
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
        Bad(
            "bad_checksum",
            "head_id_number",
            _hardship_household(rng, reg, **hw),
            {"type": "新增", "reason": "经排查新认定", "date": day()},
        )
    )
    if stay_c:
        bad["cadre_change"].append(
            Bad(
                "bad_date",
                "change_date",
                rng.choice(stay_c),
                {"type": "调离", "value": rng.choice(("2026年11月31日", "近期", "2026.13.2"))},
            )
        )
    bad["cadre_change"].append(
        Bad(
            "bad_checksum",
            "id_number",
            _new_cadre(rng, reg, towns, picker, "科员", linked_town=rng.choice(towns)),
            {"type": "新增", "date": day()},
        )
    )
    if stay_k:
        bad["case_closure"].append(
            Bad("bad_date", "closure_date", rng.choice(stay_k), {"value": rng.choice(("待定", "2026.11.31"))})
        )

    # apply
    pop.hardship = [h for h in pop.hardship if h.head.id18 not in exiting] + [h for h, *_ in adds]
    pop.cadres = [c for c in pop.cadres if c.person.id18 not in leaving] + [c for c, _ in joins]
    pop.closed_cases += [c for c, _ in closures]
    pop.cases = [c for c in pop.cases if c.number not in closing]
    for case, _ in closures:
        case.status = "已销号"
    return Round(night, fill, exits, adds, departures, joins, closures, bad)


def state(pop: Population) -> tuple[Counts, Active]:
    """The counts and sorted ID lists a correct pipeline must reach for ``pop`` (the truth's shape)."""

    def ids(items: list[Household]) -> list[str]:
        return sorted(x.head.id18 for x in items)

    cadres_by_rank: dict[str, list[str]] = {
        r: sorted(c.person.id18 for c in pop.cadres if c.rank == r) for r in ("county", "section", "ordinary")
    }
    active: Active = {
        "households": {
            "hardship": ids(pop.hardship),
            "orphan": ids(pop.orphan),
            "old_member": ids(pop.old_member),
        },
        "cadres": cadres_by_rank,
        "open_cases": sorted(c.number for c in pop.cases),
        "closed_cases": sorted(c.number for c in pop.closed_cases),
    }
    counts: Counts = {
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
