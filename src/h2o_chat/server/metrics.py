"""The server's Prometheus metrics, in a registry of the app's own (never the global one).

Every generation, whichever front door it came through (H2o, ``/v1``, TGI), is counted by
model, route and outcome, and its timing observed: time to the first token (from the moment
it asked for the model, so the queue is included) and the time between tokens. The queues'
waiting and running counts, and the state and load of each replica of a replicated model,
are read when scraped.

The two latency histograms are observed on every token, so they are kept as plain bucket
counts (a bisect and an addition: a seventh of ``prometheus_client.Histogram.observe``
with its locks) and handed to the registry by a collector when scraped; only the event loop
touches them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from h2o_chat.server.backends.base import ReplicaState

# Buckets in seconds: a first token waits for the queue and the prompt (up to minutes on a
# CPU under load); tokens follow each other in milliseconds to a second.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Queue(Protocol):
    """What the metrics read of a model's queue (:class:`h2o_chat.server.scheduler.ModelQueue`)."""

    waiting: int
    running: int


class _Queues(Collector):
    """``h2o_chat_queue_waiting`` and ``h2o_chat_queue_running`` per model, read at scrape."""

    def __init__(self, queues: Callable[[], Mapping[str, Queue]]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "h2o_chat_queue_waiting", "Requests waiting for the model", labels=["model"]
        )
        running = GaugeMetricFamily(
            "h2o_chat_queue_running", "Generations running on the model", labels=["model"]
        )
        for model, queue in self.queues().items():
            waiting.add_metric([model], queue.waiting)
            running.add_metric([model], queue.running)
        yield waiting
        yield running


class _Replicas(Collector):
    """``h2o_chat_replica_up``, ``_in_flight`` and ``_requests_total`` per model and replica
    (its base URL), read at scrape."""

    def __init__(self, replicas: Callable[[], Mapping[str, Sequence[ReplicaState]]]) -> None:
        self.replicas = replicas

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "replica"]
        up = GaugeMetricFamily(
            "h2o_chat_replica_up",
            "1 if the replica serves, 0 while it is down and probed",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "h2o_chat_replica_in_flight", "Requests the replica is serving", labels=labels
        )
        requests = CounterMetricFamily(
            "h2o_chat_replica_requests",
            "Requests sent to the replica (one failed over is counted on each replica it tried)",
            labels=labels,
        )
        for model, states in self.replicas().items():
            for state in states:
                up.add_metric([model, state.url], int(state.up))
                in_flight.add_metric([model, state.url], state.in_flight)
                requests.add_metric([model, state.url], state.requests)
        yield up
        yield in_flight
        yield requests


class Latencies:
    """One model's histogram of latencies: bucket counts (``bounds`` inclusive, then +Inf)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, as the exposition wants them."""
        cumulative, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative


class _Histograms(Collector):
    """A histogram family from each model's :class:`Latencies`, read at scrape."""

    def __init__(self, name: str, documentation: str, by_model: Mapping[str, Latencies]) -> None:
        self.name = name
        self.documentation = documentation
        self.by_model = by_model

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["model"])
        for model, latencies in self.by_model.items():
            family.add_metric([model], latencies.buckets(), latencies.total)
        yield family


class Metrics:
    """The counters and histograms; ``queues()`` gives each served model's queue, and
    ``replicas()`` each replicated model's replicas."""

    def __init__(
        self,
        queues: Callable[[], Mapping[str, Queue]],
        replicas: Callable[[], Mapping[str, Sequence[ReplicaState]]],
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "h2o_chat_requests",
            "Generation requests by model, route and outcome (success, cancelled, or the "
            "error type: validation, overloaded, generation, incomplete_generation)",
            ["model", "route", "outcome"],
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "h2o_chat_generated_tokens",
            "Tokens generated, the end token included",
            ["model"],
            registry=self.registry,
        )
        self.time_to_first_token: dict[str, Latencies] = {}
        self.inter_token_latency: dict[str, Latencies] = {}
        self.registry.register(
            _Histograms(
                "h2o_chat_time_to_first_token_seconds",
                "From asking for the model (queue included) to the first token",
                self.time_to_first_token,
            )
        )
        self.registry.register(
            _Histograms(
                "h2o_chat_inter_token_latency_seconds",
                "Between one token and the next of a generation",
                self.inter_token_latency,
            )
        )
        self.registry.register(_Queues(queues))
        self.registry.register(_Replicas(replicas))
        ProcessCollector(registry=self.registry)

    def timer(self, model: str) -> TokenTimer:
        """A timer for one generation on ``model``, started now."""
        return TokenTimer(self, model)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics as the ``Accept`` header asks (Prometheus text by default) and the
        content type to send them with."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class TokenTimer:
    """Observes one generation's time to first token and the gaps between its tokens."""

    __slots__ = ("_first", "_gap", "_last", "_metrics", "_started", "model")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self.model = model
        self._started = False
        self._last = time.perf_counter()
        self._first = metrics.time_to_first_token.setdefault(model, Latencies(TTFT_BUCKETS))
        self._gap = metrics.inter_token_latency.setdefault(model, Latencies(ITL_BUCKETS))

    def token(self) -> None:
        """A token was sent."""
        now = time.perf_counter()
        (self._gap if self._started else self._first).observe(now - self._last)
        self._last, self._started = now, True

    def end(self, route: str, outcome: str, generated_tokens: int) -> None:
        """The generation ended so (``success``, ``cancelled`` or an error type)."""
        self._metrics.requests.labels(self.model, route, outcome).inc()
        if generated_tokens:
            self._metrics.generated_tokens.labels(self.model).inc(generated_tokens)
