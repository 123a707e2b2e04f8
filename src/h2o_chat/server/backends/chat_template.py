"""A conversation as one prompt, rendered with a Hugging Face chat template (Jinja), for the
engines that take text rather than messages (TGI's ``/generate_stream``), as chat-ui did.

A template sees what transformers' ``apply_chat_template`` gives it: ``messages`` (each with
``role`` and ``content``), ``add_generation_prompt`` (true: the answer comes next),
``bos_token`` and ``eos_token``, and ``raise_exception``. Both tokens are empty: the engine's
tokenizer adds the BOS itself (TGI tokenizes ``inputs`` with its special tokens), and an
engine's end token is not known here, so a template that needs one between turns should
write it out. Templates come from elsewhere (a model card), so they run in Jinja's immutable
sandbox, as in transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from h2o_chat.server.backends.base import BackendError, ChatMessage

# ChatML, the format of SmolLM2, Qwen and many others: transformers' old default template.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.TemplateError(message)


class ChatTemplate:
    """A compiled chat template (``source`` None: :data:`CHATML`).

    Raises ``ValueError`` naming the problem when ``source`` is not a valid template.
    """

    def __init__(self, source: str | None = None) -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        try:
            self._template = environment.from_string(CHATML if source is None else source)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"bad chat template (line {exc.lineno}): {exc.message}") from None

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for ``messages``; a :class:`BackendError` (validation) when the template
        refuses them (e.g. roles that do not alternate) or fails."""
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token="",
                eos_token="",
            )
        except jinja2.TemplateError as exc:
            message = f"the chat template refused the conversation: {exc}"
            raise BackendError(message, "validation") from exc
