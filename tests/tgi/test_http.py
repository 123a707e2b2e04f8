"""TGI's routes over raw HTTP: the answers' shapes, every error status, /info, /health,
/tokenize, the per-model prefix and the API key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import text_generation
from huggingface_hub import InferenceClient

from tests.support.servers import RunningServer
from tests.tgi.servers import occupied, serve, stream

EVENT_STREAM = "text/event-stream"
CONTEXT_OVERFLOW = " ".join(["word"] * 8190)  # the synthetic engine's context is 8192


def post(server: RunningServer, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def test_compat_route_answers_a_one_element_array(lab: RunningServer) -> None:
    response = post(lab, "/", {"inputs": "title please", "parameters": {"details": True}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    [answer] = response.json()
    assert answer["generated_text"] == "title please"
    assert answer["details"]["finish_reason"] == "eos_token"
    assert answer["details"]["prefill"] == []  # only with decoder_input_details
    assert [t["text"] for t in answer["details"]["tokens"]] == ["title", " please", "<|endoftext|>"]
    plain = post(lab, "/", {"inputs": "no details"}).json()
    assert plain == [{"generated_text": "no details"}]


@pytest.mark.parametrize("path", ["/", "/generate_stream", "/models/team/echo", "/invocations"])
def test_streams_are_tgi_events(lab: RunningServer, path: str) -> None:
    body = {"inputs": "one two", "parameters": {"details": True}, "stream": True}
    response, events = stream(lab.url, path, body)
    assert response.headers["content-type"] == EVENT_STREAM
    assert [e["index"] for e in events] == [1, 2, 3]
    assert [e["token"] for e in events] == [
        {"id": 1, "text": "one", "logprob": 0.0, "special": False},
        {"id": 2, "text": " two", "logprob": 0.0, "special": False},
        {"id": 0, "text": "<|endoftext|>", "logprob": 0.0, "special": True},
    ]
    assert [e["generated_text"] for e in events] == [None, None, "one two"]
    assert events[-1]["details"] == {
        "finish_reason": "eos_token",
        "generated_tokens": 3,
        "seed": None,
        "input_length": 2,
    }
    assert all("top_tokens" not in e for e in events)  # only when asked


def test_generate_returns_the_full_text_and_a_stop_sequence(lab: RunningServer) -> None:
    parameters = {"stop": ["stop"], "return_full_text": True, "details": True}
    answer = post(lab, "/generate", {"inputs": "say stop now", "parameters": parameters})
    assert answer.json()["generated_text"] == "say stop nowsay stop"  # TGI keeps the stop
    assert answer.json()["details"]["finish_reason"] == "stop_sequence"


def test_tgi_defaults_for_a_request_that_sets_nothing(lab: RunningServer) -> None:
    answer = post(lab, "/models/many/generate", {"inputs": "go", "parameters": {"details": True}})
    details = answer.json()["details"]
    assert details["generated_tokens"] == 20  # TGI's max_new_tokens, not the 2023 provider's
    assert details["finish_reason"] == "length"
    assert details["seed"] is None  # greedy
    sampled = post(
        lab, "/generate", {"inputs": "go", "parameters": {"details": True, "do_sample": True}}
    )
    assert isinstance(sampled.json()["details"]["seed"], int)


def test_top_n_tokens(lab: RunningServer) -> None:
    body = {"inputs": "a b", "parameters": {"top_n_tokens": 3, "details": True}}
    _, events = stream(lab.url, "/generate_stream", body)
    assert [len(e["top_tokens"]) for e in events] == [3, 3, 3]
    assert [e["top_tokens"][0]["id"] for e in events] == [e["token"]["id"] for e in events]
    details = post(lab, "/generate", body).json()["details"]
    assert [[t["text"] for t in tops] for tops in details["top_tokens"]] == [
        ["a", " alt", " alt"],
        [" b", " alt", " alt"],
        ["", " alt", " alt"],
    ]


def test_tokenize_ids_equal_the_ids_the_stream_reports(lab: RunningServer) -> None:
    text = "tokens as  the stream reports them"
    tokens = post(lab, "/tokenize", {"inputs": text}).json()
    _, events = stream(lab.url, "/generate_stream", {"inputs": text})
    assert [t["id"] for t in tokens] == [e["token"]["id"] for e in events[:-1]]
    assert [text[t["start"] : t["stop"]] for t in tokens] == [t["text"] for t in tokens]
    truncated = post(lab, "/tokenize", {"inputs": text, "parameters": {"truncate": 2}}).json()
    assert truncated == tokens[-2:]


def test_info(lab: RunningServer) -> None:
    info = httpx.get(f"{lab.url}/info").json()
    assert info["model_id"] == "echo"  # the first --model
    assert info["max_input_length"] == info["max_input_tokens"] == 8191
    assert info["max_total_tokens"] == 8192
    assert info["max_best_of"] == 1
    assert info["max_stop_sequences"] == 4
    assert info["max_concurrent_requests"] == 9  # the queue (8) and the one running
    assert info["version"] and info["router"] == "h2o-chat"
    assert info["model_pipeline_tag"] == "text-generation"
    assert httpx.get(f"{lab.url}/models/five/info").json()["model_id"] == "five"
    aliased = httpx.get(f"{lab.url}/models/team/echo/info").json()
    assert (aliased["model_id"], aliased["aliases"]) == ("echo", ["team/echo"])


def test_health_and_the_prefix_root(lab: RunningServer) -> None:
    for path in ("/health", "/models/five/health", "/models/five", "/models/team/echo/"):
        response = httpx.get(lab.url + path)
        assert (response.status_code, response.content) == (200, b"")
    assert httpx.get(lab.url + "/").headers["content-type"].startswith("text/html")  # the page


def test_an_unknown_model_prefix_is_404(lab: RunningServer) -> None:
    response = post(lab, "/models/gpt-17/generate", {"inputs": "hi"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "no model is served at /models/gpt-17/generate",
        "error_type": "not_found",
    }


ERRORS = [
    # (model, parameters, status, error_type, words)
    ("echo", {"best_of": 2, "do_sample": True}, 422, "validation", "best_of"),
    ("echo", {"watermark": True}, 422, "validation", "watermark"),
    ("echo", {"frequency_penalty": 0.5}, 422, "validation", "frequency_penalty"),
    ("echo", {"grammar": {"type": "json", "value": {}}}, 422, "validation", "grammar"),
    ("echo", {"adapter_id": "lora"}, 422, "validation", "adapter_id"),
    ("echo", {"temprature": 0.5}, 422, "validation", "unknown parameter 'temprature'"),
    ("echo", {"temperature": -1}, 422, "validation", "temperature"),
    ("echo", {"top_n_tokens": 6}, 422, "validation", "top_n_tokens"),
    ("echo", {"max_new_tokens": 9000}, 422, "validation", "max_new_tokens"),
    ("failing", {}, 424, "generation", "generation failed"),
    ("incomplete", {}, 500, "incomplete_generation", "unfinished"),
]


@pytest.mark.parametrize(("model", "parameters", "status", "error_type", "words"), ERRORS)
def test_error_statuses_and_events(
    lab: RunningServer,
    model: str,
    parameters: dict[str, Any],
    status: int,
    error_type: str,
    words: str,
) -> None:
    body = {"inputs": "hi", "parameters": parameters}
    answer = post(lab, f"/models/{model}/generate", body)
    assert answer.status_code == status
    assert answer.json()["error_type"] == error_type
    assert words in answer.json()["error"]
    response, events = stream(lab.url, f"/models/{model}/generate_stream", body)
    assert response.status_code == 200  # inside a stream, the error is an event, as TGI sends it
    assert events[-1]["error_type"] == error_type
    assert words in events[-1]["error"]


def test_a_prompt_over_the_context_is_a_validation_error(lab: RunningServer) -> None:
    body = {"inputs": CONTEXT_OVERFLOW, "parameters": {"max_new_tokens": 10}}
    answer = post(lab, "/generate", body)
    assert (answer.status_code, answer.json()["error_type"]) == (422, "validation")
    assert "must be <= 8192" in answer.json()["error"]


def test_a_full_queue_is_429(busy: RunningServer) -> None:
    with occupied(busy):
        answer = post(busy, "/generate", {"inputs": "one more"})
        response, events = stream(busy.url, "/generate_stream", {"inputs": "one more"})
    assert (answer.status_code, answer.json()["error_type"]) == (429, "overloaded")
    assert (response.status_code, events) == (200, [answer.json()])


BAD_BODIES = [
    ({"parameters": {}}, "`inputs`"),
    ({"inputs": ""}, "`inputs`"),
    ({"inputs": ["hi"]}, "`inputs`"),
    ({"inputs": "hi", "parameters": 3}, "`parameters`"),
    ({"inputs": "hi", "stream": "yes"}, "`stream`"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_a_bad_body_is_422(lab: RunningServer, body: dict[str, Any], words: str) -> None:
    answer = post(lab, "/", body)
    assert (answer.status_code, answer.json()["error_type"]) == (422, "validation")
    assert words in answer.json()["error"]


def test_decoder_input_details(lab: RunningServer) -> None:
    body = {"inputs": "in put", "parameters": {"details": True, "decoder_input_details": True}}
    prefill = post(lab, "/generate", body).json()["details"]["prefill"]
    assert prefill == [
        {"id": 1, "text": "in", "logprob": None},
        {"id": 2, "text": " put", "logprob": None},
    ]
    _, events = stream(lab.url, "/generate_stream", body)
    assert events == [
        {
            "error": "`decoder_input_details` == true is not supported when streaming tokens",
            "error_type": "validation",
        }
    ]


def test_the_api_key_protects_the_tgi_routes(tmp_path: Path) -> None:
    with serve(tmp_path, "--api-key", "sesame", "--model", "echo=synthetic") as server:
        key = {"authorization": "Bearer sesame"}
        for path in ("/generate", "/generate_stream", "/", "/tokenize", "/models/echo/generate"):
            refused = post(server, path, {"inputs": "hi"})
            assert refused.status_code == 401, path
            assert refused.json()["error_type"] == "authentication"
            assert post(server, path, {"inputs": "hi"}, headers=key).status_code == 200
        assert httpx.get(f"{server.url}/info").status_code == 401
        assert httpx.get(f"{server.url}/info", headers=key).status_code == 200
        assert httpx.get(f"{server.url}/health").status_code == 200  # for probes
        hub = InferenceClient(base_url=f"{server.url}/models/echo", api_key="sesame")
        assert hub.text_generation("with a key") == "with a key"
        client = text_generation.Client(server.url, headers=key)
        assert client.generate("with a key").generated_text == "with a key"


CHAT_UI_PARAMETERS = {  # a 2023 chat-ui MODELS entry's parameters, as its server sent them
    "temperature": 0.9,
    "top_p": 0.95,
    "repetition_penalty": 1.2,
    "top_k": 50,
    "truncate": 1000,
    "max_new_tokens": 1024,
    "stop": ["</s>"],
    "return_full_text": False,
}


def test_chat_ui_2023_requests(lab: RunningServer) -> None:
    """chat-ui's server streams an answer from the endpoint URL, then asks it for a title."""
    endpoint = "/models/team/echo"
    body = {
        "inputs": "tell me more",
        "parameters": CHAT_UI_PARAMETERS,
        "stream": True,
        "options": {"use_cache": False},  # @huggingface/inference 2.2.0 sends its options too
    }
    response, events = stream(lab.url, endpoint, body)
    assert response.headers["content-type"] == EVENT_STREAM  # exactly, or chat-ui refuses it
    assert events[-1]["generated_text"] == "tell me more"
    assert not any(e["token"]["special"] for e in events[:-1])
    title = {"inputs": "Summarize: tell me more", "parameters": CHAT_UI_PARAMETERS}
    [answer] = post(lab, endpoint, title).json()
    assert answer == {"generated_text": "Summarize: tell me more"}
