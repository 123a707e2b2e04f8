"""Operations: ``GET /metrics``, the server's Prometheus metrics (behind ``--api-key``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from h2o_chat.server.http import check_api_key
from h2o_chat.server.runtime import runtime_of


async def metrics(request: Request) -> Response:
    """Prometheus text (or OpenMetrics, when the scraper's ``Accept`` asks for it)."""
    runtime = runtime_of(request)
    check_api_key(request, runtime.config.api_key)
    body, content_type = runtime.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})


def routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
