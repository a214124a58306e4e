"""A believable Xuzhou for the demo: parks, projects, firms, 43 cadres, departments, campaigns,
months of visits and problems whose outcome mix follows the article, and a dozen referrals
(交办单) in every state, so that the scheduler `make run` starts has reminders, escalations and
a progress check to send at once.

Deterministic (a fixed random seed), and loaded once: running it again changes nothing.
The text generators are reused by bench/ to build the large data sets.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.enums import (
    ParkType,
    ProblemCategory,
    ProblemOutcome,
    ProblemStatus,
    Role,
    ServiceCategory,
    TargetKind,
)
from schemas.followups import Satisfaction
from server.db.followup_models import FollowUp, ReferralProblem
from server.db.models import (
    AuditEntry,
    Campaign,
    Department,
    PortfolioEntry,
    Problem,
    SearchEntry,
    Target,
    User,
    Visit,
)
from server.domain.periods import SHANGHAI
from server.domain.problems import status_for
from server.domain.referrals import ReferralAction
from server.domain.search import index_tokens
from server.domain.workdays import WorkCalendar
from server.services import audit, followups, referrals
from server.services.actors import SYSTEM, Actor
from server.services.auth import hash_password
from server.services.calendar import load_calendar

DEMO_PASSWORD = "xuzhou-demo-2026"
# Audit entries ("seed", mark) that say what the demo has loaded in a database.
DEMO_MARK = "demo"
REFERRALS_MARK = "demo_referrals"
# One account per role, shown by `make run` and in the README.
DEMO_ACCOUNTS = [
    ("admin", Role.admin, "系统管理员"),
    ("supervisor", Role.supervisor, "督查人员（科室负责人）"),
    ("cadre01", Role.cadre, "干部"),
    ("dept-rsj", Role.department_staff, "部门联络员（市人社局）"),
]

DEPARTMENTS = [
    ("yingshang", "市营商办", "营商办"),
    ("fgw", "市发展和改革委员会", "发改委"),
    ("rsj", "市人力资源和社会保障局", "人社局"),
    ("zjj", "市住房和城乡建设局", "住建局"),
    ("zrzy", "市自然资源和规划局", "自然资源和规划局"),
    ("sthj", "市生态环境局", "生态环境局"),
    ("swj", "国家税务总局徐州市税务局", "税务局"),
    ("hg", "徐州海关", "海关"),
    ("jrjg", "市地方金融监督管理局", "金融监管局"),
    ("kjj", "市科学技术局", "科技局"),
    ("jtj", "市交通运输局", "交通运输局"),
    ("swuj", "市商务局", "商务局"),
    ("gdgs", "国网徐州供电公司", "供电公司"),
]

# Which department a problem of each category usually goes to.
CATEGORY_DEPARTMENT = {
    ProblemCategory.financing: "jrjg",
    ProblemCategory.labor: "rsj",
    ProblemCategory.talent_housing: "zjj",
    ProblemCategory.land: "zrzy",
    ProblemCategory.approval: "yingshang",
    ProblemCategory.environment: "sthj",
    ProblemCategory.tariff: "hg",
    ProblemCategory.tax: "swj",
    ProblemCategory.logistics: "jtj",
    ProblemCategory.energy: "gdgs",
    ProblemCategory.market: "swuj",
    ProblemCategory.technology: "kjj",
    ProblemCategory.policy: "fgw",
    ProblemCategory.other: "yingshang",
}

PARKS = [
    ("徐州经济技术开发区", ParkType.national_zone, "经开区"),
    ("徐州高新技术产业开发区", ParkType.national_zone, "铜山区"),
    ("徐州淮海国际港务区", ParkType.provincial_zone, "铜山区"),
    ("徐州工业园区", ParkType.provincial_zone, "鼓楼区"),
    ("徐州泉山经济开发区", ParkType.provincial_zone, "泉山区"),
    ("徐州云龙经济开发区", ParkType.provincial_zone, "云龙区"),
    ("徐州鼓楼高新技术产业开发区", ParkType.provincial_zone, "鼓楼区"),
    ("徐州贾汪经济开发区", ParkType.provincial_zone, "贾汪区"),
    ("邳州经济开发区", ParkType.provincial_zone, "邳州市"),
    ("邳州高新技术产业开发区", ParkType.provincial_zone, "邳州市"),
    ("新沂经济开发区", ParkType.provincial_zone, "新沂市"),
    ("新沂高新技术产业开发区", ParkType.provincial_zone, "新沂市"),
    ("沛县经济开发区", ParkType.provincial_zone, "沛县"),
    ("丰县经济开发区", ParkType.provincial_zone, "丰县"),
    ("睢宁经济开发区", ParkType.provincial_zone, "睢宁县"),
    ("徐州软件园", ParkType.software_park, "泉山区"),
    ("徐州鼓楼信息软件产业园", ParkType.software_park, "鼓楼区"),
    ("淮海科技城软件园", ParkType.software_park, "铜山区"),
    ("徐州云计算大数据产业园", ParkType.software_park, "经开区"),
    ("徐州经开区信息服务产业园", ParkType.software_park, "经开区"),
]

INDUSTRIES = [
    "工程机械",
    "新能源",
    "集成电路",
    "生物医药",
    "高端装备",
    "新材料",
    "安全应急",
    "现代物流",
    "食品加工",
    "纺织服装",
]
_FIRM_WORDS = [
    "华宇",
    "恒信",
    "金龙",
    "汉云",
    "鑫泰",
    "远航",
    "中汇",
    "博瑞",
    "宏达",
    "天成",
    "润禾",
    "新元",
    "协鑫",
    "鼎盛",
    "永安",
    "嘉和",
    "瑞丰",
    "海川",
    "立信",
    "东方",
]
_FIRM_TAILS = [
    "机械有限公司",
    "新能源科技有限公司",
    "半导体材料有限公司",
    "生物科技有限公司",
    "智能装备有限公司",
    "新材料股份有限公司",
    "应急装备有限公司",
    "物流有限公司",
    "食品有限公司",
    "纺织有限公司",
]
_PROJECT_KINDS = [
    "年产{n}万台{x}项目",
    "{x}智能制造产业园项目",
    "{x}技改扩能项目",
    "年产{n}万吨{x}材料项目",
    "{x}研发中心建设项目",
]
_PRODUCTS = {
    "工程机械": "挖掘机", "新能源": "光伏组件", "集成电路": "晶圆", "生物医药": "原料药", "高端装备": "数控机床",
    "新材料": "碳纤维", "安全应急": "应急救援装备", "现代物流": "冷链", "食品加工": "预制菜", "纺织服装": "功能面料",
}  # fmt: skip
_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓"
    "许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭"
)
_GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "涛",
    "明",
    "超",
    "秀英",
    "华",
    "慧",
    "建国",
    "志强",
    "海燕",
    "晓东",
    "文博",
    "思远",
    "立新",
    "春梅",
    "国庆",
    "红军",
]
_TITLES = ["副科长", "科长", "副处长", "副调研员", "四级调研员", "三级主任科员"]

PROBLEM_TEXT = {
    ProblemCategory.financing: [
        "企业反映融资难融资贵，流动资金贷款利率偏高，希望协调银行续贷{n}万元。",
        "受订单回款周期影响，企业资金链紧张，希望对接政银企合作平台争取授信{n}万元。",
        "企业申请的技改贷款审批周期长，抵押物评估值偏低，融资成本增加。",
    ],
    ProblemCategory.labor: [
        "企业招工难，一线技术工人缺口约{n}人，招工及用工成本增加明显。",
        "新建产线投产在即，熟练焊工和数控操作工短缺约{n}人，希望协助对接职业院校。",
        "社保缴费基数上调后用工成本上升，希望了解稳岗补贴申领政策。",
    ],
    ProblemCategory.talent_housing: [
        "引进的{n}名研发骨干住房困难，希望落实人才住房支持和人才公寓。",
        "企业高层次人才子女入学和住房补贴兑现慢，影响人才稳定。",
    ],
    ProblemCategory.land: [
        "二期项目用地指标尚未落实，约{n}亩，影响项目开工。",
        "厂区周边道路规划调整，企业扩建用地手续无法办理。",
    ],
    ProblemCategory.approval: [
        "项目施工许可审批进度慢，材料反复补正，希望提供代办服务。",
        "新产品生产许可证办理周期长，希望容缺预审、加快办理。",
    ],
    ProblemCategory.environment: [
        "重污染天气应急管控期间被要求限产，希望实行环保差别化管控。",
        "企业环评批复与实际产能不符，需办理变更，希望指导。",
    ],
    ProblemCategory.tariff: [
        "出口美国产品关税过高，海外订单下降约{n}%。",
        "进口关键零部件关税较高，希望了解加工贸易保税政策。",
    ],
    ProblemCategory.tax: [
        "希望落实研发费用加计扣除等税收优惠减免政策。",
        "企业反映留抵退税到账慢，希望税务部门加快办理。",
    ],
    ProblemCategory.logistics: [
        "物流成本高，希望开通铁水联运线路，降低运输费用。",
        "大件设备运输通行证办理难，影响交货期。",
    ],
    ProblemCategory.energy: [
        "新增产线用电容量不足，需增容{n}千伏安。",
        "天然气供应价格上涨，希望协调用气保障。",
    ],
    ProblemCategory.market: ["产品市场开拓难，希望参加市里组织的产销对接会。"],
    ProblemCategory.technology: ["企业研发中心申报省级工程技术研究中心，希望给予指导。"],
    ProblemCategory.policy: ["《关于支持民营经济健康发展的若干意见》相关扶持资金尚未兑现。"],
    ProblemCategory.other: ["厂区周边公交线路少，职工通勤不便。"],
}

_VISIT_OPENERS = [
    "走访{t}，与企业负责人座谈，了解企业生产经营情况和发展思路。",
    "深入{t}开展“三走进三服务”活动，实地察看生产车间和在建项目。",
    "到{t}开展贴身服务、上门服务，听取企业诉求。",
]
_VISIT_FACTS = [
    "企业今年预计实现产值{n}亿元，同比增长{p}%。",
    "项目已完成投资{n}亿元，主体厂房基本完工，计划年内竣工投产。",
    "企业订单饱满，生产线满负荷运转，但原材料价格上涨压缩利润空间。",
    "企业正在申报高新技术企业，研发投入占销售收入的{p}%。",
]
_VISIT_SERVICE = {
    ServiceCategory.research: "详细了解企业发展中遇到的困难和问题。",
    ServiceCategory.project_progress: "协调推进项目建设，确保早开工、早投产、早达效。",
    ServiceCategory.tech_innovation: "宣讲技术改造和智能化改造支持政策，鼓励企业加大研发投入。",
    ServiceCategory.environmental_compliance: "指导企业落实环保要求，推进绿色生产。",
    ServiceCategory.enterprise_cultivation: "将企业纳入规上工业企业培育库，跟踪服务。",
    ServiceCategory.financial_support: "推介综合金融服务平台，组织银企对接。",
    ServiceCategory.burden_reduction: "宣讲减税降费和降本减负政策，确保政策落到实处。",
    ServiceCategory.publicity: "送政策上门，解读《关于支持民营经济健康发展的若干意见》。",
}
_SOLVED_NOTES = ["已协调{d}办理，问题已解决，企业表示满意。", "经{d}现场办公，问题已妥善解决。"]
_COORDINATING_NOTES = ["{d}正在协调解决，已制定工作方案，近期将再次对接。"]
_DEFERRED_REASONS = [
    "受国家宏观政策和国际贸易形势影响，暂不具备解决条件，已向企业做好解释。",
    "涉及国家税收政策调整，地方无权限，已向上级部门反映。",
]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def person_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + rng.choice(_GIVEN)


def problem_text(rng: random.Random, category: ProblemCategory) -> str:
    return rng.choice(PROBLEM_TEXT[category]).format(n=rng.randint(3, 800))


def visit_summary(rng: random.Random, target_name: str, services: list[ServiceCategory]) -> str:
    parts = [rng.choice(_VISIT_OPENERS).format(t=target_name)]
    parts.append(rng.choice(_VISIT_FACTS).format(n=rng.randint(1, 60), p=rng.randint(3, 30)))
    parts.extend(_VISIT_SERVICE[s] for s in services)
    return "".join(parts)


def working_moment(rng: random.Random, first: dt.date, last: dt.date) -> dt.datetime:
    """A weekday office-hours moment in Asia/Shanghai between the two days."""
    span = (last - first).days
    while True:
        day = first + dt.timedelta(days=rng.randint(0, span))
        if day.weekday() < 5:
            local = dt.datetime.combine(day, dt.time(rng.randint(8, 16), rng.randint(0, 59)), SHANGHAI)
            return local.astimezone(dt.UTC)


@dataclass
class CampaignPlan:
    code: str
    name: str
    starts_on: dt.date
    ends_on: dt.date
    solved: int
    coordinating: int
    deferred: int
    open: int = 0
    description: str = ""
    outcomes: list[ProblemOutcome | None] = field(default_factory=list)


def campaign_plans(today: dt.date) -> list[CampaignPlan]:
    """Three campaigns; the first two carry the article's figures, the newest has open problems.

    The first two lie in the last year whose October is over; the newest runs up to yesterday.
    """
    year = today.year if today >= dt.date(today.year, 11, 1) else today.year - 1
    yesterday = today - dt.timedelta(days=1)
    return [
        CampaignPlan(
            "qyfwy", "企业服务月", dt.date(year, 5, 1), dt.date(year, 5, 31), 2276, 321, 94,
            description="以走访调研、项目推进、技术创新、环保达标、企业培育、金融支持、助企减负、宣传对接为内容的服务活动。",
        ),
        CampaignPlan(
            "szjsfw", "三走进三服务", dt.date(year, 6, 1), dt.date(year, 10, 31), 182, 83, 0,
            description="走进项目、服务达产达效，走进企业、服务做大做强，走进园区、服务产业升级。",
        ),
        CampaignPlan(
            "zqtx", "政企同行", yesterday - dt.timedelta(days=75), yesterday, 40, 30, 5, open=45,
            description="政企对话、意见征询、诉求解决、银企对接、政策宣讲五个专题活动。",
        ),
    ]  # fmt: skip


def _outcome_list(plan: CampaignPlan, rng: random.Random) -> list[ProblemOutcome | None]:
    out: list[ProblemOutcome | None] = (
        [ProblemOutcome.solved] * plan.solved
        + [ProblemOutcome.coordinating] * plan.coordinating
        + [ProblemOutcome.deferred] * plan.deferred
        + [None] * plan.open
    )
    rng.shuffle(out)
    return out


def _category_for(outcome: ProblemOutcome | None, rng: random.Random) -> ProblemCategory:
    # The article: deferred are tariffs and tax relief; coordinating are financing, labour, housing.
    if outcome is ProblemOutcome.deferred:
        return rng.choice([ProblemCategory.tariff, ProblemCategory.tax])
    if outcome is ProblemOutcome.coordinating and rng.random() < 0.7:
        return rng.choice([ProblemCategory.financing, ProblemCategory.labor, ProblemCategory.talent_housing])
    return rng.choice(list(ProblemCategory))


def seed(session: Session, today: dt.date | None = None) -> bool:
    """Load the demo data unless it is there. Returns True when it loaded something.

    A demo database loaded before the demo had referrals gets them now, once.
    """
    today = today or dt.datetime.now(SHANGHAI).date()
    if session.scalar(select(User.id).where(User.username == "admin")) is not None:
        return _seeded(session, DEMO_MARK) and seed_referrals(session, today)
    _seed_people_and_visits(session, today)
    seed_referrals(session, today)
    return True


def _seeded(session: Session, mark: str) -> bool:
    """Whether the demo recorded `mark` (its audit entry) in this database."""
    query = select(AuditEntry.id).where(AuditEntry.action == "seed", AuditEntry.entity == mark).limit(1)
    return session.scalar(query) is not None


def _seed_people_and_visits(session: Session, today: dt.date) -> None:
    rng = random.Random(2026)
    pw = hash_password(DEMO_PASSWORD)

    departments = {
        code: Department(id=_uuid(rng), code=code, name=name, short_name=short, email=f"{code}@demo.xz.gov.cn",
                         head_name=person_name(rng), head_email=f"{code}-head@demo.xz.gov.cn")
        for code, name, short in DEPARTMENTS
    }  # fmt: skip
    session.add_all(departments.values())

    users = [User(id=_uuid(rng), username="admin", display_name="系统管理员", role=Role.admin, password_hash=pw)]
    users += [
        User(id=_uuid(rng), username=name, display_name=person_name(rng), role=Role.supervisor, password_hash=pw,
             title="督查科科长" if i == 0 else "督查科副科长", email=f"{name}@demo.xz.gov.cn")
        for i, name in enumerate(["supervisor", "supervisor2", "supervisor3"])
    ]  # fmt: skip
    cadres = [
        User(id=_uuid(rng), username=f"cadre{i:02d}", display_name=person_name(rng), role=Role.cadre,
             password_hash=pw, title=rng.choice(_TITLES), phone=f"1380516{i:04d}")
        for i in range(1, 44)
    ]  # fmt: skip
    users += cadres
    users += [
        User(id=_uuid(rng), username=f"dept-{code}", display_name=person_name(rng), role=Role.department_staff,
             department_id=dept.id, password_hash=pw, email=f"{code}-staff@demo.xz.gov.cn")
        for code, dept in departments.items()
    ]  # fmt: skip
    session.add_all(users)

    parks = [
        Target(id=_uuid(rng), kind=TargetKind.park, name=name, park_type=ptype, district=district,
               code=f"P{i:03d}", address=f"徐州市{district}")
        for i, (name, ptype, district) in enumerate(PARKS, start=1)
    ]  # fmt: skip
    session.add_all(parks)
    zones = [p for p in parks if p.park_type is not ParkType.software_park]
    projects, firms = [], []
    for i in range(1, 101):
        industry = rng.choice(INDUSTRIES)
        park = rng.choice(zones)
        name = rng.choice(_PROJECT_KINDS).format(n=rng.randint(1, 50), x=_PRODUCTS[industry])
        projects.append(
            Target(id=_uuid(rng), kind=TargetKind.project, name=f"{park.district}{name}（{i:03d}）", code=f"J{i:03d}",
                   park_id=park.id, district=park.district, industry=industry, address=f"{park.name}内")
        )  # fmt: skip
    used: set[str] = set()
    for i in range(1, 101):
        industry_index = rng.randrange(len(INDUSTRIES))
        park = rng.choice(parks)
        while True:
            name = "徐州" + rng.choice(_FIRM_WORDS) + rng.choice(_FIRM_WORDS) + _FIRM_TAILS[industry_index]
            if name not in used:
                used.add(name)
                break
        firms.append(
            Target(id=_uuid(rng), kind=TargetKind.firm, name=name, code=f"9132030{i:011d}", park_id=park.id,
                   district=park.district, industry=INDUSTRIES[industry_index], address=f"{park.name}内",
                   contact_name=person_name(rng), contact_phone=f"0516-8{rng.randint(1000000, 9999999)}")
        )  # fmt: skip
    session.add_all(projects + firms)
    targets = parks + projects + firms
    session.flush()

    # Every target is in one cadre's portfolio; cadre01 gets a full share too.
    shuffled = targets[:]
    rng.shuffle(shuffled)
    portfolio: dict[uuid.UUID, User] = {}
    for i, target in enumerate(shuffled):
        cadre = cadres[i % len(cadres)]
        portfolio[target.id] = cadre
        session.add(PortfolioEntry(id=_uuid(rng), user_id=cadre.id, target_id=target.id))

    for plan in campaign_plans(today):
        campaign = Campaign(id=_uuid(rng), code=plan.code, name=plan.name, starts_on=plan.starts_on,
                            ends_on=plan.ends_on, description=plan.description)  # fmt: skip
        session.add(campaign)
        session.flush()
        outcomes = _outcome_list(plan, rng)
        for visit, problems in _visits_for(rng, campaign, plan, outcomes, targets, portfolio, cadres, departments):
            session.add(visit)
            session.add(
                SearchEntry(kind="visit", record_id=visit.id, tokens=index_tokens(visit.summary, visit.location_text))
            )
            for problem in problems:
                session.add(problem)
                session.add(SearchEntry(kind="problem", record_id=problem.id, tokens=index_tokens(problem.description)))
        session.flush()
    audit.record(session, SYSTEM, "seed", DEMO_MARK, None, {"campaigns": [p.code for p in campaign_plans(today)]})


def _visits_for(
    rng: random.Random,
    campaign: Campaign,
    plan: CampaignPlan,
    outcomes: list[ProblemOutcome | None],
    targets: list[Target],
    portfolio: dict[uuid.UUID, User],
    cadres: list[User],
    departments: dict[str, Department],
) -> Iterator[tuple[Visit, list[Problem]]]:
    """Visits of one campaign, with 0-3 problems each, until every planned outcome is used."""
    remaining = list(outcomes)
    last = plan.ends_on
    while remaining:
        target = rng.choice(targets)
        cadre = portfolio.get(target.id) if rng.random() < 0.8 else rng.choice(cadres)
        cadre = cadre or rng.choice(cadres)
        services = rng.sample(list(ServiceCategory), rng.randint(1, 3))
        at = working_moment(rng, plan.starts_on, last)
        visit = Visit(
            id=_uuid(rng), campaign_id=campaign.id, cadre_id=cadre.id, target_id=target.id, visited_at=at,
            service_categories=[s.value for s in services], summary=visit_summary(rng, target.name, services),
            location_text=target.address, created_at=at, updated_at=at,
        )  # fmt: skip
        problems = []
        for position in range(min(len(remaining), rng.choice([0, 1, 1, 2, 2, 3]))):
            outcome = remaining.pop()
            category = _category_for(outcome, rng)
            dept = departments[CATEGORY_DEPARTMENT[category]]
            decided = at + dt.timedelta(days=rng.randint(3, 40))
            problem = Problem(
                id=_uuid(rng), visit_id=visit.id, position=position, campaign_id=campaign.id, target_id=target.id,
                cadre_id=cadre.id, raised_at=at, category=category, description=problem_text(rng, category),
                department_id=dept.id if outcome is not None else None, status=status_for(outcome),
                outcome=outcome, created_at=at, updated_at=decided if outcome else at,
            )  # fmt: skip
            if outcome is not None:
                problem.outcome_at = decided
            if outcome is ProblemOutcome.solved:
                problem.outcome_note = rng.choice(_SOLVED_NOTES).format(d=dept.short_name)
                problem.closed_at = decided
            elif outcome is ProblemOutcome.coordinating:
                problem.outcome_note = rng.choice(_COORDINATING_NOTES).format(d=dept.short_name)
            elif outcome is ProblemOutcome.deferred:
                problem.outcome_reason = rng.choice(_DEFERRED_REASONS)
                problem.closed_at = decided
            problems.append(problem)
        yield visit, problems


# Referrals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferralPlan:
    """A demo referral, made by the services at past moments counted in working days before today.

    `department` is the lead department wanted (by code): the plan takes an open problem of its
    field if there is one, else the next open problem and that problem's usual department.
    Moments are (working days before today, Beijing hour); `moves` are taken in order.
    """

    note: str
    department: str
    issued: tuple[int, int]
    workdays: int
    moves: tuple[tuple[str, int, int], ...] = ()
    co: tuple[str, ...] = ()


# On the seeding day's first sweep these send: sign reminders, a 督办 at 1 and at 5 working days
# overdue, a 催办 on the due day and one two working days ahead, and a progress check.
REFERRAL_PLANS = [
    ReferralPlan("closed solved, revisited: satisfied", "rsj", (25, 10), 8,
                 (("sign", 24, 9), ("solved", 19, 15), ("accept", 18, 10), ("revisit", 16, 11))),
    ReferralPlan("closed coordinating, its next step yesterday: a progress check", "jrjg", (20, 10), 10,
                 (("sign", 19, 9), ("coordinating", 12, 15), ("accept", 11, 10))),
    ReferralPlan("signed, 7 working days overdue: 督办 overdue-5", "rsj", (12, 15), 5, (("sign", 11, 9),),
                 co=("yingshang",)),
    ReferralPlan("closed solved on time: an open revisit for a cadre", "yingshang", (10, 10), 10,
                 (("sign", 9, 9), ("solved", 4, 16), ("accept", 3, 10))),
    ReferralPlan("answered, waiting for a supervisor's review", "kjj", (9, 10), 10,
                 (("sign", 8, 9), ("solved", 1, 16))),
    ReferralPlan("signed, more time asked for", "zrzy", (8, 10), 10, (("sign", 7, 9), ("extension", 1, 15))),
    ReferralPlan("never signed, 3 working days overdue: sign reminder and 督办 overdue-1", "gdgs", (6, 9), 3),
    ReferralPlan("signed, due today: 催办 due-day", "zjj", (5, 10), 5, (("sign", 4, 9),)),
    ReferralPlan("signed, in progress", "swuj", (4, 11), 15, (("sign", 3, 10),)),
    ReferralPlan("signed, due in two working days: 催办 before-2", "rsj", (3, 14), 5, (("sign", 2, 9),)),
    ReferralPlan("not signed past the time limit: sign reminder", "jrjg", (2, 10), 10),
    ReferralPlan("the department asks to return it", "fgw", (2, 16), 5, (("return", 1, 10),)),
]  # fmt: skip

_REQUIREMENTS = "请协调解决{target}反映的{category}问题，{workdays}个工作日内反馈办理结果。"
_SOLVED_ANSWER = "已与企业负责人对接，{d}现场办公协调，问题已解决，企业表示认可。"
_COORDINATING_ANSWER = "已召开专题协调会，{d}牵头梳理企业诉求，明确办理路径。"
_COORDINATING_PLAN = "分两步推进：先完成材料审核，再组织相关单位联合办理，按约定日期报送进展。"
_EXTENSION_REASON = "需报请省级主管部门审核，预计在原期限内无法办结，申请延长5个工作日。"
_RETURN_GROUNDS = "经核实，该事项不属于本单位职责范围，建议改由相关主管部门主办。"
_REVISIT_NOTE = "企业负责人表示问题已解决，对办理结果满意。"


def workday_before(calendar: WorkCalendar, day: dt.date, n: int) -> dt.date:
    """The Nth working day before `day` (`day` itself for 0)."""
    while n:
        day -= dt.timedelta(days=1)
        if calendar.is_workday(day):
            n -= 1
    return day


def seed_referrals(session: Session, today: dt.date) -> bool:
    """Issue REFERRAL_PLANS through the referral services, once. Returns True when it issued any.

    Only open problems of the newest campaign (政企同行) nobody has referred are used: the first two
    campaigns carry the article's figures, which referring their problems would change.
    """
    if _seeded(session, REFERRALS_MARK):
        return False
    calendar = load_calendar(session)
    users = {u.username: u for u in session.scalars(select(User).where(User.role != Role.cadre))}
    supervisor = users.get("supervisor")
    departments = {d.code: d for d in session.scalars(select(Department).where(Department.active.is_(True)))}
    campaign = session.scalar(select(Campaign).where(Campaign.code == "zqtx"))
    if supervisor is None or campaign is None:
        return False
    referred = select(ReferralProblem.problem_id)
    candidates = list(
        session.scalars(
            select(Problem)
            .where(
                Problem.campaign_id == campaign.id,
                Problem.status == ProblemStatus.open,
                Problem.outcome.is_(None),
                Problem.id.not_in(referred),
            )
            .order_by(Problem.raised_at, Problem.id)
        )
    )
    boss = Actor(supervisor.id, Role.supervisor)
    issued = []
    for plan in REFERRAL_PLANS:
        at = _at(calendar, today, *plan.issued)
        problem = _pick(candidates, plan.department, at - dt.timedelta(days=1))
        if problem is None:
            continue
        candidates.remove(problem)
        code = plan.department if CATEGORY_DEPARTMENT[problem.category] == plan.department else None
        lead = departments.get(code or CATEGORY_DEPARTMENT[problem.category])
        staff = users.get(f"dept-{lead.code}") if lead else None
        if lead is None or staff is None:
            continue
        data = {
            "problem_ids": [problem.id],
            "lead_department_id": lead.id,
            "co_department_ids": [departments[c].id for c in plan.co if c in departments and c != lead.code],
            "requirements": _REQUIREMENTS.format(
                target=problem.target.name, category=problem.category.label, workdays=plan.workdays
            ),
            "workdays": plan.workdays,
        }
        referral = referrals.issue_referral(session, boss, data, now=at, calendar=calendar)
        desk = Actor(staff.id, Role.department_staff, lead.id)
        for move, back, hour in plan.moves:
            _move(session, referral.id, move, _at(calendar, today, back, hour), boss, desk, lead, calendar, today)
        issued.append(referral.number)
    audit.record(session, SYSTEM, "seed", REFERRALS_MARK, None, {"referrals": issued})
    return bool(issued)


def _at(calendar: WorkCalendar, today: dt.date, back: int, hour: int) -> dt.datetime:
    day = workday_before(calendar, today, back)
    return dt.datetime.combine(day, dt.time(hour, 17), SHANGHAI).astimezone(dt.UTC)


def _pick(candidates: list[Problem], department: str, before: dt.datetime) -> Problem | None:
    """The first problem raised before `before` in the department's field, else the first raised before."""
    earlier = [p for p in candidates if p.raised_at < before]
    return next((p for p in earlier if CATEGORY_DEPARTMENT[p.category] == department), None) or next(
        iter(earlier), None
    )


def _move(
    session: Session,
    referral_id: uuid.UUID,
    move: str,
    at: dt.datetime,
    boss: Actor,
    desk: Actor,
    lead: Department,
    calendar: WorkCalendar,
    today: dt.date,
) -> None:
    """One move of a plan, taken as the supervisor, the lead department's staff or the revisiting cadre."""
    if move == "revisit":
        revisit = session.scalar(select(FollowUp).where(FollowUp.referral_id == referral_id))
        if revisit is not None and revisit.assignee_id is not None:
            result = {"satisfaction": Satisfaction.satisfied, "note": _REVISIT_NOTE, "version": revisit.version}
            cadre = Actor(revisit.assignee_id, Role.cadre)
            followups.complete_followup(session, cadre, revisit.id, result, now=at, calendar=calendar)
        return
    current = referrals.get_referral(session, boss, referral_id)
    short = lead.short_name or lead.name
    who, action = desk, ReferralAction.respond
    body: dict[str, Any] = {}
    match move:
        case "sign":
            action = ReferralAction.sign
        case "solved":
            body = {"outcome": ProblemOutcome.solved, "done": _SOLVED_ANSWER.format(d=short)}
        case "coordinating":
            body = {
                "outcome": ProblemOutcome.coordinating,
                "done": _COORDINATING_ANSWER.format(d=short),
                "plan": _COORDINATING_PLAN,
                "next_date": workday_before(calendar, today, 1),
            }
        case "accept":
            who, action, body = boss, ReferralAction.review, {"accept": True}
        case "extension":
            until = calendar.add_workdays(referrals.state_of(current).due_day, 5)
            action, body = ReferralAction.request_extension, {"until": until, "reason": _EXTENSION_REASON}
        case "return":
            action, body = ReferralAction.request_return, {"grounds": _RETURN_GROUNDS}
        case _:
            raise ValueError(f"no such demo move: {move}")
    body["version"] = current.version
    referrals.act(session, who, referral_id, action, body, now=at, calendar=calendar)
