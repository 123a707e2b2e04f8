"""The server's routes, one module per front door: :mod:`.h2o` (chat-ui's 2023 protocol and the
web page), :mod:`.openai` (the OpenAI chat API under ``/v1``), :mod:`.tgi` (TGI's own routes, at
the root and under ``/models/{id}``); and :mod:`.ops` (``/metrics``)."""
