"""The report's figures as the article words them (共梳理问题265个，已经解决问题182个 …)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.enums import TargetKind

MEASURE = {TargetKind.park: "个", TargetKind.project: "个", TargetKind.firm: "家"}


@dataclass(frozen=True)
class Counts:
    collected: int = 0
    solved: int = 0
    coordinating: int = 0
    deferred: int = 0
    open: int = 0  # raised, no outcome yet


def summary_sentence(counts: Counts, coverage: dict[TargetKind, tuple[int, int]]) -> str:
    """One Chinese paragraph: the problem figures, then the visit coverage per target kind."""
    parts = [f"已经解决问题{counts.solved}个", f"正在协调解决的问题{counts.coordinating}个"]
    if counts.deferred:
        parts.append(f"暂不具备解决条件的问题{counts.deferred}个")
    if counts.open:
        parts.append(f"尚待办理的问题{counts.open}个")
    sentence = f"共梳理问题{counts.collected}个，" + "、".join(parts) + "。"
    visited = [
        f"{kind.label}{coverage[kind][0]}{MEASURE[kind]}（共{coverage[kind][1]}{MEASURE[kind]}）"
        for kind in TargetKind
        if kind in coverage
    ]
    if visited:
        sentence += "走访" + "、".join(visited) + "。"
    return sentence
