"""The page's conversations: the list with titles, open, rename, delete, retry, edit, copy.

Against a server whose model replays the question as its answer (tests.support.replay), so
that every answer, and every title the model gives, is known in advance.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.support.replay import replay_server, stored_title
from tests.support.servers import RunningServer
from tests.support.web import answered, ask, open_page, sidebar_titles

QUESTIONS = [
    "how do lighthouses work at night",
    "tell me about green tea",
    "why is the sky blue",
]


def new_chat(page: Page, question: str) -> None:
    page.get_by_role("button", name="New chat").click()
    answered(ask(page, question))


def stored(page: Page, url: str, conversation_id: str) -> dict[str, object]:
    """The server's copy of a conversation, fetched with the page's session."""
    response = page.request.get(f"{url}/conversation/{conversation_id}")
    assert response.status == 200
    conversation: dict[str, object] = response.json()
    return conversation


def open_id(page: Page) -> str:
    """The id of the conversation the page shows."""
    conversation_id = page.evaluate("sessionStorage.getItem('h2o-chat.conversation')")
    assert isinstance(conversation_id, str)
    return conversation_id


def test_the_list_has_every_conversation_titled_by_the_model_after_a_reload(
    page: Page, replay: RunningServer, artifacts: Path
) -> None:
    open_page(page, replay.url)
    expect(page.get_by_text("None yet.")).to_be_visible()
    for question in QUESTIONS:
        new_chat(page, question)
    newest_first = [stored_title(q) for q in reversed(QUESTIONS)]
    assert newest_first[0] == "Why Is The Sky"
    expect(sidebar_titles(page)).to_have_text(newest_first)  # summaries arrive in the background
    expect(page.locator("#chat-title")).to_have_text(newest_first[0])
    current = page.locator('#conversations .open[aria-current="true"]')
    expect(current).to_have_text(newest_first[0])
    page.screenshot(path=str(artifacts / "web-conversations.png"))

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(sidebar_titles(page)).to_have_text(newest_first)
    expect(current).to_have_text(newest_first[0])  # the tab's conversation is open again
    listed = page.request.get(replay.url + "/conversations").json()
    assert [c["title"] for c in listed] == newest_first


def test_open_rename_and_delete(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    for question in QUESTIONS[:2]:
        new_chat(page, question)
    older = stored_title(QUESTIONS[0])
    expect(sidebar_titles(page)).to_have_text([stored_title(QUESTIONS[1]), older])

    page.get_by_role("button", name=older, exact=True).click()  # open the older one
    expect(page.locator("#chat-title")).to_have_text(older)
    expect(page.locator("#messages .msg .text")).to_have_text([QUESTIONS[0], QUESTIONS[0]])
    conversation_id = open_id(page)

    row = page.locator("#conversations .conversation").nth(1)
    row.get_by_role("button", name="Rename").click()
    title = row.get_by_label("New title")
    expect(title).to_be_focused()
    expect(title).to_have_value(older)
    title.fill("Lighthouses <b>at</b> night")
    title.press("Enter")
    renamed = "Lighthouses <b>at</b> night"  # a title is text, never HTML
    expect(sidebar_titles(page)).to_have_text([stored_title(QUESTIONS[1]), renamed])
    expect(page.locator("#chat-title")).to_have_text(renamed)
    expect(page.locator("#conversations b")).to_have_count(0)
    assert stored(page, replay.url, conversation_id)["title"] == renamed

    row = page.locator("#conversations .conversation").nth(1)
    row.get_by_role("button", name="Delete").click()
    expect(row).to_contain_text(f"Delete \u201c{renamed}\u201d?")
    row.get_by_role("button", name="Delete").click()
    expect(sidebar_titles(page)).to_have_text([stored_title(QUESTIONS[1])])
    expect(page.locator("#chat-title")).to_have_text("New chat")  # it was open
    expect(page.locator("#messages .msg")).to_have_count(0)
    gone = page.request.get(f"{replay.url}/conversation/{conversation_id}")
    assert gone.status == 404


def test_the_list_survives_a_server_restart(browser: Browser, tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    with replay_server(tmp_path, db=db) as server:
        open_page(page, server.url)
        for question in QUESTIONS[:2]:
            new_chat(page, question)
        titles = [stored_title(q) for q in reversed(QUESTIONS[:2])]
        expect(sidebar_titles(page)).to_have_text(titles)
    with replay_server(tmp_path, db=db) as server:  # another process, another port
        open_page(page, server.url)
        expect(sidebar_titles(page)).to_have_text(titles)
        page.get_by_role("button", name=titles[1], exact=True).click()
        expect(page.locator("#messages .msg.assistant .text")).to_have_text(QUESTIONS[0])
    context.close()


def test_another_session_sees_none_of_them(
    page: Page, browser: Browser, replay: RunningServer
) -> None:
    open_page(page, replay.url)
    new_chat(page, "my private question")
    expect(sidebar_titles(page)).to_have_count(1)
    conversation_id = open_id(page)

    stranger = browser.new_context()
    other = stranger.new_page()
    open_page(other, replay.url)
    expect(other.get_by_text("None yet.")).to_be_visible()
    expect(sidebar_titles(other)).to_have_count(0)
    assert other.request.get(replay.url + "/conversations").json() == []
    assert other.request.get(f"{replay.url}/conversation/{conversation_id}").status == 404
    other.evaluate("id => sessionStorage.setItem('h2o-chat.conversation', id)", conversation_id)
    other.reload()  # even told the id, the page cannot open it
    expect(other.locator("body")).to_have_attribute("data-ready", "true")
    expect(other.locator("#messages .msg")).to_have_count(0)
    stranger.close()


MARKDOWN = """# Tea notes

Some *emphasis*, **strong** text and `inline code`, a [link](https://example.com/tea).

- first item
- second item

1. one
2. two

| kind | minutes |
| --- | --- |
| green | 2 |
| black | 4 |

```python
def brew(minutes):
    return f"brewed {minutes}"
```
"""


def test_markdown_renders_and_copies(page: Page, replay: RunningServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=replay.url)
    open_page(page, replay.url)
    body = answered(ask(page, MARKDOWN))
    expect(body.locator("h1")).to_have_text("Tea notes")
    expect(body.locator("em")).to_have_text("emphasis")
    expect(body.locator("strong")).to_have_text("strong")
    expect(body.locator("p code")).to_have_text("inline code")
    expect(body.locator("ul li")).to_have_text(["first item", "second item"])
    expect(body.locator("ol li")).to_have_text(["one", "two"])
    expect(body.locator("table tr")).to_have_count(3)
    expect(body.locator("td")).to_have_text(["green", "2", "black", "4"])
    link = body.get_by_role("link", name="link")
    expect(link).to_have_attribute("href", "https://example.com/tea")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")

    code = body.locator(".code-block")
    expect(code.locator(".language")).to_have_text("python")
    expect(code.locator("pre code")).to_have_class("language-python")
    code.get_by_role("button", name="Copy code").click()
    expect(code.get_by_role("button", name="Copied")).to_be_visible()
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert clipboard == 'def brew(minutes):\n    return f"brewed {minutes}"\n'

    actions = page.locator("#messages .msg.assistant .actions").last
    actions.get_by_role("button", name="Copy", exact=True).click()
    expect(actions.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == MARKDOWN.strip()  # the raw text


def test_the_answer_renders_while_it_streams(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    paragraphs = [f"Paragraph **{n}** of a long answer that streams." for n in range(1, 41)]
    answer = ask(page, "\n\n".join(paragraphs))
    streaming = page.locator("#messages .msg.assistant.streaming .text strong")
    expect(streaming.first).to_have_text("1")  # Markdown before the answer has ended
    body = answered(answer)
    expect(body.locator("p")).to_have_text([p.replace("**", "") for p in paragraphs])


def test_retry_replaces_the_last_answer(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    answered(ask(page, "first question"))
    first = answered(ask(page, "Answer number {n}"))
    expect(first).to_have_text(re.compile(r"Answer number \d+"))
    before = first.inner_text()
    conversation_id = open_id(page)
    messages = stored(page, replay.url, conversation_id)["messages"]
    assert isinstance(messages, list)
    question_id = messages[2]["id"]
    expect(page.get_by_role("button", name="Retry")).to_have_count(1)  # the last answer only

    page.get_by_role("button", name="Retry").click()
    again = answered(page.locator("#messages .msg.assistant").last)
    expect(again).not_to_have_text(before)
    expect(again).to_have_text(re.compile(r"Answer number \d+"))
    after = again.inner_text()
    expect(page.locator("#messages .msg")).to_have_count(4)
    messages = stored(page, replay.url, conversation_id)["messages"]
    assert isinstance(messages, list)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first question"),
        ("assistant", "first question"),
        ("user", "Answer number {n}"),
        ("assistant", after),  # the server replaced the answer
    ]
    assert messages[2]["id"] == question_id  # retried as the same question (is_retry)


def test_edit_and_resend_the_last_question(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    answered(ask(page, "first question"))
    answered(ask(page, "second question"))
    expect(page.get_by_role("button", name="Edit")).to_have_count(1)  # the last question only
    page.get_by_role("button", name="Edit").click()
    prompt = page.get_by_label("Message")
    expect(prompt).to_have_value("second question")
    expect(prompt).to_be_focused()
    expect(page.get_by_text("Editing your last message")).to_be_visible()
    prompt.fill("second question, edited")
    prompt.press("Enter")
    answered(page.locator("#messages .msg.assistant").last)
    expect(page.locator("#messages .msg .text")).to_have_text(
        ["first question", "first question", "second question, edited", "second question, edited"]
    )
    messages = stored(page, replay.url, open_id(page))["messages"]
    assert isinstance(messages, list)
    assert [m["content"] for m in messages] == [
        "first question",
        "first question",
        "second question, edited",
        "second question, edited",
    ]

    page.get_by_role("button", name="Edit").click()  # Cancel puts everything back
    page.get_by_role("button", name="Cancel").click()
    expect(prompt).to_have_value("")
    expect(page.locator("#messages .msg")).to_have_count(4)


def test_each_conversation_keeps_its_model_prompt_and_options(
    page: Page, replay: RunningServer
) -> None:
    open_page(page, replay.url)
    page.get_by_text("Options").click()
    page.get_by_label("System prompt").fill("Be brief.")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max new tokens").fill("300")
    answered(ask(page, "first conversation"))
    info = page.locator("#chat-info")
    expect(info).to_have_text(
        "replay \u00b7 greedy (temperature 0) \u00b7 up to 300 new tokens"
        " \u00b7 system prompt: \u201cBe brief.\u201d"
    )
    expect(page.get_by_label("System prompt")).to_have_attribute("readonly", "")

    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_label("System prompt")).not_to_have_attribute("readonly", "")
    page.get_by_label("System prompt").fill("")
    page.get_by_label("Temperature").fill("0.7")
    page.get_by_label("Max new tokens").fill("500")
    answered(ask(page, "second conversation"))
    expect(info).to_have_text("replay \u00b7 temperature 0.7 \u00b7 up to 500 new tokens")

    page.get_by_role("button", name=stored_title("first conversation"), exact=True).click()
    expect(info).to_contain_text("greedy (temperature 0) \u00b7 up to 300 new tokens")
    expect(page.get_by_label("Temperature")).to_have_value("0")
    expect(page.get_by_label("Max new tokens")).to_have_value("300")
    expect(page.get_by_label("System prompt")).to_have_value("Be brief.")


def test_keyboard_only_rename_and_delete(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    answered(ask(page, "keyboard question"))
    title = stored_title("keyboard question")
    opener = page.get_by_role("button", name=title, exact=True)
    expect(opener).to_have_count(1)  # the model's title has come
    opener.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Rename")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("New title")).to_be_focused()
    page.keyboard.press("Escape")  # cancels the rename, not anything else
    expect(page.get_by_role("button", name="Rename")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("End")
    page.keyboard.type(" (typed)")
    page.keyboard.press("Enter")
    expect(sidebar_titles(page)).to_have_text([f"{title} (typed)"])
    expect(page.get_by_role("button", name=f"{title} (typed)")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(sidebar_titles(page)).to_have_count(0)


def test_the_list_is_a_drawer_on_a_phone(page: Page, replay: RunningServer) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    open_page(page, replay.url)
    answered(ask(page, "phone question"))
    page.get_by_role("button", name="New chat").click()
    menu = page.get_by_role("button", name="Conversations")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#sidebar")).to_be_hidden()
    menu.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    opener = page.get_by_role("button", name=stored_title("phone question"), exact=True)
    expect(opener).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    page.get_by_role("button", name="Close the list").click()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    opener.click()  # opening a conversation closes the drawer
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#messages .msg.user .text")).to_have_text("phone question")
