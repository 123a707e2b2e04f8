"""The chat template that renders a conversation for a TGI upstream: ChatML by default, any
Hugging Face template when given, run in Jinja's sandbox."""

from __future__ import annotations

import pytest

from h2o_chat.server.backends.base import BackendError, ChatMessage
from h2o_chat.server.backends.chat_template import ChatTemplate

CONVERSATION = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Capital of Japan?"),
    ChatMessage("assistant", "Tokyo."),
    ChatMessage("user", "And France?"),
)

# Zephyr's template, as its tokenizer_config.json has it: eos_token renders empty here.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)


def test_chatml_is_the_default() -> None:
    assert ChatTemplate().render(CONVERSATION) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCapital of Japan?<|im_end|>\n"
        "<|im_start|>assistant\nTokyo.<|im_end|>\n"
        "<|im_start|>user\nAnd France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_a_hugging_face_template_renders_as_in_transformers() -> None:
    assert ChatTemplate(ZEPHYR).render(CONVERSATION) == (
        "<|system|>\nBe brief.\n<|user|>\nCapital of Japan?\n<|assistant|>\nTokyo.\n"
        "<|user|>\nAnd France?\n<|assistant|>\n"
    )


def test_a_template_may_refuse_a_conversation() -> None:
    template = ChatTemplate(
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
    )
    with pytest.raises(BackendError, match="System role not supported") as caught:
        template.render(CONVERSATION)
    assert caught.value.error_type == "validation"


def test_a_template_runs_in_the_sandbox() -> None:
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(BackendError, match="unsafe"):
        ChatTemplate(escape).render(CONVERSATION)
    mutate = "{{ messages.append({'role': 'user', 'content': 'x'}) }}"
    with pytest.raises(BackendError, match="unsafe"):
        ChatTemplate(mutate).render(CONVERSATION)


def test_a_broken_template_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match=r"bad chat template \(line 2\)"):
        ChatTemplate("fine\n{% for message in messages %}")
