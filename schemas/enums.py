"""Enumerations of the domain, each value with its Chinese label for what users read."""

from __future__ import annotations

import enum


class LabelledEnum(enum.StrEnum):
    """A string enum whose members carry a Chinese label: `Role.cadre.label == "干部"`."""

    label: str

    def __new__(cls, value: str, label: str) -> LabelledEnum:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]

    @classmethod
    def labels(cls) -> dict[str, str]:
        return {m.value: m.label for m in cls}


class Role(LabelledEnum):
    cadre = ("cadre", "干部")
    supervisor = ("supervisor", "督查人员")
    department_staff = ("department_staff", "部门联络员")
    admin = ("admin", "系统管理员")


class TargetKind(LabelledEnum):
    park = ("park", "园区")
    project = ("project", "项目")
    firm = ("firm", "企业")


class ParkType(LabelledEnum):
    national_zone = ("national_zone", "国家级开发区")
    provincial_zone = ("provincial_zone", "省级开发区")
    software_park = ("software_park", "信息软件园区")


class ServiceCategory(LabelledEnum):
    """The eight kinds of service named in the article (企业服务月)."""

    research = ("research", "走访调研")
    project_progress = ("project_progress", "项目推进")
    tech_innovation = ("tech_innovation", "技术创新")
    environmental_compliance = ("environmental_compliance", "环保达标")
    enterprise_cultivation = ("enterprise_cultivation", "企业培育")
    financial_support = ("financial_support", "金融支持")
    burden_reduction = ("burden_reduction", "助企减负")
    publicity = ("publicity", "宣传对接")


class ProblemCategory(LabelledEnum):
    financing = ("financing", "融资")
    labor = ("labor", "用工")
    talent_housing = ("talent_housing", "人才住房")
    land = ("land", "用地")
    approval = ("approval", "审批")
    environment = ("environment", "环保")
    tariff = ("tariff", "关税")
    tax = ("tax", "税收")
    logistics = ("logistics", "物流")
    energy = ("energy", "水电气要素")
    market = ("market", "市场开拓")
    technology = ("technology", "技术创新")
    policy = ("policy", "政策落实")
    other = ("other", "其他")


class ProblemStatus(LabelledEnum):
    """Lifecycle, kept apart from the outcome: a coordinating problem is still open."""

    open = ("open", "办理中")
    closed = ("closed", "已办结")


class ProblemOutcome(LabelledEnum):
    solved = ("solved", "已解决")
    coordinating = ("coordinating", "正在协调解决")
    deferred = ("deferred", "暂不具备解决条件")
