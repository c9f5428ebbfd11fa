"""What a case reports: its figures, and its checks against the issue's targets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    target: str  # what the issue asks: "failed Client calls = 0"
    measured: str
    passed: bool


@dataclass
class Report:
    case: str
    figures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def figure(self, name: str, value: str) -> None:
        self.figures.append((name, value))

    def check(self, target: str, measured: str, passed: bool) -> None:
        self.checks.append(Check(target, measured, passed))

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def render(reports: list[Report]) -> str:
    """Every case's figures, then one line per check with its verdict."""
    lines: list[str] = []
    for report in reports:
        lines.append(f"## {report.case}")
        width = max((len(name) for name, _ in report.figures), default=0)
        lines += [f"  {name:<{width}}  {value}" for name, value in report.figures]
        lines.append("")
    checks = [(report.case, check) for report in reports for check in report.checks]
    if checks:
        target_width = max(len(f"{case}: {check.target}") for case, check in checks)
        measured_width = max(len(check.measured) for _, check in checks)
        lines.append(f"{'target':<{target_width}}  {'measured':<{measured_width}}  result")
        for case, check in checks:
            verdict = "PASS" if check.passed else "FAIL"
            lines.append(f"{case + ': ' + check.target:<{target_width}}  {check.measured:<{measured_width}}  {verdict}")
    return "\n".join(lines)
