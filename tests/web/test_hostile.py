"""Model output is untrusted: hostile answers render as harmless text, and the page's
Content-Security-Policy would stop whatever got through.

The replayed model answers with the question itself, so each payload below is what the model
"writes"; it also becomes the conversation's title (the model's summary of it).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from h2o_chat.server.routes.page import CONTENT_SECURITY_POLICY
from tests.support.replay import stored_title
from tests.support.servers import RunningServer
from tests.support.web import answered, ask, open_page, sidebar_titles, watch

EVIL = "https://evil.example"
PAYLOADS = {
    "script": "<script>window.owned = 'script'; alert('script')</script> after",
    "img onerror": "<img src=x onerror=\"window.owned = 'img'; alert('img')\"> after",
    "javascript link": "[click me](javascript:window.owned='link';alert('link'))",
    "obfuscated links": (
        "[tab](jav&#x09;ascript:alert('tab')) [case]( JaVaScRiPt:alert('case')) "
        "<javascript:alert('autolink')> [data](data:text/html,<script>alert('data')</script>)"
        "\n\n[ref][1]\n\n[1]: javascript:alert('ref')"
    ),
    "iframe": f'<iframe src="{EVIL}/frame" onload="alert(\'frame\')"></iframe> after',
    "svg with script": (
        '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg\')">'
        "<script>alert('svg script')</script></svg> after"
    ),
    "markdown image": f"![tracking pixel]({EVIL}/pixel.png) and ![local](/static/favicon.svg)",
    "entities": (
        "&lt;img src=x onerror=alert('entity')&gt; &#60;script&#62;alert('entity')&#60;/script&#62;"
    ),
    "markup soup": (
        "<a href=\"javascript:alert('a')\">a</a> "
        f'<a href="https://example.com" onclick="alert(\'b\')" onmouseover="alert(\'b\')">b</a> '
        f'<form action="{EVIL}"><input name=q autofocus onfocus="alert(\'focus\')"></form> '
        "<style>body { display: none }</style> "
        f'<object data="{EVIL}/x"></object><embed src="{EVIL}/y"><base href="{EVIL}/"> '
        "<details open ontoggle=\"alert('toggle')\">d</details> "
        f'<link rel="stylesheet" href="{EVIL}/x.css"><meta http-equiv="refresh" content="0;{EVIL}">'
    ),
    "mutation xss": "<math><mtext><table><mglyph><style><img src=x onerror=alert('mxss')>",
    "link title breakout": '[hover](https://example.com "t\\" onmouseover=\\"alert(\'t\')")',
    "code block": "```html\n<script>alert('code')</script>\n<img src=x onerror=alert(1)>\n```",
}
# Nothing in an answer may be any of these, or carry an on* attribute.
FORBIDDEN = "script, iframe, frame, object, embed, img, svg, math, style, link, meta, base, form"
FORBIDDEN += ", input, button, details, audio, video, source"


def test_the_page_and_its_files_carry_a_strict_csp(page: Page, replay: RunningServer) -> None:
    response = open_page(page, replay.url)
    headers = response.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'"):
        assert directive in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert "http" not in CONTENT_SECURITY_POLICY  # no remote origin anywhere
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/static/app.js", "/static/vendor/purify.min.js", "/static/app.css"):
        asset = page.request.get(replay.url + path)
        assert asset.status == 200
        assert asset.headers["x-content-type-options"] == "nosniff"
    script_type = page.request.get(replay.url + "/static/app.js").headers["content-type"]
    assert script_type.startswith(("text/javascript", "application/javascript"))


def test_the_csp_blocks_what_a_sanitiser_might_miss(page: Page, replay: RunningServer) -> None:
    """The second line of defence on its own: markup put straight into the page, past the
    sanitiser, runs no script and loads nothing."""
    seen = watch(page, replay.url)
    open_page(page, replay.url)
    page.evaluate(
        """evil => {
            window.violations = [];
            document.addEventListener("securitypolicyviolation", (event) => {
                window.violations.push(event.effectiveDirective);
            });
            const box = document.createElement("div");
            box.innerHTML = `<img src="${evil}/pixel.png" onerror="window.owned = 'img'">`
                + `<img src="x" onerror="window.owned = 'local img'">`;
            document.body.append(box);
            const script = document.createElement("script");
            script.textContent = "window.owned = 'inline script'";
            document.body.append(script);
        }""",
        EVIL,
    )
    blocked = ["img-src", "script-src-attr", "script-src-elem"]
    page.wait_for_function(
        "blocked => blocked.every((d) => window.violations.includes(d))", arg=blocked
    )
    assert page.evaluate("window.owned") is None
    assert seen.foreign_responses() == []
    for url in seen.foreign_requests():  # tried, and stopped by the policy
        assert seen.failures[url] == "csp", url  # Chromium: blocked by the policy


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_a_hostile_answer_is_harmless(page: Page, replay: RunningServer, name: str) -> None:
    payload = PAYLOADS[name]
    seen = watch(page, replay.url)
    open_page(page, replay.url)
    answer = ask(page, payload)
    body = answered(answer)
    # the model's title for it has come, as text
    expect(sidebar_titles(page)).to_have_text([stored_title(payload)])
    answer.hover()
    for element in body.locator("a, p, li, code").all():
        element.hover()  # mouseover handlers, if any were left, would fire now

    assert page.evaluate("window.owned") is None
    assert seen.dialogs == []
    assert seen.page_errors == []
    assert seen.console_errors == []  # not even a payload the CSP had to block
    assert seen.foreign_requests() == []
    found = page.evaluate(
        """forbidden => {
            const answers = document.querySelector("#messages");
            const bad = [...answers.querySelectorAll(forbidden)]
                .filter((e) => !e.matches(".actions button, .code-bar button"))  // the page's
                .map((e) => e.outerHTML);
            for (const e of document.querySelectorAll("#messages *, #conversations *")) {
                for (const attribute of e.attributes) {
                    if (attribute.name.startsWith("on")) bad.push(e.outerHTML);
                }
            }
            for (const a of answers.querySelectorAll("a[href]")) {
                const url = new URL(a.href);
                const ok = ["http:", "https:", "mailto:"].includes(url.protocol)
                    && a.rel === "noopener noreferrer" && a.target === "_blank";
                if (!ok) bad.push(a.outerHTML);
            }
            return bad;
        }""",
        FORBIDDEN,
    )
    assert found == []
    assert page.title() == "h2o-chat"
    expect(page.locator("body")).to_be_visible()  # no <style> hid it


def test_markup_in_an_answer_shows_as_text(page: Page, replay: RunningServer) -> None:
    open_page(page, replay.url)
    body = answered(ask(page, PAYLOADS["entities"] + "\n\n" + PAYLOADS["script"]))
    expect(body).to_contain_text("<img src=x onerror=alert('entity')>")
    expect(body).to_contain_text("<script>alert('entity')</script>")
    expect(body).to_contain_text("<script>window.owned = 'script'; alert('script')</script>")
    code = answered(ask(page, PAYLOADS["code block"])).locator("pre code")
    expect(code).to_have_text("<script>alert('code')</script>\n<img src=x onerror=alert(1)>\n")
    links = answered(ask(page, PAYLOADS["javascript link"]))
    expect(links).to_have_text("click me")
    expect(links.locator("a[href]")).to_have_count(0)
    image = answered(ask(page, PAYLOADS["markdown image"]))
    expect(image).to_have_text("tracking pixel and local")  # images become their alt text
