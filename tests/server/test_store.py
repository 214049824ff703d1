"""The model store without HTTP: Go's model names, manifests, blobs and the progress generators."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from ollama_magic.common.names import RefError, parse_name, parse_ref, pull_name
from ollama_magic.server import ScriptedEngine
from ollama_magic.server.decoding import format_parameters, parse_parameters
from ollama_magic.server.scheduler import Scheduler
from ollama_magic.server.store import (
    ModelStore,
    Progress,
    ProgressError,
    Wait,
    create,
    engine_manifest,
    pull,
)

FAST = 1e12


@pytest.mark.parametrize(
    ("text", "valid", "shortest"),
    [
        ("echo", True, "echo:latest"),
        ("Echo:7B", True, "Echo:7B"),
        ("me/model:q4_0", True, "me/model:q4_0"),
        ("library/echo", True, "echo:latest"),
        ("registry.ollama.ai/library/echo:latest", True, "echo:latest"),
        ("hf.co/me/model:q4", True, "hf.co/me/model:q4"),
        ("localhost:5000/me/model", True, "localhost:5000/me/model:latest"),
        ("http://example.com/me/model", True, "example.com/me/model:latest"),
        ("", False, ":latest"),
        ("echo:", False, "echo:!MISSING!"),
        ("/echo", False, "!MISSING!/echo:latest"),
        ("a b", False, "a b:latest"),
        ("a/b/c/d", False, "a/b/c/d:latest"),
        ("my.ns/model", False, "my.ns/model:latest"),
        ("-model", False, "-model:latest"),
        ("modèle", False, "modèle:latest"),
        ("x" * 81, False, "x" * 81 + ":latest"),
    ],
)
def test_names_as_ollama_parses_them(text: str, valid: bool, shortest: str) -> None:
    name = parse_name(text)
    assert (name.is_valid(), name.display_shortest()) == (valid, shortest)


def test_name_keys_fold_case() -> None:
    assert parse_name("ECHO").key() == parse_name("registry.ollama.ai/library/echo:LATEST").key()
    assert str(parse_name("echo")) == "registry.ollama.ai/library/echo:latest"


def test_source_suffixes() -> None:
    assert parse_ref("  echo:local ") == ("echo", "local")
    assert parse_ref("gpt:20b-cloud") == ("gpt:20b", "cloud")
    assert pull_name("gpt:cloud") == "gpt:cloud"
    assert pull_name("gpt:20b:cloud") == "gpt:20b-cloud"
    with pytest.raises(RefError) as blank:
        parse_ref(" ")
    assert (str(blank.value), blank.value.required) == ("model is required", True)
    with pytest.raises(RefError, match=r'^use either :local or :cloud, not both: "x:local:cloud"$'):
        parse_ref("x:local:cloud")


def test_parameters_round_trip_with_their_types() -> None:
    params = {"stop": ["a b", "\n", '"q"'], "num_predict": 3.0, "temperature": 0.5, "seed": "x"}
    text = format_parameters(params)
    assert text.splitlines()[0] == "num_predict 3"
    assert parse_parameters(text) == {
        "num_predict": 3,
        "seed": "x",  # a string stays a string: using the model then fails, as in Ollama
        "stop": ["a b", "\n", '"q"'],
        "temperature": 0.5,
    }
    assert parse_parameters("use_mmap yes\nnum_ctx 1e400") == {
        "use_mmap": "yes",
        "num_ctx": "1e400",
    }
    # Options Ollama doesn't know keep their JSON type, so engines' own options work.
    assert parse_parameters(format_parameters({"scripted_delay": 0.5, "note": "x"})) == {
        "note": "x",
        "scripted_delay": 0.5,
    }


def test_engine_manifests_add_up_to_the_card() -> None:
    engine = ScriptedEngine()
    for card in engine.models() + engine.library():
        manifest = engine_manifest(engine, card)
        assert sum(blob.size for blob in manifest.blobs()) == card.size
        for blob in manifest.blobs()[1:]:
            assert blob.digest == "sha256:" + hashlib.sha256(blob.text.encode()).hexdigest()
    thinker = next(card for card in engine.models() if card.name == "thinker:latest")
    params = engine_manifest(engine, thinker).layers[-1]
    assert params.text == '{"temperature":0.6,"top_k":20}\n'


def test_a_closed_pull_installs_nothing_but_keeps_finished_blobs() -> None:
    store = ModelStore([ScriptedEngine()])
    haiku = parse_name("haiku")
    steps = pull(store, haiku, speed=10_000_000)
    seen = []
    for step in steps:
        if isinstance(step, Wait):
            break  # the client hangs up during the first tick
        seen.append(step)
    steps.close()
    assert isinstance(seen[-1], Progress) and "completed" not in seen[-1].body()
    assert store.manifest(haiku) is None
    done = list(pull(store, haiku, FAST))
    assert done[-1] == Progress("success") and store.manifest(haiku) is not None


def test_copies_keep_the_digest_and_deletes_free_unused_blobs() -> None:
    store = ModelStore([ScriptedEngine()])
    echo, copy = parse_name("echo"), parse_name("Copy")
    assert store.copy(echo, copy) and not store.copy(parse_name("nope"), copy)
    original, copied = store.manifest(echo), store.manifest(copy)
    assert original is not None and copied is not None
    assert (copied.card.name, copied.card.base) == ("Copy:latest", "echo:latest")
    assert copied.card.digest == original.card.digest
    assert store.delete(echo) is not None and store.delete(echo) is None
    assert all(store.has_blob(blob.digest) for blob in original.blobs())  # the copy uses them
    assert store.delete(copy) is not None
    assert not any(store.has_blob(blob.digest) for blob in original.blobs()[:1])
    assert store.find("copy") is None and store.library_manifest(echo) is not None


def test_create_from_a_created_model_names_its_parent() -> None:
    store = ModelStore([ScriptedEngine()])
    first = list(create(store, parse_name("a"), {"from": "echo", "system": "One."}, FAST))
    assert first[-2:] == [Progress("writing manifest"), Progress("success")]
    list(create(store, parse_name("b"), {"from": "a", "parameters": {"top_k": 5}}, FAST))
    b = store.manifest(parse_name("b"))
    assert b is not None
    assert (b.card.base, b.card.parent_model, b.card.system) == ("echo:latest", "a:latest", "One.")
    assert parse_parameters(b.card.parameters) == {"top_k": 5}
    with pytest.raises(ProgressError) as failure:
        list(create(store, parse_name("c"), {"model": "c"}, FAST))
    assert (str(failure.value), failure.value.status) == (
        "neither 'from' or 'files' was specified",
        400,
    )


def test_the_scheduler_loads_the_base_once_for_a_model_and_its_copy() -> None:
    engine = ScriptedEngine()
    echo = next(card for card in engine.models() if card.name == "echo:latest")
    copy = replace(echo, name="parrot:latest", base="echo:latest")
    scheduler = Scheduler()
    options = {"num_ctx": 4096}
    first = scheduler.acquire(engine, echo, options, 0)
    second = scheduler.acquire(engine, copy, options, 0)
    assert sorted(entry.card.name for entry, _ in scheduler.loaded()) == [
        "echo:latest",
        "parrot:latest",
    ]
    scheduler.release(first)
    assert engine.calls == [("load", "echo:latest"), ("load", "echo:latest")]  # parrot runs on
    scheduler.release(second)
    assert engine.calls[-1] == ("unload", "echo:latest") and scheduler.loaded() == []
    scheduler.close()
