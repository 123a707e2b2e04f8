"""An automated accessibility check (axe-core, vendored in tests/web/vendor) of the page with
conversations, a rendered answer and the phone's drawer, light and dark; screenshots of each
go to artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.replay import stored_title
from tests.support.servers import RunningServer
from tests.support.web import answered, ask, open_page, sidebar_titles

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}
SERIOUS = ("serious", "critical")
ANSWER = """Here is a **summary** with a [source](https://example.com/tea):

| kind | minutes |
| --- | --- |
| green | 2 |

```python
def brew(minutes):
    return f"brewed for {minutes} minutes and then some more, a long line that scrolls"
```

1. Boil the water.
2. Pour it on the leaves.
"""


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now: id, impact and where."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
            .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }))"""
    )
    return found


def serious(page: Page) -> list[dict[str, Any]]:
    return [v for v in violations(page) if v["impact"] in SERIOUS]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_no_serious_accessibility_violations(
    browser: Browser, replay: RunningServer, artifacts: Path, size: str, scheme: str
) -> None:
    context = browser.new_context(viewport=SIZES[size], color_scheme=scheme)  # type: ignore[arg-type]
    page = context.new_page()
    open_page(page, replay.url)
    assert serious(page) == []  # empty, as a first visit finds it

    answered(ask(page, "how do I brew green tea"))
    page.get_by_role("button", name="New chat").click()
    answered(ask(page, ANSWER))
    expect(sidebar_titles(page)).to_have_text(
        [stored_title(ANSWER), stored_title("how do I brew green tea")]
    )
    expect(page.locator(".code-block")).to_have_count(1)
    assert serious(page) == []
    page.screenshot(path=str(artifacts / f"web-{size}-{scheme}.png"), animations="disabled")

    if size == "phone":
        page.get_by_role("button", name="Conversations").click()
        expect(page.locator("#sidebar")).to_be_visible()
        assert serious(page) == []
        page.screenshot(
            path=str(artifacts / f"web-{size}-{scheme}-drawer.png"), animations="disabled"
        )
    row = page.locator("#conversations .conversation").first
    row.get_by_role("button", name="Rename").click()
    expect(row.get_by_label("New title")).to_be_focused()
    assert serious(page) == []  # the rename form is labelled too
    context.close()
