"""The server's routes, one module per front door: :mod:`.h2o` (chat-ui's 2023 protocol and the
web page) and :mod:`.openai` (the OpenAI chat API under ``/v1``); :mod:`.ops` (``/metrics``)."""
