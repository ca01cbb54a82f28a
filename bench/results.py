"""What a benchmark run produces: figures, each beside its floor and target."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Goal:
    """A target: `ratio` compares the figure with its floor (figure ÷ floor), `value` bounds the
    figure itself."""

    op: Literal[">=", "<="]
    bound: float
    on: Literal["ratio", "value"] = "ratio"

    def met(self, value: float, ratio: float | None) -> bool | None:
        x = ratio if self.on == "ratio" else value
        if x is None or math.isnan(x):
            return None
        return x >= self.bound if self.op == ">=" else x <= self.bound

    def describe(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        if self.on == "ratio":
            return f"{sign} {self.bound:g}\u00d7 floor"
        return f"{sign} {self.bound:g} {unit}"


@dataclass
class Figure:
    case: str
    name: str
    unit: str
    value: float
    floor: float | None = None
    goal: Goal | None = None

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    @property
    def met(self) -> bool | None:
        return self.goal.met(self.value, self.ratio) if self.goal else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        data["target"] = self.goal.describe(self.unit) if self.goal else None
        return data


@dataclass
class CaseResult:
    case: str
    title: str
    floor: str  # what the floor is, in words
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "floor": self.floor,
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }
