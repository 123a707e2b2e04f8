"""``GET /metrics``: Prometheus text whose counters move with the traffic."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from h2o_chat.server.metrics import Latencies
from tests.support.servers import RunningServer
from tests.tgi.servers import BACKENDS, occupied, serve, stream

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_counters_and_histograms_move_after_traffic(lab: RunningServer) -> None:
    before = scrape(lab.url)
    with httpx.Client(base_url=lab.url, timeout=60) as http:
        conversation = http.post("/conversation", json={"model": "five"}).json()["conversationId"]
        response, _ = stream(
            lab.url, f"/conversation/{conversation}", {"inputs": "x"}, cookies=http.cookies
        )
        assert response.status_code == 200
        chat = {"model": "failing", "messages": [{"role": "user", "content": "x"}]}
        assert http.post("/v1/chat/completions", json=chat).status_code == 500
        stream(lab.url, "/models/five/generate_stream", {"inputs": "x"})
        bad = {"inputs": "x", "parameters": {"best_of": 2}}
        assert http.post("/models/five/generate", json=bad).status_code == 422
    after = scrape(lab.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    h2o = {"model": "five", "route": "/conversation/{id}"}
    assert moved("h2o_chat_requests_total", **h2o, outcome="success") == 1
    v1 = {"model": "failing", "route": "/v1/chat/completions"}
    assert moved("h2o_chat_requests_total", **v1, outcome="generation") == 1
    tgi = {"model": "five", "route": "/generate_stream"}
    assert moved("h2o_chat_requests_total", **tgi, outcome="success") == 1
    refused = {"model": "five", "route": "/generate"}
    assert moved("h2o_chat_requests_total", **refused, outcome="validation") == 1
    assert moved("h2o_chat_generated_tokens_total", model="five") == 12  # 5 + the end, twice
    assert moved("h2o_chat_time_to_first_token_seconds_count", model="five") == 2
    assert moved("h2o_chat_inter_token_latency_seconds_count", model="five") == 10
    assert value(after, "h2o_chat_queue_waiting", model="five") == 0
    assert value(after, "process_resident_memory_bytes") > 0


def test_queue_gauges(busy: RunningServer) -> None:
    with occupied(busy):
        samples = scrape(busy.url)
    assert value(samples, "h2o_chat_queue_running", model="slow") == 1
    assert value(samples, "h2o_chat_queue_waiting", model="slow") == 0


def test_openmetrics_when_asked(lab: RunningServer) -> None:
    accept = "application/openmetrics-text; version=1.0.0"
    response = httpx.get(f"{lab.url}/metrics", headers={"accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_the_api_key_protects_metrics(tmp_path: Path) -> None:
    args = ("--api-key", "sesame", "--model", f"slow={BACKENDS}:slow")
    with serve(tmp_path, *args) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert scrape(server.url, authorization="Bearer sesame")


def test_latency_buckets_are_cumulative_and_inclusive() -> None:
    latencies = Latencies((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):
        latencies.observe(seconds)
    assert latencies.buckets() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert latencies.total == pytest.approx(8.65)
