"""The web chat page at ``GET /``, in headless Chromium against a real server."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, Request, expect

from tests.support.servers import RunningServer
from tests.support.web import ANSWER_TIMEOUT_MS, answered, ask

JAPAN = "What is the capital of Japan?"
STORY = "Write a very long story about a dragon."


def open_chat(page: Page, url: str, *, greedy: bool = True, max_new_tokens: int = 256) -> None:
    """Load the page and wait until models and welcome settings are done."""
    page.goto(url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    options = page.locator("details.options")
    expect(options).not_to_have_attribute("open", "")  # the options start folded away
    page.get_by_text("Options").click()
    if greedy:
        page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max new tokens").fill(str(max_new_tokens))
    page.get_by_text("Options").click()
    expect(options).not_to_have_attribute("open", "")


def test_page_loads_with_models_and_settings(page: Page, server: RunningServer) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r))
    open_chat(page, server.url)
    expect(page.get_by_label("Model")).to_have_value("SmolLM2-135M-Instruct")
    assert all(r.url.startswith(server.url + "/") for r in requests)  # nothing from outside
    [settings] = [r for r in requests if r.url == server.url + "/settings"]
    assert settings.method == "POST"
    assert settings.header_value("referer") == server.url + "/"
    assert "activeModel=SmolLM2-135M-Instruct" in (settings.post_data or "")
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["hf-chat"]


def test_question_is_answered_and_history_stays(
    page: Page, server: RunningServer, artifacts: Path
) -> None:
    open_chat(page, server.url)
    first = ask(page, JAPAN)
    answered(first)
    expect(first.locator(".text")).to_contain_text("Tokyo")
    second = ask(page, "And of France?")
    answered(second)
    expect(second.locator(".text")).to_contain_text("Paris")  # asked in the same conversation
    messages = page.locator("#messages .msg .text")
    expect(messages).to_have_count(4)
    expect(messages.first).to_have_text(JAPAN)
    assert "<|" not in page.locator("#messages").inner_text()  # special tokens are skipped
    page.screenshot(path=str(artifacts / "web-desktop.png"))

    page.reload()  # the tab's conversation comes back from GET /conversation/{id}
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(messages).to_have_count(4)
    expect(messages.last).to_contain_text("Paris")


def test_answer_streams_and_stop_frees_the_model(
    page: Page, server: RunningServer, artifacts: Path
) -> None:
    open_chat(page, server.url, max_new_tokens=2500)
    answer = ask(page, STORY)
    # tokens show while the answer is still streaming (the first may wait on a busy machine)
    streaming = page.locator(".msg.assistant.streaming .text")
    expect(streaming).not_to_have_text("", timeout=ANSWER_TIMEOUT_MS)
    page.get_by_role("button", name="Stop").click()
    expect(answer.locator(".note")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    assert "/stop-generating" in server.log()
    page.screenshot(path=str(artifacts / "web-stopped.png"))

    page.get_by_text("Options").click()
    page.get_by_label("Max new tokens").fill("256")
    next_answer = ask(page, JAPAN)
    answered(next_answer)
    expect(next_answer.locator(".text")).to_contain_text("Tokyo")


def test_new_chat_starts_a_new_conversation(page: Page, server: RunningServer) -> None:
    created: list[Request] = []
    page.on(
        "request",
        lambda r: created.append(r) if r.url == server.url + "/conversation" else None,
    )
    open_chat(page, server.url, max_new_tokens=8)
    answered(ask(page, JAPAN))
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#messages .msg")).to_have_count(0)
    answered(ask(page, JAPAN))
    expect(page.locator("#messages .msg")).to_have_count(2)
    assert len(created) == 2


def test_text_is_shown_as_text_not_html(page: Page, server: RunningServer) -> None:
    open_chat(page, server.url, max_new_tokens=8)
    markup = "<b>bold</b><img src=x onerror=\"document.title='owned'\">"
    answered(ask(page, markup))
    expect(page.locator("#messages .msg.user .text")).to_have_text(markup)
    expect(page.locator("#messages b, #messages img")).to_have_count(0)
    assert page.title() == "h2o-chat"


def test_phone_width_has_no_horizontal_overflow(
    page: Page, server: RunningServer, artifacts: Path
) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    open_chat(page, server.url)
    answer = ask(page, JAPAN)
    answered(answer)
    expect(answer.locator(".text")).to_contain_text("Tokyo")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    composer = page.locator("footer.composer").bounding_box()
    assert composer is not None
    assert composer["height"] < 740 / 4  # the conversation keeps most of the screen
    for name in ("Send", "New chat"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375
    page.screenshot(path=str(artifacts / "web-phone.png"))


def test_escape_stops_the_answer(page: Page, server: RunningServer) -> None:
    open_chat(page, server.url, max_new_tokens=2500)
    answer = ask(page, STORY)
    streaming = page.locator(".msg.assistant.streaming .text")
    expect(streaming).not_to_have_text("", timeout=ANSWER_TIMEOUT_MS)
    page.get_by_label("Message").press("Escape")
    expect(answer.locator(".note")).to_have_text("Stopped.")
    expect(page.get_by_label("Message")).to_be_focused()  # ready for the next question
