"""The reliability summary: every test marked ``reliability`` is a row of RELIABILITY.md.

Mark a case with ``@pytest.mark.reliability("Case", section=..., did="...", expect="...")``
(``{name}`` in the case is a parameter of a parametrized test); the figures it measures go
in with ``record_property(name, value)``. Then ``pytest tests -m reliability
--reliability-report RELIABILITY.md`` runs every case and writes one table per section:
the case, what was done, what was expected, what happened.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# What ./dev reliability runs: pytest tests -m reliability --reliability-report RELIABILITY.md
REGENERATE = "./dev reliability"
SECTIONS = (
    "Client faults",
    "Server faults",
    "Bad input",
    "Isolation and security",
    "Load",
    "Replicas and the database",
    "Property testing",
)
MARKER = (
    "reliability(case, *, section, did, expect): a case of the reliability summary "
    f"(RELIABILITY.md); section is one of {', '.join(SECTIONS)}"
)
_ICONS = {"passed": "✅ pass", "failed": "❌ FAIL", "error": "❌ ERROR", "skipped": "⚠️ skipped"}


@dataclass
class Run:
    """One test item of a case (a parametrized case has several)."""

    variant: str
    outcome: str = "passed"
    seconds: float = 0.0
    message: str = ""
    figures: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class Row:
    """One case: its description and how its runs went."""

    section: str
    case: str
    did: str
    expect: str
    test: str
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        outcomes = {run.outcome for run in self.runs.values()}
        return next((o for o in ("error", "failed", "skipped") if o in outcomes), "passed")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "reliability summary")
    group.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the summary of the reliability cases that ran to PATH (Markdown)",
    )
    group.addoption(
        "--load-seconds",
        type=float,
        default=60.0,
        help="how long the concurrent-streams load case runs (default 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    config.pluginmanager.register(Summary(config), "reliability-summary")


def case_of(item: pytest.Item) -> Row | None:
    """The item's case, from its ``reliability`` marker (None if it has none).

    ``{name}`` in the case's title is replaced by that parameter of a parametrized test;
    the items of a test whose titles come out the same are the variants of one row.
    """
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return None
    if len(marker.args) != 1 or not {"section", "did", "expect"} <= marker.kwargs.keys():
        raise pytest.UsageError(f"{item.nodeid}: use reliability(case, section=, did=, expect=)")
    section = marker.kwargs["section"]
    if section not in SECTIONS:
        raise pytest.UsageError(f"{item.nodeid}: section {section!r} is not one of {SECTIONS}")
    case = str(marker.args[0])
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "{" in case:
        case = case.format(**callspec.params)
    test = item.nodeid.split("[")[0]
    return Row(section, case, marker.kwargs["did"], marker.kwargs["expect"], test)


class Summary:
    """Collects the cases while the tests run and writes the report at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[tuple[str, str], Row] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            case_of(item)  # malformed markers fail the run at collection, not at the end

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report: pytest.TestReport = yield
        case = case_of(item)
        if case is None:
            return report
        row = self.rows.setdefault((case.test, case.case), case)
        callspec = getattr(item, "callspec", None)
        run = row.runs.setdefault(item.nodeid, Run(callspec.id if callspec else ""))
        run.seconds += report.duration
        run.figures = list(report.user_properties)
        if report.skipped:
            run.outcome = "skipped"
        elif report.failed:
            run.outcome = "failed" if report.when == "call" else "error"
            crash = getattr(report.longrepr, "reprcrash", None)
            run.message = crash.message if crash is not None else str(report.longrepr)
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("--reliability-report")
        if path and self.rows:
            Path(path).write_text(render(list(self.rows.values())), encoding="utf-8")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        path = self.config.getoption("--reliability-report")
        if path and self.rows:
            terminalreporter.write_line(f"reliability summary: {len(self.rows)} cases -> {path}")


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _result(row: Row) -> str:
    runs = list(row.runs.values())
    seconds = sum(run.seconds for run in runs)
    result = _ICONS[row.outcome]
    if len(runs) > 1:
        good = sum(run.outcome == "passed" for run in runs)
        result += f" ({good}/{len(runs)} variants pass, {seconds:.1f} s)"
    else:
        result += f" ({seconds:.1f} s)"
    for run in runs:
        if run.message:
            where = f"[{run.variant}] " if len(runs) > 1 else ""
            result += f"; {where}{run.message[:300]}"
    return _cell(result)


def _figures(row: Row) -> str:
    runs = list(row.runs.values())
    parts = []
    for run in runs:
        where = f"[{run.variant}] " if len(runs) > 1 and run.figures else ""
        figures = ", ".join(f"{name}: {_figure(value)}" for name, value in run.figures)
        if figures:
            parts.append(where + figures)
    return _cell("; ".join(parts))


def render(rows: list[Row]) -> str:
    """The Markdown report: a header with the totals, then one table per section."""
    counts = {outcome: sum(r.outcome == outcome for r in rows) for outcome in _ICONS}
    totals = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
    lines = [
        "# Reliability",
        "",
        "Faults, load and abuse against the real client and server on 127.0.0.1 (issue 6).",
        f"Generated by `{REGENERATE}` (the load case runs `--load-seconds`, default 60 s).",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{_cpu_count()} CPUs",
        f"- {len(rows)} cases: {totals}",
        "",
    ]
    for section in SECTIONS:
        section_rows = [r for r in rows if r.section == section]
        if not section_rows:
            continue
        lines += [
            f"## {section}",
            "",
            "| Case | What was done | Expected | Result | Measured | Test |",
            "|---|---|---|---|---|---|",
        ]
        for r in section_rows:
            lines.append(
                f"| {_cell(r.case)} | {_cell(r.did)} | {_cell(r.expect)} | {_result(r)} "
                f"| {_figures(r)} | `{_cell(r.test)}` |"
            )
        lines.append("")
    return "\n".join(lines)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
