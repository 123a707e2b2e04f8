"""Nobody gets in: sessions, conversation ids, cookies, binding, error bodies, the API key."""

from __future__ import annotations

import ipaddress
import itertools
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from openai.types.chat import ChatCompletionMessageParam

from h2o_chat.protocol.payloads import SESSION_COOKIE
from h2o_chat.protocol.types import ErrorEvent, StreamResponse
from tests.support.backends import SECRET, TRAP_ID
from tests.support.h2o import new_conversation, read_events, session_client
from tests.support.lab import Lab, RecordProperty, lab, still_serving
from tests.support.servers import IMPORTABLE, free_port, run_process

SECTION = "Isolation and security"
CONVERSATION_ID = re.compile(r"[0-9a-f]{24}")
TURN = {"inputs": "private words", "parameters": {}}
LEAKS = (SECRET, "Traceback", 'File "', ".py", "RuntimeError", "exploded")


def _turn(client: httpx.Client, conversation_id: str, inputs: str) -> list[Any]:
    body = {"inputs": inputs, "parameters": {}}
    with client.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        assert response.status_code == 200, response.read()
        return read_events(response)


ROUTES = [
    ("GET", "/conversation/{id}"),
    ("POST", "/conversation/{id}"),
    ("POST", "/conversation/{id}/stop-generating"),
    ("DELETE", "/conversation/{id}"),
]
INTRUDERS = {
    "another session": {"cookie": f"{SESSION_COOKIE}={uuid.uuid4()}"},
    "no cookie": {},
    "a forged cookie": {"cookie": f"{SESSION_COOKIE}=admin"},
}


@pytest.mark.reliability(
    "Another session gets 404 on every route: {intruder}",
    section=SECTION,
    did=(
        "Session A creates a conversation and talks in it; the intruder tries GET, POST "
        "(a turn), stop-generating and DELETE on its id"
    ),
    expect=(
        "Every route answers 404 exactly as for an id that does not exist (no existence "
        "oracle); A's conversation is intact afterwards and A can go on"
    ),
)
@pytest.mark.parametrize("intruder", list(INTRUDERS))
def test_other_sessions_get_404_everywhere(test_lab: Lab, intruder: str) -> None:
    with (
        session_client(test_lab.url) as owner,
        session_client(test_lab.url, INTRUDERS[intruder]) as other,
    ):
        conversation_id = new_conversation(owner, "echo")
        _turn(owner, conversation_id, "private words")
        unknown = "f" * 24
        for method, route in ROUTES:
            attempt = other.request(method, route.format(id=conversation_id), json=TURN)
            control = other.request(method, route.format(id=unknown), json=TURN)
            assert attempt.status_code == 404, (method, route, attempt.text)
            assert attempt.json() == control.json() == {"error": "Conversation not found"}
        stored = owner.get(f"/conversation/{conversation_id}").json()["messages"]
        assert [m["content"] for m in stored] == ["private words", "private words"]
        assert _turn(owner, conversation_id, "still mine")[-1].generated_text == "still mine"


def _bit_frequencies(ids: list[str]) -> list[float]:
    bits = [format(int(i, 16), "096b") for i in ids]
    return [sum(b[position] == "1" for b in bits) / len(bits) for position in range(96)]


def _longest_shared_prefix(ids: list[str]) -> int:
    ordered = sorted(ids)
    longest = 0
    for a, b in itertools.pairwise(ordered):
        shared = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        longest = max(longest, shared)
    return longest


@pytest.mark.reliability(
    "Conversation ids carry >= 96 random bits",
    section=SECTION,
    did="Create 400 conversations from 4 sessions in a burst; look at the ids as bits",
    expect=(
        "Every id is 24 lowercase hex characters (96 bits), all distinct, every bit set in "
        "35-65 % of ids, no two ids sharing 8 leading hex digits (no clock or counter)"
    ),
)
def test_conversation_ids_are_random(test_lab: Lab, record_property: RecordProperty) -> None:
    ids = []
    for _ in range(4):
        with session_client(test_lab.url) as client:
            ids += [new_conversation(client, "echo") for _ in range(100)]
    frequencies = _bit_frequencies(ids)
    shared = _longest_shared_prefix(ids)
    record_property("ids", len(ids))
    record_property("bit frequency min", min(frequencies))
    record_property("bit frequency max", max(frequencies))
    record_property("longest shared prefix (hex digits)", shared)
    assert all(CONVERSATION_ID.fullmatch(i) for i in ids), ids[:5]
    assert len(set(ids)) == len(ids)
    assert all(0.35 <= f <= 0.65 for f in frequencies), frequencies
    assert shared < 8


def _set_cookie(response: httpx.Response) -> dict[str, str]:
    """The attributes of the response's session Set-Cookie (lower-case names)."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)]
    assert len(headers) == 1, response.headers
    first, *rest = (part.strip() for part in headers[0].split(";"))
    attributes = {"value": first.partition("=")[2]}
    for part in rest:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return attributes


@pytest.mark.reliability(
    "Session cookie: HttpOnly, SameSite, no Secure over http, random",
    section=SECTION,
    did="GET / and GET /healthz without a cookie, 50 times; once more with the cookie",
    expect=(
        "hf-chat=<uuid4>; Path=/; Expires in the future; HttpOnly; SameSite=Lax, no Secure "
        "(plain http); 50 distinct uuid4 values; a request that has the cookie gets none"
    ),
)
def test_session_cookie_flags(test_lab: Lab, record_property: RecordProperty) -> None:
    values = []
    for index in range(50):
        with httpx.Client(base_url=test_lab.url) as client:
            cookie = _set_cookie(client.get("/" if index % 2 else "/healthz"))
            values.append(cookie["value"])
            again = client.get("/healthz")
            assert not again.headers.get_list("set-cookie")
    record_property("attributes", sorted(cookie))
    assert "httponly" in cookie and "secure" not in cookie
    assert cookie["samesite"].lower() in ("lax", "strict")
    assert cookie["path"] == "/"
    assert (
        parsedate_to_datetime(cookie["expires"]).timestamp()
        > parsedate_to_datetime(again.headers["date"]).timestamp()
    )
    assert len(set(values)) == len(values)
    assert all(uuid.UUID(v).version == 4 for v in values)


def _other_addresses() -> list[str]:
    """This machine's non-loopback IP addresses."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(address.address.split("%")[0])
                if not ip.is_loopback and not ip.is_link_local:
                    found.append(str(ip))
    return found


def _reachable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


@pytest.mark.reliability(
    "Binds loopback unless told otherwise",
    section=SECTION,
    did=(
        "Start h2o-chat serve without --host; read the process's listening sockets (psutil) "
        "and try to connect through every non-loopback address of this machine"
    ),
    expect="It listens on 127.0.0.1 only; every other local address refuses the connection",
)
def test_binds_loopback_by_default(tmp_path: Path, record_property: RecordProperty) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "h2o_chat", "serve", "--port", str(port)]
    argv += ["--db", str(tmp_path / "db.sqlite3"), "--model", "echo=synthetic"]
    log = tmp_path / "serve.log"
    with run_process(argv, port, log, "/healthz", IMPORTABLE) as server:
        sockets = psutil.Process(server.process.pid).net_connections(kind="inet")
        listening = sorted({c.laddr.ip for c in sockets if c.status == psutil.CONN_LISTEN})
        others = _other_addresses()
        reachable = [host for host in others if _reachable(host, port)]
    record_property("listening on", listening)
    record_property("other addresses tried", others or "none on this machine")
    assert listening == ["127.0.0.1"]
    assert reachable == []


INTERNAL_ERRORS = [
    ("GET", f"/conversation/{TRAP_ID}", None),
    ("POST", f"/conversation/{TRAP_ID}", TURN),
    ("DELETE", f"/conversation/{TRAP_ID}", None),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "failing", "messages": [{"role": "user", "content": "x"}]},
    ),
]


@pytest.mark.reliability(
    "Error bodies carry no stack traces or paths: {method} {path}",
    section=SECTION,
    did=(
        "A test engine makes the storage lookup of one conversation id raise RuntimeError "
        "naming a file path (an internal error inside a route), and the failing engine raises "
        "one mid-generation behind the OpenAI door"
    ),
    expect=(
        "HTTP 500 with a short JSON error, no traceback, no path, no exception text; the "
        "traceback is in the server's log; the server keeps serving"
    ),
)
@pytest.mark.parametrize(("method", "path", "body"), INTERNAL_ERRORS)
def test_error_bodies_carry_no_internals(
    test_lab: Lab, method: str, path: str, body: Any, record_property: RecordProperty
) -> None:
    with session_client(test_lab.url) as client:
        response = client.request(method, path, json=body)
    record_property("status", response.status_code)
    record_property("body", response.text[:120])
    assert response.status_code == 500
    error = response.json()["error"]
    if path.startswith("/v1/"):  # OpenAI's error object, so the SDKs can read it
        assert error["type"] and error["message"]
    assert not [leak for leak in LEAKS if leak in response.text], response.text
    assert "exploded" in test_lab.server.log()
    still_serving(test_lab.url)


@pytest.mark.reliability(
    "Engine error inside a stream carries no path: {door}",
    section=SECTION,
    did="The failing engine raises RuntimeError naming a file path after 3 tokens",
    expect="The stream's error event says only that generation failed",
)
@pytest.mark.parametrize("door", ["H2o stream", "OpenAI stream"])
def test_stream_errors_carry_no_internals(test_lab: Lab, door: str) -> None:
    with session_client(test_lab.url) as client:
        if door == "H2o stream":
            events = _turn(client, new_conversation(client, "failing"), "x")
            assert isinstance(events[-1], ErrorEvent)
            assert all(isinstance(e, StreamResponse) for e in events[:-1])
            text = events[-1].error
        else:
            body = {
                "model": "failing",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            }
            text = client.post("/v1/chat/completions", json=body).text
            assert '"error"' in text
    assert not [leak for leak in LEAKS if leak in text], text


API_KEY = "s3cret-key"


@pytest.fixture(params=["--api-key", "H2O_CHAT_API_KEY"])
def keyed_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """A server whose OpenAI door needs the key, given by flag or by environment."""
    if request.param == "--api-key":
        context = lab(tmp_path, "--model", "echo=synthetic", "--api-key", API_KEY)
    else:
        context = lab(tmp_path, "--model", "echo=synthetic", env={"H2O_CHAT_API_KEY": API_KEY})
    with context as running:
        yield running


@pytest.mark.reliability(
    "OpenAI door requires the API key ({keyed_lab})",
    section=SECTION,
    did=(
        "Server with the key set; /v1/models and /v1/chat/completions with no key, a wrong "
        "key, the key without 'Bearer'; then the openai package with the wrong and right key"
    ),
    expect="401 with an OpenAI error (invalid_api_key) without it; answers with it",
)
def test_api_key_is_required(keyed_lab: Lab) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "open sesame"}]
    body = {"model": "echo", "messages": messages}
    refused = [{}, {"authorization": "Bearer wrong"}, {"authorization": API_KEY}]
    with httpx.Client(base_url=keyed_lab.url) as client:
        for headers in refused:
            for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]:
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (headers, path, response.text)
                assert response.json()["error"]["code"] == "invalid_api_key"
    with (
        openai.OpenAI(base_url=keyed_lab.url + "/v1", api_key="wrong", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.chat.completions.create(model="echo", messages=messages)
    with openai.OpenAI(base_url=keyed_lab.url + "/v1", api_key=API_KEY, max_retries=0) as right:
        assert [m.id for m in right.models.list()] == ["echo"]
        answer = right.chat.completions.create(model="echo", messages=messages)
        assert answer.choices[0].message.content == "open sesame"
    still_serving(keyed_lab.url)
