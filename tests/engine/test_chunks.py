"""The pure translation to and from llama.cpp's completion stream (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from h2o_chat.server.backends.base import BackendError, ChatMessage, GenerationRequest, TokenSpan
from h2o_chat.server.backends.llamacpp_chunks import (
    SEED_MODULUS,
    ChunkReader,
    completion_body,
    token_spans,
)

EOS = 2


def token(id_: int, text: str | bytes, logprob: float = -0.5, **extra: Any) -> dict[str, Any]:
    raw = text.encode() if isinstance(text, str) else text
    return {"id": id_, "token": "", "bytes": list(raw), "logprob": logprob, **extra}


def chunk(*tokens: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    logprobs = {"content": list(tokens)} if tokens else None
    return {"choices": [{"text": "", "index": 0, "logprobs": logprobs, "finish_reason": finish}]}


def read(*chunks: dict[str, Any], top_n: int = 0) -> tuple[list[Any], ChunkReader]:
    reader = ChunkReader(EOS, top_n)
    return [t for c in chunks for t in reader.feed(c)], reader


def test_tokens_carry_id_text_and_logprob() -> None:
    tokens, reader = read(chunk(token(504, "The", -0.3)), chunk(token(3575, " capital", -0.02)))
    assert [(t.id, t.text, t.logprob, t.eos) for t in tokens] == [
        (504, "The", -0.3, False),
        (3575, " capital", -0.02, False),
    ]
    assert reader.finish_reason is None


def test_a_character_split_across_tokens_comes_out_whole() -> None:
    japan = "日".encode()
    parts = (b" " + japan[:1], japan[1:2], japan[2:])
    tokens, _ = read(*(chunk(token(index, part)) for index, part in enumerate(parts)))
    assert [t.text for t in tokens] == [" ", "", "日"]


def test_the_end_token_is_streamed_then_stop() -> None:
    tokens, reader = read(
        chunk(token(30, ".")), chunk(token(EOS, b"", -0.33)), chunk(finish="stop")
    )
    assert [(t.id, t.eos) for t in tokens] == [(30, False), (EOS, True)]
    assert tokens[-1].logprob == -0.33 and tokens[-1].text == ""
    assert reader.finish_reason == "stop"


def test_stop_without_a_streamed_end_token_makes_one() -> None:
    tokens, _ = read(chunk(token(30, ".")), chunk(finish="stop"))
    assert (tokens[-1].id, tokens[-1].eos, tokens[-1].logprob) == (EOS, True, None)


def test_an_empty_token_that_is_not_the_end_is_an_ordinary_token() -> None:
    tokens, _ = read(chunk(token(1, b"")), chunk(token(504, "The")))
    assert [(t.id, t.text, t.eos) for t in tokens] == [(1, "", False), (504, "The", False)]


def test_length_ends_without_an_end_token() -> None:
    tokens, reader = read(chunk(token(30, ".")), chunk(token(7, b"")), chunk(finish="length"))
    assert [t.eos for t in tokens] == [False, False]
    assert reader.finish_reason == "length"


def test_progress_chunks_carry_no_tokens() -> None:
    progress = {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": None}]}
    assert read(progress)[0] == []


@pytest.mark.parametrize(
    ("code", "error_type"), [(400, "validation"), (500, "generation"), (None, "generation")]
)
def test_an_error_chunk_is_a_backend_error(code: int | None, error_type: str) -> None:
    with pytest.raises(BackendError) as raised:
        read({"error": {"code": code, "message": "Context size has been exceeded."}})
    assert raised.value.error_type == error_type
    assert raised.value.message == "Context size has been exceeded."


def test_top_tokens_only_when_asked() -> None:
    alternatives = [token(504, "The", -0.3), token(59, "K", -2.9), token(40, "A", -3.5)]
    entry = token(504, "The", -0.3, top_logprobs=alternatives)
    assert read(chunk(entry))[0][0].top_tokens == ()
    (first,), _ = read(chunk(entry), top_n=2)
    assert [(t.id, t.text, t.logprob) for t in first.top_tokens] == [
        (504, "The", -0.3),
        (59, "K", -2.9),
    ]


def _request(**fields: Any) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", "hi"),), max_new_tokens=16, **fields)


def test_greedy_body_turns_off_llama_cpp_samplers() -> None:
    body = completion_body(_request(), [1, 2, 3])
    assert body["prompt"] == [1, 2, 3] and body["max_tokens"] == 16 and body["stream"]
    assert body["temperature"] == 0.0
    assert (body["top_k"], body["top_p"], body["min_p"], body["typical_p"]) == (0, 1.0, 0.0, 1.0)
    assert body["repeat_penalty"] == 1.0
    assert body["logprobs"] == 1 and body["return_progress"]
    assert "seed" not in body


def test_sampling_body_maps_tgi_parameters() -> None:
    request = _request(
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        typical_p=0.95,
        repetition_penalty=1.2,
        seed=SEED_MODULUS + 5,
        top_n_tokens=3,
    )
    body = completion_body(request, [1])
    assert (body["temperature"], body["top_k"], body["top_p"]) == (0.7, 20, 0.9)
    assert (body["typical_p"], body["repeat_penalty"]) == (0.95, 1.2)
    assert body["seed"] == 5  # never llama.cpp's "random" 0xFFFFFFFF
    assert body["logprobs"] == 3


def test_token_spans_map_pieces_to_characters() -> None:
    text = "Hello <|im_end|> 日本"
    pieces = [
        {"id": 19556, "piece": "Hello"},
        {"id": 216, "piece": " "},
        {"id": 2, "piece": "<|im_end|>"},
        {"id": 17097, "piece": [32, 230]},  # " " and the first byte of 日
        {"id": 241, "piece": [151]},
        {"id": 115, "piece": [165]},
        {"id": 40993, "piece": "本"},
    ]
    spans = token_spans(text, pieces)
    assert spans[:3] == [
        TokenSpan(19556, "Hello", 0, 5),
        TokenSpan(216, " ", 5, 6),
        TokenSpan(2, "<|im_end|>", 6, 16),
    ]
    assert [(s.start, s.stop) for s in spans[3:]] == [(16, 18), (17, 18), (17, 18), (18, 19)]
    assert spans[-1].text == "本"


def test_a_token_the_tokenizer_added_is_an_empty_span() -> None:
    spans = token_spans("hi", [{"id": 1, "piece": "<s>"}, {"id": 5, "piece": "hi"}])
    assert spans == [TokenSpan(1, "", 0, 0), TokenSpan(5, "hi", 0, 2)]
