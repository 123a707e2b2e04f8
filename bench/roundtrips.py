"""2. Requests and new TCP connections per completion, counted on the server's side."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from bench import MESSAGES, SEED_MODEL, SEED_MODEL_ID, Bench, seed, servers
from bench.proxy import CountingProxy, Counts
from bench.report import Row, Section
from bench.stats import summarize
from h2o_chat import Client
from h2o_chat.protocol import payloads

TOKENS = 16


def count(proxy: CountingProxy, complete: Callable[[], object], times: int) -> list[Counts]:
    """What each of ``times`` completions cost, as seen by the relay."""
    counts = []
    for _ in range(times):
        before = proxy.snapshot()
        complete()
        counts.append(proxy.snapshot() - before)
    return counts


def run(bench: Bench) -> Section:
    """The seed, a cold and a warm client, and follow-up turns, through a counting relay."""
    times = bench.pick(5, 2)
    models = {SEED_MODEL_ID: f"synthetic:{TOKENS}"}
    with servers.h2o(bench.workdir, models) as url, CountingProxy(url) as proxy:
        seed.url = proxy.url
        cases = {
            "seed's code": count(
                proxy, lambda: list(seed._create_completion(SEED_MODEL, MESSAGES, True)), times
            )
        }
        with Client(proxy.url) as client:
            cases["Client, first completion (cold)"] = count(
                proxy, lambda: client.chat(SEED_MODEL, MESSAGES), 1
            )
            cases["Client.chat, warm"] = count(
                proxy, lambda: client.chat(SEED_MODEL, MESSAGES), times
            )
            conversation = client.conversation(SEED_MODEL)
            conversation.send("Hello")
            cases["Conversation.send, follow-up turn"] = count(
                proxy, lambda: conversation.send("And then?"), times
            )
        form = payloads.settings_form(SEED_MODEL_ID)
        referer = {"referer": "https://gpt-gm.h2o.ai/"}
        settings_status = httpx.post(f"{url}/settings", data=form, headers=referer).status_code
    section = Section(
        2,
        "Requests and new connections per completion",
        "A TCP relay in front of the project's server (`synthetic:16` under the seed's falcon-40b "
        "id) counts the connections it accepts and the HTTP requests on them, so the figures are "
        f"the server's view. {times} completions each: the seed's code (a new `requests.Session` "
        "per call), the `Client`'s first completion, the same client warm, and follow-up turns of "
        "a conversation that lives on the server.",
    )
    targets = {"Client.chat, warm": 2, "Conversation.send, follow-up turn": 1}
    for name, counts in cases.items():
        requests = summarize([c.requests for c in counts])
        connections = summarize([c.connections for c in counts])
        target = targets.get(name)
        met = None if target is None else requests.median == target and connections.median == 0
        section.rows.append(
            Row(
                f"requests / new connections: {name}",
                f"{requests.show()} / {connections.show()}",
                "",
                "" if target is None else f"{target} / 0",
                met,
            )
        )
    section.notes.append(
        f"The seed's `POST /settings` (the hosted site's `Referer`, https://gpt-gm.h2o.ai/) gets "
        f"HTTP {settings_status} from the project's server: chat-ui's form-POST referer check "
        "rejects another site's referer. The seed never looks at that answer, so its stream "
        "works all the same; the request still counts."
    )
    return section
