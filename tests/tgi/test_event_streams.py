"""Every streaming route answers with exactly ``text/event-stream``: chat-ui 2023's stream
reader refuses ``text/event-stream; charset=utf-8``."""

from __future__ import annotations

import httpx

from tests.support.servers import RunningServer
from tests.tgi.servers import stream

EVENT_STREAM = "text/event-stream"


def test_h2o_conversation_stream(lab: RunningServer) -> None:
    with httpx.Client(base_url=lab.url, timeout=60) as http:
        conversation = http.post("/conversation", json={"model": "echo"}).json()
        path = f"/conversation/{conversation['conversationId']}"
        response, events = stream(lab.url, path, {"inputs": "hi"}, cookies=http.cookies)
    assert response.headers["content-type"] == EVENT_STREAM
    assert events[-1]["generated_text"] == "hi"


def test_openai_stream(lab: RunningServer) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{lab.url}/v1/chat/completions", json=body) as response:
        lines = list(response.iter_lines())
    assert response.headers["content-type"] == EVENT_STREAM
    assert lines[-2:] == ["data: [DONE]", ""]
