"""Pull, push, create, copy and delete: Ollama's progress streams, status codes and error texts,
and what the other endpoints see afterwards."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import pytest
import requests

from ollama_magic.common.names import parse_name
from ollama_magic.server import OllamaServer, ScriptedEngine
from ollama_magic.server.store import CREATE_FROM_MODEL_ONLY, QUANTIZE_UNSUPPORTED, Manifest

from .helpers import exchange, ndjson, post

JSON = "application/json; charset=utf-8"
JSON_NO_CHARSET = "application/json"  # waitForStream and errors raised before a stream started
NDJSON = "application/x-ndjson"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
INSTANT = 1e12  # bytes per second: every transfer in one tick, no waiting
CANNOT = "json: cannot unmarshal"


def statuses(lines: list[dict[str, Any]]) -> list[str]:
    return [line.get("status", "ERROR: " + line.get("error", "")) for line in lines]


def names(server: OllamaServer) -> list[str]:
    return [m["name"] for m in requests.get(server.url + "/api/tags", timeout=5).json()["models"]]


def manifest(server: OllamaServer, name: str) -> Manifest:
    found = server.store.manifest(parse_name(name))
    assert found is not None, name
    return found


def delete(server: OllamaServer, body: Any) -> requests.Response:
    if isinstance(body, bytes):
        return requests.delete(server.url + "/api/delete", data=body, timeout=5)
    return requests.delete(server.url + "/api/delete", json=body, timeout=5)


def generate(server: OllamaServer, model: str, prompt: str = "hi", **body: Any) -> dict[str, Any]:
    reply = post(
        server, "/api/generate", {"model": model, "prompt": prompt, "stream": False, **body}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def installed(fresh: OllamaServer, name: str) -> None:
    fresh.pull_speed = INSTANT
    assert ndjson(post(fresh, "/api/pull", {"model": name}))[-1] == {"status": "success"}


# -- the library ------------------------------------------------------------------------------


def test_library_models_are_not_installed_at_first(srv: OllamaServer) -> None:
    assert "haiku:latest" not in names(srv) and "embedder:latest" not in names(srv)
    reply = post(srv, "/api/show", {"model": "haiku"})
    assert (reply.status_code, reply.json()) == (404, {"error": "model 'haiku:latest' not found"})
    library = [card.name for card in srv.store.library()]
    assert library[-3:] == ["haiku:latest", "embedder:latest", "agent:latest"]
    assert {card.name: card.size for card in ScriptedEngine().library()} == {
        "haiku:latest": 96_000_000,
        "embedder:latest": 45_000_000,
        "agent:latest": 12_000_000,
    }


@pytest.mark.parametrize(
    ("model", "capabilities"),
    [
        ("echo", ["completion", "insert", "vision"]),
        ("reasoner", ["completion"]),
        ("thinker", ["completion", "thinking"]),
        ("chinese", ["completion"]),
        ("slow", ["completion"]),
        ("lorem", ["completion"]),
        ("broken", ["completion"]),
        ("dropper", ["completion"]),
    ],
)
def test_show_capabilities_of_each_scripted_model(
    srv: OllamaServer, model: str, capabilities: list[str]
) -> None:
    assert post(srv, "/api/show", {"model": model}).json()["capabilities"] == capabilities


# -- pull -------------------------------------------------------------------------------------


def test_pull_streams_progress_then_installs(fresh: OllamaServer) -> None:
    mf = fresh.store.library_manifest(parse_name("haiku"))
    assert mf is not None
    weights = mf.layers[0]
    per_tick = weights.size // 3 + 1
    fresh.pull_speed = per_tick / 0.06 + 1  # three ticks of 60 ms
    started = time.monotonic()
    reply = exchange(fresh, "POST", "/api/pull", {"model": "haiku"})
    assert 0.15 < time.monotonic() - started < 2
    assert reply.status == 200 and reply.headers["content-type"] == NDJSON
    assert reply.headers["transfer-encoding"] == "chunked" and reply.terminated
    lines = reply.lines
    assert lines[0] == {"status": "pulling manifest"}
    label = f"pulling {weights.digest[7:19]}"
    assert lines[1] == {"status": label, "digest": weights.digest, "total": weights.size}
    assert [line["completed"] for line in lines[2:5]] == [per_tick, 2 * per_tick, weights.size]
    assert all(list(line) == ["status", "digest", "total", "completed"] for line in lines[2:5])
    # The template, license and config blobs are echo's too: already on disk, one line each.
    rest = mf.blobs()[1:]
    assert lines[5:-3] == [
        {
            "status": f"pulling {b.digest[7:19]}",
            "digest": b.digest,
            "total": b.size,
            "completed": b.size,
        }
        for b in rest
    ]
    assert all(DIGEST.fullmatch(line["digest"]) for line in lines[1:-3])
    assert statuses(lines[-3:]) == ["verifying sha256 digest", "writing manifest", "success"]
    assert names(fresh)[0] == "haiku:latest"  # just written: the newest
    poem = generate(fresh, "haiku", "autumn leaves")["response"]
    assert len(poem.splitlines()) == 3 and "Autumn leaves" in poem


def test_pull_of_an_installed_model_sends_each_layer_complete(fresh: OllamaServer) -> None:
    fresh.pull_speed = 1  # would take weeks if anything were downloaded
    reply = post(fresh, "/api/pull", {"name": "echo"})
    blobs = manifest(fresh, "echo").blobs()
    assert reply.content == b"".join(
        [
            b'{"status":"pulling manifest"}\n',
            *(
                b'{"status":"pulling %s","digest":"%s","total":%d,"completed":%d}\n'
                % (b.digest[7:19].encode(), b.digest.encode(), b.size, b.size)
                for b in blobs
            ),
            b'{"status":"verifying sha256 digest"}\n',
            b'{"status":"writing manifest"}\n',
            b'{"status":"success"}\n',
        ]
    )
    assert sum(b.size for b in blobs) == 8_000_000  # the tags size


def test_pull_unknown_model_is_an_error_line_under_200(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/pull", {"model": "nope"})
    assert (reply.status, reply.headers["content-type"]) == (200, NDJSON)
    assert reply.body == (
        b'{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n'
    )


def test_pull_without_streaming_sends_the_last_object(fresh: OllamaServer) -> None:
    fresh.pull_speed = INSTANT
    reply = exchange(fresh, "POST", "/api/pull", {"model": "embedder", "stream": False})
    assert (reply.status, reply.headers["content-type"]) == (200, JSON_NO_CHARSET)
    assert reply.body == b'{"status":"success"}'
    assert "embedder:latest" in names(fresh)
    failed = exchange(fresh, "POST", "/api/pull", {"model": "nope", "stream": False})
    assert (failed.status, failed.headers["content-type"]) == (500, JSON_NO_CHARSET)
    assert failed.body == b'{"error":"pull model manifest: file does not exist"}'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        ({}, "invalid model name"),
        ({"model": "  "}, "invalid model name"),
        ({"model": "a b"}, "invalid model name"),
        ({"model": "echo:"}, "invalid model name"),
        ({"model": "x:local:cloud"}, 'use either :local or :cloud, not both: "x:local:cloud"'),
        (
            {"model": 5},
            "json: cannot unmarshal number into Go struct field PullRequest.model of type string",
        ),
    ],
)
def test_pull_refuses_bad_names(srv: OllamaServer, body: Any, message: str) -> None:
    reply = post(srv, "/api/pull", body)
    assert (reply.status_code, reply.headers["Content-Type"]) == (400, JSON)
    assert reply.json() == {"error": message}


def test_a_pull_cut_short_installs_nothing(fresh: OllamaServer) -> None:
    fresh.pull_speed = 10_000_000  # haiku would take ten seconds
    sock = socket.create_connection((fresh.host, fresh.port), timeout=10)
    payload = json.dumps({"model": "haiku"}).encode()
    sock.sendall(
        b"POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
        % (len(payload), payload)
    )
    data = b""
    while data.count(b'"completed"') < 2:
        data += sock.recv(4096)
    sock.close()
    closed = time.monotonic()
    (record,) = fresh.requests
    assert record.finished.wait(2)
    assert record.disconnected_at is not None and record.disconnected_at - closed < 0.5
    assert "haiku:latest" not in names(fresh)
    assert post(fresh, "/api/generate", {"model": "haiku"}).status_code == 404
    installed(fresh, "haiku")  # and it can be pulled again
    assert "haiku:latest" in names(fresh)


# -- push -------------------------------------------------------------------------------------


def test_push_then_delete_then_pull_back(fresh: OllamaServer) -> None:
    created = post(fresh, "/api/create", {"model": "me/pirate", "from": "echo", "system": "Arr."})
    assert statuses(ndjson(created))[-1] == "success"
    fresh.pull_speed = INSTANT
    reply = exchange(fresh, "POST", "/api/push", {"model": "me/pirate"})
    assert (reply.status, reply.headers["content-type"]) == (200, NDJSON)
    lines = reply.lines
    blobs = manifest(fresh, "me/pirate").blobs()
    system = next(b for b in blobs if b.text == "Arr.")
    assert lines[0] == {"status": "retrieving manifest"}
    assert lines[1:-2] == [
        {
            "status": f"pushing {b.digest[7:19]}",
            "digest": b.digest,
            "total": b.size,
            "completed": b.size,
        }
        for b in blobs
    ]  # the registry lacked only the system layer: one tick uploads it
    assert system.digest in {line["digest"] for line in lines[1:-2]}
    assert lines[-2:] == [{"status": "pushing manifest"}, {"status": "success"}]

    deleted = delete(fresh, {"model": "me/pirate"})
    assert (deleted.status_code, deleted.content, deleted.headers.get("Content-Type")) == (
        200,
        b"",
        None,
    )
    assert post(fresh, "/api/show", {"model": "me/pirate"}).status_code == 404
    assert statuses(ndjson(post(fresh, "/api/pull", {"model": "me/pirate"})))[-1] == "success"
    assert "Echo: <|system|>Arr." in generate(fresh, "me/pirate")["response"]
    assert names(fresh)[0] == "me/pirate:latest"


def test_push_of_an_unknown_model(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/push", {"model": "nope"})
    assert (reply.status, reply.headers["content-type"]) == (200, NDJSON)
    assert reply.body == (
        b'{"status":"retrieving manifest"}\n'
        b'{"status":"couldn\'t retrieve manifest"}\n'
        b'{"error":"open /root/.ollama/models/manifests/registry.ollama.ai/library/nope/latest:'
        b' no such file or directory"}\n'
    )
    quiet = exchange(srv, "POST", "/api/push", {"name": "nope", "stream": False})
    assert (quiet.status, quiet.headers["content-type"]) == (500, JSON_NO_CHARSET)
    missing = post(srv, "/api/push", {})
    assert (missing.status_code, missing.json()) == (400, {"error": "model is required"})


# -- copy -------------------------------------------------------------------------------------


def test_copy_then_generate_with_the_copy(fresh: OllamaServer, engine: ScriptedEngine) -> None:
    reply = exchange(fresh, "POST", "/api/copy", {"source": "echo", "destination": "parrot"})
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")
    assert "content-type" not in reply.headers
    tags = requests.get(fresh.url + "/api/tags", timeout=5).json()["models"]
    assert tags[0]["name"] == "parrot:latest"
    echo = next(m for m in tags if m["name"] == "echo:latest")
    assert tags[0]["digest"] == echo["digest"]  # Ollama copies the manifest file as it is
    assert (tags[0]["size"], tags[0]["details"]) == (echo["size"], echo["details"])
    answer = generate(fresh, "parrot", "polly")
    assert answer["model"] == "parrot" and answer["response"].startswith("Echo: <|user|>polly")
    ps = requests.get(fresh.url + "/api/ps", timeout=5).json()["models"]
    assert [(m["name"], m["model"]) for m in ps] == [("parrot:latest", "parrot:latest")]
    assert engine.calls == [("load", "echo:latest")]  # the engine runs its own model
    assert generate(fresh, "parrot", keep_alive=0)["done"]
    assert fresh.requests[-1].finished.wait(2)
    assert engine.calls[-1] == ("unload", "echo:latest")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"source": "nope", "destination": "x"}, 404, 'model "nope" not found'),
        ({"source": "", "destination": "x"}, 400, 'source "" is invalid'),
        ({}, 400, 'source "" is invalid'),
        ({"source": "echo", "destination": "a/b/c/d"}, 400, 'destination "a/b/c/d" is invalid'),
        ({"source": "echo", "destination": ""}, 400, 'destination "" is invalid'),
        ({"source": "bad name", "destination": "x"}, 400, 'source "bad name" is invalid'),
    ],
)
def test_copy_errors(srv: OllamaServer, body: dict, status: int, message: str) -> None:
    reply = post(srv, "/api/copy", body)
    assert (reply.status_code, reply.headers["Content-Type"]) == (status, JSON)
    assert reply.json() == {"error": message}


# -- create -----------------------------------------------------------------------------------


def test_create_statuses_and_the_new_model(fresh: OllamaServer) -> None:
    body = {"model": "pirate", "from": "echo", "system": "You are a pirate.", "license": "MIT"}
    reply = exchange(fresh, "POST", "/api/create", {**body, "parameters": {"stop": ["Z"]}})
    assert (reply.status, reply.headers["content-type"]) == (200, NDJSON)
    base = manifest(fresh, "echo").layers
    created = manifest(fresh, "pirate").layers
    assert statuses(reply.lines) == [
        *(f"using existing layer {layer.digest}" for layer in base),
        *(f"creating new layer {layer.digest}" for layer in created[len(base) :]),
        "writing manifest",
        "success",
    ]
    assert [layer.text for layer in created[len(base) :]] == [
        "You are a pirate.",
        "MIT",
        '{"stop":["Z"]}\n',
    ]
    # The same system prompt again: its blob exists now.
    again = ndjson(post(fresh, "/api/create", {**body, "model": "pirate2"}))
    assert statuses(again)[-4:-2] == [
        f"using existing layer {created[-3].digest}",
        f"using existing layer {created[-2].digest}",
    ]
    answer = generate(fresh, "pirate", "ahoy")["response"]
    assert answer.startswith("Echo: <|system|>You are a pirate.\n<|user|>ahoy")
    show = post(fresh, "/api/show", {"model": "pirate"}).json()
    assert show["system"] == "You are a pirate."
    assert show["license"].endswith("Apache-2.0 like the package.\nMIT")  # both licenses
    assert show["parameters"] == 'stop                           "Z"'
    assert 'SYSTEM """You are a pirate."""' in show["modelfile"]
    assert 'PARAMETER stop "Z"' in show["modelfile"]
    assert show["details"]["parent_model"] == "echo:latest"
    tags = requests.get(fresh.url + "/api/tags", timeout=5).json()["models"]
    pirate = next(m for m in tags if m["name"] == "pirate:latest")
    assert pirate["size"] == sum(b.size for b in manifest(fresh, "pirate").blobs())
    assert pirate["digest"] != manifest(fresh, "echo").card.digest


def test_created_parameters_limit_and_merge(fresh: OllamaServer) -> None:
    reply = post(
        fresh, "/api/create", {"model": "terse", "from": "echo", "parameters": {"num_predict": 3}}
    )
    assert statuses(ndjson(reply))[-1] == "success"
    answer = generate(fresh, "terse", "one two three four five")
    assert (answer["eval_count"], answer["done_reason"]) == (3, "length")
    assert generate(fresh, "echo", "one two three four five")["eval_count"] > 3
    merged = {"model": "cool", "from": "thinker", "parameters": {"temperature": 0.2}}
    assert statuses(ndjson(post(fresh, "/api/create", merged)))[-1] == "success"
    assert post(fresh, "/api/show", {"model": "cool"}).json()["parameters"].splitlines() == [
        "temperature                    0.2",
        "top_k                          20",
    ]


def test_a_parameter_of_the_wrong_type_fails_when_used(fresh: OllamaServer) -> None:
    body = {"model": "odd", "from": "echo", "parameters": {"num_predict": "lots"}}
    assert statuses(ndjson(post(fresh, "/api/create", body)))[-1] == "success"  # as Ollama
    show = post(fresh, "/api/show", {"model": "odd"}).json()
    assert show["parameters"] == 'num_predict                    "lots"'
    reply = post(fresh, "/api/generate", {"model": "odd", "prompt": "hi"})
    assert (reply.status_code, reply.json()) == (
        500,
        {"error": 'option "num_predict" must be of type integer'},
    )


def test_created_messages_come_before_the_conversation(fresh: OllamaServer) -> None:
    messages = [{"role": "user", "content": "Ahoy"}, {"role": "assistant", "content": "Arr"}]
    body = {"model": "chatty", "from": "echo", "messages": messages, "stream": False}
    assert post(fresh, "/api/create", body).json() == {"status": "success"}
    turns = "<|user|>Ahoy\n<|assistant|>Arr\n<|user|>hi\n<|assistant|>"
    assert generate(fresh, "chatty")["response"] == "Echo: " + turns
    chat = {"model": "chatty", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    assert post(fresh, "/api/chat", chat).json()["message"]["content"] == "Echo: " + turns
    assert post(fresh, "/api/show", {"model": "chatty"}).json()["messages"] == messages


def test_create_without_streaming(fresh: OllamaServer) -> None:
    reply = exchange(fresh, "POST", "/api/create", {"model": "x", "from": "echo", "stream": False})
    assert (reply.status, reply.headers["content-type"], reply.body) == (
        200,
        JSON_NO_CHARSET,
        b'{"status":"success"}',
    )


def test_create_pulls_a_missing_base_first(fresh: OllamaServer) -> None:
    fresh.pull_speed = INSTANT
    body = {"model": "poet", "from": "haiku", "system": "Write about the sea."}
    lines = statuses(ndjson(post(fresh, "/api/create", body)))
    assert lines[0] == "pulling manifest"
    pulled = lines.index("success")  # PullModel's own success, then create's statuses
    assert lines[pulled - 2 : pulled] == ["verifying sha256 digest", "writing manifest"]
    assert lines[pulled + 1].startswith("using existing layer sha256:")
    assert lines[-3:] == [lines[-3], "writing manifest", "success"]
    assert lines[-3].startswith("creating new layer sha256:")
    assert {"haiku:latest", "poet:latest"} <= set(names(fresh))
    assert len(generate(fresh, "poet", "waves")["response"].splitlines()) == 3


def test_create_from_an_unknown_model(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/create", {"model": "x", "from": "nope"})
    assert (reply.status, reply.headers["content-type"]) == (200, NDJSON)
    assert reply.body == (
        b'{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n'
    )
    assert "x:latest" not in names(srv)


ECHO = {"model": "x", "from": "echo"}


@pytest.mark.parametrize(
    ("body", "status", "content_type", "message"),
    [
        ({"model": "x"}, 400, JSON_NO_CHARSET, "neither 'from' or 'files' was specified"),
        ({"from": "echo"}, 400, JSON, "invalid model name"),
        ({**ECHO, "model": "bad name"}, 400, JSON, "invalid model name"),
        ({**ECHO, "from": "bad name"}, 400, JSON_NO_CHARSET, "invalid model name"),
        ({"model": "x", "files": {"m.gguf": "sha256:ab"}}, 400, JSON, CREATE_FROM_MODEL_ONLY),
        ({**ECHO, "adapters": {"a": "sha256:ab"}}, 400, JSON, CREATE_FROM_MODEL_ONLY),
        ({"model": "x", "files": {"/m": "sha256:ab"}}, 400, JSON, "file path must be relative"),
        ({"model": "x", "files": {"m.gguf": ""}}, 400, JSON, "invalid digest format"),
        ({**ECHO, "quantize": "q4_K_M"}, 400, JSON_NO_CHARSET, QUANTIZE_UNSUPPORTED),
        (
            {**ECHO, "template": "{{ .Prompt"},
            400,
            JSON_NO_CHARSET,
            "template error: template: :1: unclosed action",
        ),
        (
            {**ECHO, "license": 5},
            500,
            JSON_NO_CHARSET,
            f"{CANNOT} number into Go value of type []string",
        ),
        (
            {**ECHO, "license": ["MIT", 1]},
            500,
            JSON_NO_CHARSET,
            f"{CANNOT} number into Go value of type string",
        ),
        (
            {**ECHO, "parameters": "x"},
            400,
            JSON,
            f"{CANNOT} string into Go struct field CreateRequest.parameters"
            " of type map[string]interface {}",
        ),
        (b"", 400, JSON, "missing request body"),
    ],
)
def test_create_errors(
    srv: OllamaServer, body: Any, status: int, content_type: str, message: str
) -> None:
    reply = post(srv, "/api/create", body)
    assert (reply.status_code, reply.headers["Content-Type"]) == (status, content_type)
    assert reply.json() == {"error": message}
    assert "x:latest" not in names(srv)


def test_create_over_an_existing_name_replaces_it(fresh: OllamaServer) -> None:
    first = {"model": "echo", "from": "echo", "system": "First."}
    assert statuses(ndjson(post(fresh, "/api/create", first)))[-1] == "success"
    assert "<|system|>First." in generate(fresh, "echo")["response"]
    # Pulling echo back from the library drops the system layer nothing else uses.
    fresh.pull_speed = INSTANT
    lines = statuses(ndjson(post(fresh, "/api/pull", {"model": "echo"})))
    assert lines[-3:] == ["writing manifest", "removing unused layers", "success"]
    assert "<|system|>" not in generate(fresh, "echo")["response"]


# -- delete -----------------------------------------------------------------------------------


def test_delete_then_the_model_is_gone(fresh: OllamaServer) -> None:
    reply = exchange(fresh, "DELETE", "/api/delete", {"model": "echo"})
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")
    assert "content-type" not in reply.headers
    assert "echo:latest" not in names(fresh)
    gone = post(fresh, "/api/generate", {"model": "echo", "prompt": "hi"})
    assert (gone.status_code, gone.json()) == (404, {"error": "model 'echo' not found"})
    show = post(fresh, "/api/show", {"model": "echo"})
    assert (show.status_code, show.json()) == (404, {"error": "model 'echo:latest' not found"})
    again = delete(fresh, {"name": "echo"})
    assert (again.status_code, again.json()) == (404, {"error": "model 'echo' not found"})
    installed(fresh, "echo")  # an engine's own model comes back from the library
    assert generate(fresh, "echo", "back")["response"] == "Echo: <|user|>back\n<|assistant|>"


def test_delete_leaves_a_loaded_model_loaded(fresh: OllamaServer) -> None:
    generate(fresh, "echo")
    assert fresh.requests[-1].finished.wait(2)
    assert delete(fresh, {"model": "echo"}).status_code == 200
    ps = requests.get(fresh.url + "/api/ps", timeout=5).json()["models"]
    assert [m["name"] for m in ps] == ["echo:latest"]  # Ollama's DeleteHandler doesn't unload


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "missing request body"),
        ({}, 400, "model is required"),
        ({"model": " "}, 400, "model is required"),
        ({"model": "a b"}, 400, 'name "a b" is invalid'),
        ({"model": "x:local:cloud"}, 400, 'use either :local or :cloud, not both: "x:local:cloud"'),
        ({"model": "nope"}, 404, "model 'nope' not found"),
        ({"model": "me/nope:7b"}, 404, "model 'me/nope:7b' not found"),
        (
            {"model": 1},
            400,
            f"{CANNOT} number into Go struct field DeleteRequest.model of type string",
        ),
    ],
)
def test_delete_errors(srv: OllamaServer, body: Any, status: int, message: str) -> None:
    reply = delete(srv, body)
    assert (reply.status_code, reply.headers["Content-Type"]) == (status, JSON)
    assert reply.json() == {"error": message}


def test_post_to_delete_is_not_allowed(srv: OllamaServer) -> None:
    reply = post(srv, "/api/delete", {"model": "echo"})
    assert (reply.status_code, reply.text) == (405, "405 method not allowed")
    assert "echo:latest" in names(srv)


# -- library models and records ---------------------------------------------------------------


def test_embedder_embeds_but_does_not_generate(fresh: OllamaServer) -> None:
    installed(fresh, "embedder")
    show = post(fresh, "/api/show", {"model": "embedder"}).json()
    assert show["capabilities"] == ["embedding"]
    reply = post(fresh, "/api/generate", {"model": "embedder", "prompt": "hi"})
    assert (reply.status_code, reply.json()) == (
        400,
        {"error": '"embedder" does not support generate'},
    )
    chat = post(fresh, "/api/chat", {"model": "embedder", "messages": [{"role": "user"}]})
    assert chat.json() == {"error": '"embedder" does not support chat'}
    vectors = post(fresh, "/api/embed", {"model": "embedder", "input": ["a", "b"]}).json()
    assert len(vectors["embeddings"]) == 2 and len(vectors["embeddings"][0]) == 64


def test_lifecycle_requests_are_recorded(fresh: OllamaServer) -> None:
    delete(fresh, {"model": "slow"})
    post(fresh, "/api/copy", {"source": "echo", "destination": "e2"})
    first, second = fresh.requests
    assert (first.method, first.path, first.json, first.status) == (
        "DELETE",
        "/api/delete",
        {"model": "slow"},
        200,
    )
    assert (second.method, second.path, second.status) == ("POST", "/api/copy", 200)
