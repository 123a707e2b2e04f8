"""7. Bytes uploaded over a conversation: the seed's flattened history vs server-side turns."""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING

from bench import SEED_MODEL, SEED_MODEL_ID, Bench, seed, servers
from bench.proxy import CountingProxy
from bench.report import Row, Section
from bench.stats import ratios, summarize
from h2o_chat import Client

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TURNS = 20
ANSWER_TOKENS = 32


def _question(turn: int) -> str:
    return f"Question {turn}: and what happened after that, in a few words?"


def seed_turns(proxy: CountingProxy) -> list[int]:
    """Request body bytes of each turn when the seed's code carries the whole history."""
    messages: list[dict[str, str]] = []
    sizes = []
    for turn in range(1, TURNS + 1):
        before = proxy.snapshot()
        messages.append({"role": "user", "content": _question(turn)})
        answer = "".join(seed._create_completion(SEED_MODEL, messages, True))
        messages.append({"role": "assistant", "content": answer})
        sizes.append((proxy.snapshot() - before).body_bytes)
    return sizes


def conversation_turns(proxy: CountingProxy) -> list[int]:
    """Request body bytes of each turn of a conversation kept by the server."""
    sizes = []
    with Client(proxy.url) as client:
        conversation = client.conversation(SEED_MODEL)
        for turn in range(1, TURNS + 1):
            before = proxy.snapshot()
            conversation.send(_question(turn))
            sizes.append((proxy.snapshot() - before).body_bytes)
    return sizes


def run(bench: Bench) -> Section:
    """Both ways, ``runs`` times, through a counting relay in front of the project's server."""
    runs = bench.pick(3, 1)
    totals: dict[str, list[float]] = {"seed": [], "conversation": []}
    last: dict[str, list[float]] = {"seed": [], "conversation": []}
    models = {SEED_MODEL_ID: f"synthetic:{ANSWER_TOKENS}"}
    with servers.h2o(bench.workdir, models) as url, CountingProxy(url) as proxy:
        seed.url = proxy.url
        for _ in range(runs):
            per_turn = {"seed": seed_turns(proxy), "conversation": conversation_turns(proxy)}
            for name, sizes in per_turn.items():
                totals[name].append(sum(sizes))
                last[name].append(sizes[-1])
    seed_growth = (per_turn["seed"][-1] - per_turn["seed"][1]) / (TURNS - 2)
    conversation_growth = (per_turn["conversation"][-1] - per_turn["conversation"][1]) / (TURNS - 2)
    section = Section(
        7,
        f"Bytes uploaded over a {TURNS}-turn conversation",
        f"Request body bytes, counted by the TCP relay of section 2, for {TURNS} turns with "
        f"answers of {ANSWER_TOKENS} tokens (`synthetic:{ANSWER_TOKENS}`): the seed's code, "
        "which sends the whole flattened history (plus its settings form and `/conversation` "
        "body) every turn, vs one `Conversation` whose history lives on the server and whose "
        f"turns send only the new message. {runs} runs; the counts are deterministic.",
        draw=functools.partial(_draw, per_turn),
    )
    section.rows += [
        Row(
            f"bytes uploaded, {TURNS} turns: seed's code",
            summarize(totals["seed"]).show(digits=6, unit=" B"),
            f"{ratios(totals['seed'], totals['conversation']).show(unit='x')} the conversation",
        ),
        Row(
            f"bytes uploaded, {TURNS} turns: Conversation",
            summarize(totals["conversation"]).show(digits=6, unit=" B"),
        ),
        Row(
            f"bytes uploaded by turn {TURNS}: seed / Conversation",
            f"{summarize(last['seed']).show(digits=6)} / "
            f"{summarize(last['conversation']).show(digits=6)} B",
            f"growth per turn: +{seed_growth:.0f} B (quadratic total) vs "
            f"+{conversation_growth:.0f} B (linear total)",
        ),
    ]
    return section


def _draw(per_turn: dict[str, list[int]], ax: Axes) -> None:
    turns = range(1, TURNS + 1)
    for name, sizes in per_turn.items():
        ax.plot(turns, list(itertools.accumulate(sizes)), marker="o", markersize=3, label=name)
    ax.set_xlabel("turn")
    ax.set_ylabel("request body bytes, cumulative")
    ax.legend()
