"""``map_prompt`` and its pieces: the pure core, the SQLite cache, and whole runs against real
local servers (ordering, DataFrames, failures, interrupt and resume, restart, host failover)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from ollama_magic.batch import BatchResults, map_prompt
from ollama_magic.batch.cache import ResultCache
from ollama_magic.batch.core import (
    Backoff,
    Items,
    Plan,
    Snapshot,
    cache_key,
    host_fault,
    item_body,
    permanent_fault,
)
from ollama_magic.batch.view import (
    NotebookView,
    TerminalView,
    host_line,
    html_view,
    line,
    summary,
)
from ollama_magic.client import OllamaClient
from ollama_magic.errors import ModelNotFound, ResponseError, StreamError, StreamTruncated
from ollama_magic.result import GenerationResult
from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import bodies, until

# -- the pure core ------------------------------------------------------------------------------


def test_items_of_each_kind_and_refusals() -> None:
    assert Items.of(("a", 1)).rows == [{"item": "a"}, {"item": 1}]
    assert Items.of(pd.Series(["x", "y"], index=[7, 3])).rows == [{"item": "x"}, {"item": "y"}]
    frame = pd.DataFrame({"name": ["ann", "bob"], "age": [3, 4]})
    items = Items.of(frame)
    assert items.rows == [{"name": "ann", "age": 3}, {"name": "bob", "age": 4}]
    assert items.frame is frame
    for bad in ("text", {"a": 1}, 42):
        with pytest.raises(TypeError, match="not a dataset"):
            Items.of(bad)


def test_item_body_fills_row_fields_first_and_leaves_other_braces() -> None:
    body = item_body(
        {"model": "m", "stream": True},
        'Label {name} ({kind}); JSON: {"x": 1} {missing}',
        {"name": "ann"},
        {"kind": "person", "name": "not me"},
    )
    assert body == {
        "model": "m",
        "stream": True,
        "prompt": 'Label ann (person); JSON: {"x": 1} {missing}',
    }


def test_cache_key_ignores_host_independent_noise_but_not_options() -> None:
    base = {"model": "m", "prompt": "p", "options": {"temperature": 0}}
    key = cache_key("/api/generate", base)
    assert key == cache_key("/api/generate", {**base, "stream": False, "keep_alive": -1})
    assert key != cache_key("/api/generate", {**base, "options": {"temperature": 1}})
    assert key != cache_key("/api/chat", base)


def test_host_fault_tells_host_trouble_from_item_trouble() -> None:
    assert host_fault(StreamTruncated("gone"))
    assert host_fault(ResponseError(503, "overloaded"))
    assert host_fault(ModelNotFound("m", "model 'm' not found"))
    assert not host_fault(ResponseError(400, "prompt too long"))
    assert not host_fault(ResponseError(500, "model crashed"))
    assert not host_fault(StreamError("in-band error"))


def test_plan_requeues_a_failed_hosts_item_and_loses_items_when_no_host_is_left() -> None:
    plan = Plan.start(range(4), {"a": 2, "b": 1}, Backoff(retries=0))
    taken = [plan.take("a", 0), plan.take("a", 0), plan.take("a", 0), plan.take("b", 0)]
    assert taken == [0, 1, None, 2]
    plan.host_failed(0, "a", "refused", 0)
    assert plan.take("a", 100) is None  # out for good: no retries allowed
    plan.finish(2, "b", ok=True, tokens=5)
    assert plan.take("b", 0) == 0  # the failed host's item, before item 3
    plan.host_failed(1, "a", "refused", 0)
    plan.host_failed(0, "b", "gone", 0)
    assert plan.lost == {0: "gone", 1: "gone", 3: "gone"}  # the last host's error
    assert plan.over


def test_backoff_doubles_up_to_its_cap_and_gives_up_after_its_retries() -> None:
    backoff = Backoff(first=0.5, cap=3.0, retries=3)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [backoff.gives_up(n) for n in range(1, 5)] == [False, False, False, True]
    assert permanent_fault(ModelNotFound("m", "model 'm' not found"))
    assert not permanent_fault(ResponseError(503, "server busy, please try again"))
    assert not permanent_fault(StreamTruncated("gone"))


def test_a_cooling_host_waits_then_gets_one_item_on_trial_then_all_its_slots() -> None:
    plan = Plan.start(range(5), {"a": 2}, Backoff(first=1.0, cap=10.0, retries=3))
    assert [plan.take("a", 0), plan.take("a", 0)] == [0, 1]
    plan.host_failed(0, "a", "dropped", 10.0)
    plan.host_failed(1, "a", "dropped", 10.1)  # sent before the failure: not a second one
    host = plan.hosts["a"]
    assert (host.failures, host.retry_at, host.out) == (1, 11.0, False)
    assert plan.wake_in("a", 10.25) == 0.75 and not plan.over and not plan.lost
    assert plan.take("a", 10.9) is None  # still cooling: the items wait, none is lost
    assert plan.take("a", 11.0) == 1 and plan.take("a", 11.0) is None  # one on trial
    assert plan.wake_in("a", 11.0) is None
    plan.host_failed(1, "a", "refused", 11.5)
    assert (host.failures, host.retry_at) == (2, 13.5)  # twice as long
    assert plan.take("a", 13.5) == 1
    plan.finish(1, "a", ok=True)  # it answered: up again, every slot
    assert (host.failures, host.error, host.retry_at) == (0, None, None)
    assert [plan.take("a", 13.6), plan.take("a", 13.6), plan.take("a", 13.6)] == [0, 2, None]


def test_a_host_is_out_after_its_retries_and_then_the_rest_is_lost() -> None:
    plan = Plan.start(range(3), {"a": 1}, Backoff(first=1.0, cap=2.0, retries=2))
    now = 0.0
    for failures in (1, 2):
        index = plan.take("a", now)
        assert index == 0
        plan.host_failed(index, "a", f"refused {failures}", now)
        assert plan.take("a", now) is None and not plan.lost
        now = plan.hosts["a"].retry_at or 0.0
    assert now == 3.0  # 1 s, then 2 s
    plan.host_failed(plan.take("a", now) or 0, "a", "refused 3", now)
    assert plan.hosts["a"].out and plan.take("a", 1e9) is None
    assert plan.lost == {0: "refused 3", 1: "refused 3", 2: "refused 3"} and plan.over


def test_a_missing_model_puts_the_host_out_at_once_and_others_go_on() -> None:
    plan = Plan.start(range(3), {"a": 1, "b": 1}, Backoff(retries=5))
    assert (plan.take("a", 0), plan.take("b", 0)) == (0, 1)
    plan.host_failed(0, "a", "model 'm' not found", 0, permanent=True)
    assert plan.hosts["a"].out and plan.hosts["a"].failures == 0 and not plan.lost
    plan.finish(1, "b", ok=True)
    assert plan.take("b", 0) == 0 and plan.take("a", 1e9) is None


def test_snapshot_texts() -> None:
    plan = Plan.start(range(10), {"http://a:1": 2, "http://b:2": 2})
    plan.hosts["http://b:2"].error = "cannot connect"
    plan.hosts["http://b:2"].out = True
    snap = Snapshot(10, 6, 1, 2, 2, 500, 5.0, list(plan.hosts.values()), 5)
    assert line(snap, width=4).startswith("▕███ ▏ 6/10 done · 1 failed · 2 in flight")
    assert "100.0 tokens/s · 3 s left" in line(snap)
    assert "http://b:2 out for good: cannot connect" in line(snap)
    page = html_view(snap)
    assert "<progress value='7' max='10'" in page and "out for good: cannot connect" in page
    end = summary(snap)
    assert end.startswith("10 items: 6 done (2 from the cache), 1 failed, 3 not finished")
    assert "http://b:2 was set aside for good: cannot connect." in end


def test_a_single_host_cooling_down_shows_in_every_view() -> None:
    plan = Plan.start(range(4), {"http://a:1": 2}, Backoff(first=2.0, retries=3))
    plan.host_failed(plan.take("http://a:1", 0) or 0, "http://a:1", "503 server busy", 10.0)
    snap = Snapshot(4, 0, 0, 0, 0, 0, 1.0, list(plan.hosts.values()), 0, now=10.2)
    assert host_line(snap) == "http://a:1 retrying in 2 s"
    assert line(snap).endswith("| http://a:1 retrying in 2 s")
    assert "retrying in 2 s (503 server busy)" in html_view(snap)
    assert "http://a:1 was set aside: 503 server busy." in summary(snap)
    plan.hosts["http://a:1"].failures = 4
    plan.hosts["http://a:1"].out = True
    gone = summary(Snapshot(4, 0, 4, 0, 0, 0, 1.0, list(plan.hosts.values()), 0))
    assert "was set aside for good after 4 failures in a row: 503 server busy." in gone


def test_host_names_are_escaped_in_the_notebook_view() -> None:
    plan = Plan.start(range(2), {"http://a:1": 1, "http://<b>:2": 1})
    page = html_view(Snapshot(2, 0, 0, 0, 0, 0, 0.0, list(plan.hosts.values()), 0))
    assert "<b>" not in page and "&lt;b&gt;" in page


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def show(self, bundle: dict[str, Any], display_id: str) -> None:
        self.calls.append(("show", bundle, display_id))

    def update(self, bundle: dict[str, Any], display_id: str) -> None:
        self.calls.append(("update", bundle, display_id))

    def final(self, bundle: dict[str, Any]) -> None:
        self.calls.append(("final", bundle, ""))


def test_notebook_view_starts_and_ends_empty_and_is_throttled() -> None:
    publisher = Recorder()
    view = NotebookView(publisher, interval=0.5)
    snap = Snapshot(3, 1, 0, 0, 1, 0, 1.0, [], 1)
    for now in (0.0, 0.1, 0.2, 0.6):
        view.update(snap, now)
    view.close()
    kinds = [(kind, bool(bundle)) for kind, bundle, _ in publisher.calls]
    assert kinds == [("show", False), ("update", True), ("update", True), ("update", False)]
    assert len({did for _, _, did in publisher.calls}) == 1


class Tty:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_terminal_view_rewrites_one_line() -> None:
    out = Tty()
    view = TerminalView(out, interval=0.5)  # type: ignore[arg-type]
    view.update(Snapshot(3, 1, 0, 0, 1, 0, 1.0, [], 1), 0.0)
    view.update(Snapshot(3, 2, 0, 0, 1, 0, 1.0, [], 2), 0.1)  # too soon
    view.update(Snapshot(3, 3, 0, 0, 0, 0, 1.0, [], 3), 0.6)
    view.close()
    assert "\n" not in out.text
    assert out.text.count("\r") == 4  # two lines, then the wipe (one \r before, one after)
    assert "1/3 done" in out.text and "3/3 done" in out.text and "2/3" not in out.text


# -- the cache ----------------------------------------------------------------------------------


def test_cache_round_trip_per_model_and_clear(tmp_path: Path) -> None:
    request = {"model": "m", "prompt": "p"}
    result = GenerationResult.from_final(
        "m",
        {"model": "m", "done": True, "done_reason": "stop", "eval_count": 3, "context": [1, 2]},
        answer="hi",
        thinking="hmm",
        response="<think>hmm</think>hi",
        request=request,
        streamed_tokens=3,
    )
    with ResultCache(tmp_path) as store:
        assert store.shares() == [] and not store.path.exists()
        store.put("k1", result)
        store.put("k2", GenerationResult("other", answer="x", done_reason="stop", request={}))
        again = store.get("k1", request)
        assert again is not None
        assert (again.answer, again.thinking, again.eval_count, again.context) == (
            "hi",
            "hmm",
            3,
            [1, 2],
        )
        assert again.request is request and again.ok
        assert store.get("nope", request) is None
        shares = [(s.model, s.count, s.size) for s in store.shares()]
        assert shares == [("m", 1, len("hi") + len("hmm")), ("other", 1, 1)]
        assert store.clear("m") == 1
        assert [s.model for s in store.shares()] == ["other"]
    with ResultCache(tmp_path) as reopened:  # another process, or a restarted kernel
        assert reopened.get("k2", {}) is not None
        assert reopened.clear() == 1


def test_a_damaged_cache_row_is_a_miss(tmp_path: Path) -> None:
    with ResultCache(tmp_path) as store:
        store.put("k", GenerationResult("m", answer="x", done_reason="stop"))
        db = store._connect()
        db.execute("UPDATE results SET value = '{\"model\": 5}'")
        db.commit()
        assert store.get("k", {}) is None


# -- whole runs against real servers ------------------------------------------------------------


@pytest.fixture()
def paced() -> Iterator[OllamaServer]:
    """A server whose echo model streams 100 tokens/s with 4 slots, like a small real model: a
    run lasts past the first half-second tick, so a snapshot sees every slot busy."""
    with OllamaServer(engines=[ScriptedEngine(pace=100, slots=4)]) as server:
        yield server


def generated(server: OllamaServer) -> list[str]:
    return [b["prompt"] for b in bodies(server)]


def test_results_come_back_in_input_order(paced: OllamaServer, tmp_path: Path) -> None:
    words = [("long " * n).strip() for n in (40, 1, 25, 2, 30, 3, 1, 12)]
    seen: list[Snapshot] = []
    results = map_prompt(
        "Repeat: {item}",
        words,
        "echo",
        hosts=paced.url,
        parallel=4,
        cache=tmp_path,
        display="none",
        progress=seen.append,
    )
    assert isinstance(results, BatchResults)
    assert [r.answer for r in results] == [
        f"Echo: <|user|>Repeat: {w}\n<|assistant|>" for w in words
    ]
    assert results.errors == [None] * len(words) and not results.failed
    assert sorted(generated(paced)) == sorted(f"Repeat: {w}" for w in words)
    assert max(s.in_flight for s in seen) == 4  # the slots were used, never more
    assert seen[-1].done + seen[-1].in_flight <= len(words)


def test_every_flag_applies_to_each_item(ollama: OllamaServer, tmp_path: Path) -> None:
    map_prompt(
        "{item}?",
        ["a", "b"],
        "echo",
        hosts=ollama.url,
        flags="--temperature 0 --num-predict 7 -s Short -k 10m",
        cache=tmp_path,
        display="none",
    )
    sent = sorted(bodies(ollama), key=lambda b: b["prompt"])  # two in flight: any order
    for body, item in zip(sent, ["a", "b"], strict=True):
        assert body == {
            "model": "echo",
            "prompt": f"{item}?",
            "options": {"temperature": 0.0, "num_predict": 7},
            "system": "Short",
            "stream": True,
            "keep_alive": "10m",
        }


class Pet(BaseModel):
    name: str
    legs: int


def test_dataframe_gets_a_column_per_schema_field(ollama: OllamaServer, tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a cat", "a bird"], "legs": [4, 2]})
    out = map_prompt(
        "Describe {text}",
        frame,
        "echo",
        hosts=ollama.url,
        format=Pet,
        cache=tmp_path,
        display="none",
    )
    assert list(out.columns) == ["text", "legs", "name", "legs_2", "error"]
    assert list(frame.columns) == ["text", "legs"]  # a copy; the input is untouched
    assert out["error"].tolist() == [None, None]
    assert out["name"].tolist() == ["name", "name"]  # what the scripted model synthesizes
    assert all(isinstance(v, int) for v in out["legs_2"])
    assert bodies(ollama)[0]["format"] == Pet.model_json_schema()


def test_invalid_rows_are_marked_and_not_cached(ollama: OllamaServer, tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a", "b"]})
    run = dict(
        hosts=ollama.url, format=Pet, cache=tmp_path, display="none", flags="--num-predict 3"
    )
    out = map_prompt("{text}", frame, "echo", **run)
    assert out["name"].tolist() == [None, None]
    assert all("not valid for --format" in e for e in out["error"])
    map_prompt("{text}", frame, "echo", **run)
    assert len(bodies(ollama)) == 4  # asked again: a bad answer is not kept


def test_a_failing_item_keeps_its_error_and_the_rest_go_on(
    ollama: OllamaServer, tmp_path: Path
) -> None:
    items = ["short", "much " * 2100, "fine"]  # echo is a vision model: num_ctx is 2048 at least
    run = dict(
        hosts=ollama.url, cache=tmp_path, display="none", flags="--num-ctx 2048 --no-truncate"
    )
    results = map_prompt("{item}", items, "echo", **run)
    assert results.failed == [1]
    assert "exceeds the available context size" in (results.errors[1] or "")
    assert results.answers[0] and results.answers[2] and results.answers[1] is None
    assert "Run it again to retry the failed ones." in results.summary
    ollama.clear()
    again = map_prompt("{item}", items, "echo", **run)
    assert generated(ollama) == ["much " * 2100]  # only the failed item is sent again
    assert again.failed == [1]


def test_a_new_cache_object_answers_everything_without_the_server(
    ollama: OllamaServer, tmp_path: Path
) -> None:
    first = map_prompt(
        "Hi {item}", ["a", "b", "c"], "echo", hosts=ollama.url, cache=tmp_path, display="none"
    )
    ollama.clear()
    second = map_prompt(
        "Hi {item}", ["a", "b", "c"], "echo", hosts=ollama.url, cache=tmp_path, display="none"
    )
    assert bodies(ollama) == []
    assert second.answers == first.answers
    assert second.summary == "3 items: 3 done (3 from the cache)."
    third = map_prompt(
        "Hi {item}", ["a", "b", "c"], "echo", hosts=ollama.url, cache=False, display="none"
    )
    assert len(bodies(ollama)) == 3 and third.answers == first.answers


def test_interrupt_closes_open_streams_and_a_rerun_sends_only_the_rest(tmp_path: Path) -> None:
    with OllamaServer(engines=[ScriptedEngine(pace=100, slots=2)]) as server:
        items = [f"item {i} " + "word " * 10 for i in range(10)]

        def stop_after_three(snapshot: Snapshot) -> None:
            if snapshot.done >= 3:
                raise KeyboardInterrupt  # what Ctrl-C does, at a known moment

        run = dict(hosts=server.url, parallel=2, cache=tmp_path, display="none")
        partial = map_prompt("{item}", items, "echo", progress=stop_after_three, **run)
        assert partial.interrupted
        finished = [i for i, e in enumerate(partial.errors) if e is None]
        assert 3 <= len(finished) < 10
        assert all("interrupted" in (partial.errors[i] or "") for i in partial.failed)
        records = [r for r in server.requests if r.path == "/api/generate"]
        assert len(records) <= len(finished) + 2  # nothing sent after the stop
        for record in records:
            assert record.finished.wait(5)
        cut = [r for r in records if r.disconnected_at is not None]
        assert len(cut) == len(records) - len(finished)  # the streams in flight were closed
        server.clear()
        rest = map_prompt("{item}", items, "echo", **run)
        assert sorted(generated(server)) == sorted(items[i] for i in partial.failed)
        assert not rest.failed
        assert rest.answers == [f"Echo: <|user|>{item}\n<|assistant|>" for item in items]


def test_a_host_stopped_mid_run_is_set_aside_and_the_other_finishes(tmp_path: Path) -> None:
    first = OllamaServer(engines=[ScriptedEngine(pace=200, slots=2)]).start()
    with OllamaServer(engines=[ScriptedEngine(pace=200, slots=2)]) as second:
        items = [f"item {i} " + "word " * 8 for i in range(24)]
        stopper = threading.Thread(
            target=lambda: (until(lambda: len(bodies(first)) >= 3), first.stop())
        )
        stopper.start()
        try:
            results = map_prompt(
                "{item}",
                items,
                "echo",
                hosts=[first.url, second.url],
                parallel=2,
                cache=tmp_path,
                display="none",
            )
        finally:
            stopper.join()
            first.stop()
        assert not results.failed
        assert results.answers == [f"Echo: <|user|>{item}\n<|assistant|>" for item in items]
        assert f"{first.url} was set aside" in results.summary
        on_first = {b["prompt"] for b in bodies(first)}
        on_second = {b["prompt"] for b in bodies(second)}
        assert on_first and on_second and on_first | on_second == set(items)
        cut = [r for r in first.requests if r.path == "/api/generate" and r.disconnected_at]
        assert cut, "the stop cut streams in flight, which the other host then answered"
        assert {r.json["prompt"] for r in cut} <= on_second


def test_a_single_host_restarted_mid_run_is_tried_again_and_every_item_is_done(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine(pace=200, slots=2)
    first = OllamaServer(engines=[engine]).start()
    revived: list[OllamaServer] = []
    refused_twice = threading.Event()

    def watch(snapshot: Snapshot) -> None:
        if snapshot.hosts[0].failures >= 2:  # the stop, then at least one refused retry
            refused_twice.set()

    def bounce() -> None:
        until(lambda: len(bodies(first)) >= 3)
        first.stop()
        if refused_twice.wait(10):
            revived.append(OllamaServer(engines=[engine], port=first.port).start())

    items = [f"item {i} " + "word " * 8 for i in range(16)]
    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    try:
        results = map_prompt(
            "{item}",
            items,
            "echo",
            hosts=first.url,
            parallel=2,
            cache=tmp_path,
            display="none",
            progress=watch,
            retries=6,
            retry_wait=0.1,
        )
    finally:
        bouncer.join()
        first.stop()
        for server in revived:
            server.stop()
    assert revived, "the run kept waiting for the host while it was down"
    assert not results.failed, results.summary
    assert results.answers == [f"Echo: <|user|>{item}\n<|assistant|>" for item in items]
    assert "set aside" not in results.summary  # it came back: nothing to report
    before = {b["prompt"] for b in bodies(first)}
    after = {b["prompt"] for b in bodies(revived[0])}
    assert after and before | after == set(items)
    cut = [r.json["prompt"] for r in first.requests if r.disconnected_at is not None]
    assert cut and set(cut) <= after  # the items the stop cut were sent again


def test_a_single_host_stopped_for_good_ends_the_run_after_its_retries(tmp_path: Path) -> None:
    server = OllamaServer(engines=[ScriptedEngine(pace=200, slots=2)]).start()
    stopper = threading.Thread(
        target=lambda: (until(lambda: len(bodies(server)) >= 3), server.stop())
    )
    items = [f"item {i} " + "word " * 8 for i in range(12)]
    stopper.start()
    started = time.monotonic()
    try:
        results = map_prompt(
            "{item}",
            items,
            "echo",
            hosts=server.url,
            parallel=2,
            cache=tmp_path,
            display="none",
            retries=2,
            retry_wait=0.1,
        )
    finally:
        stopper.join()
        server.stop()
    assert time.monotonic() - started < 8  # 0.1 s + 0.2 s of cool-down, then it gives up
    done = [i for i, e in enumerate(results.errors) if e is None]
    assert 1 <= len(done) < len(items)
    assert all(results.errors[i] == "not sent: every host was set aside" for i in results.failed)
    assert results.summary.startswith(f"12 items: {len(done)} done, {len(results.failed)} failed")
    assert f"{server.url} was set aside for good after 3 failures in a row: " in results.summary
    assert "Run it again to retry the failed ones." in results.summary


def test_a_busy_server_503_is_waited_out_not_failed(tmp_path: Path) -> None:
    """One slot and no queue: every request beyond the one running gets Ollama's 503."""
    with OllamaServer(engines=[ScriptedEngine(pace=100, slots=1, max_queue=0)]) as server:
        results = map_prompt(
            "{item}",
            list("abcdef"),
            "echo",
            hosts=server.url,
            parallel=3,
            cache=tmp_path,
            display="none",
            retries=6,
            retry_wait=0.05,
        )
        assert not results.failed, results.summary
        assert results.answers == [f"Echo: <|user|>{c}\n<|assistant|>" for c in "abcdef"]
        statuses = [r.status for r in server.requests if r.path == "/api/generate"]
        assert statuses.count(503) >= 2 and statuses.count(200) == 6


def test_scripted_max_queue_answers_503_as_ollama_does() -> None:
    from ollama_magic.server.scripted import SERVER_BUSY

    with OllamaServer(engines=[ScriptedEngine(pace=20, slots=1, max_queue=1)]) as server:
        outcomes: list[str] = []
        lock = threading.Lock()

        def ask(prompt: str) -> None:
            with closing(OllamaClient(server.url)) as client:
                body = {"model": "lorem", "prompt": prompt, "options": {"num_predict": 8}}
                try:
                    with client.stream("/api/generate", body) as stream:
                        list(stream)
                    outcome = "ok"
                except ResponseError as exc:
                    outcome = f"{exc.status} {exc.message}"
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=ask, args=(f"p{i}",)) for i in range(3)]
        for n, thread in enumerate(threads, 1):
            thread.start()
            until(lambda n=n: len(server.requests) >= n)  # all three overlap, in order
        for thread in threads:
            thread.join()
        busy = " ".join(SERVER_BUSY.split())  # the client folds the two spaces
        assert sorted(outcomes) == [f"503 {busy}", "ok", "ok"]  # one runs, one waits


def test_ctrl_c_during_a_long_cool_down_stops_at_once(tmp_path: Path) -> None:
    gone = OllamaServer()
    url = gone.url
    gone.stop()  # bound, never served: connections are refused

    def stop_while_cooling(snapshot: Snapshot) -> None:
        if snapshot.hosts[0].retry_at is not None:
            raise KeyboardInterrupt  # what Ctrl-C does, 30 s before the next try

    started = time.monotonic()
    results = map_prompt(
        "{item}",
        ["a", "b"],
        "echo",
        hosts=url,
        cache=tmp_path,
        display="none",
        progress=stop_while_cooling,
        retry_wait=30,
    )
    assert time.monotonic() - started < 5
    assert results.interrupted and results.failed == [0, 1]
    assert "Interrupted" in results.summary and f"{url} was set aside: cannot connect" in (
        results.summary
    )


def test_with_no_host_left_every_item_fails_with_the_reason(tmp_path: Path) -> None:
    gone = OllamaServer()
    url = gone.url
    gone.stop()  # bound, never served: connections are refused
    started = time.monotonic()
    results = map_prompt(
        "{item}",
        ["a", "b"],
        "echo",
        hosts=url,
        cache=tmp_path,
        display="none",
        retries=2,
        retry_wait=0.1,
    )
    assert time.monotonic() - started < 5
    assert results.failed == [0, 1]
    assert results.errors == ["not sent: every host was set aside"] * 2
    assert "set aside for good after 3 failures in a row: cannot connect" in results.summary


def test_a_missing_model_sets_the_host_aside_once(ollama: OllamaServer, tmp_path: Path) -> None:
    results = map_prompt(
        "{item}",
        list("abcdef"),
        "nope",
        hosts=ollama.url,
        parallel=1,
        cache=tmp_path,
        display="none",
    )
    assert len(bodies(ollama)) == 1  # not one 404 per item
    assert "model 'nope' not found" in results.summary and len(results.failed) == 6


def test_the_package_never_imports_pandas() -> None:
    code = (
        "import sys, ollama_magic.batch, ollama_magic.batch.cell, ollama_magic.magics\n"
        "from ollama_magic.batch import map_prompt\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_scripted_slots_queue_requests_beyond_them_as_ollama_does() -> None:
    """Two slots, three requests of half a second each: the third starts only when one ends."""
    with OllamaServer(engines=[ScriptedEngine(pace=20, slots=2)]) as server:
        firsts: list[float] = []
        lock = threading.Lock()

        def ask(prompt: str) -> None:
            with closing(OllamaClient(server.url)) as client:
                body = {"model": "lorem", "prompt": prompt, "options": {"num_predict": 10}}
                with client.stream("/api/generate", body) as stream:
                    for i, _ in enumerate(stream):
                        if i == 0:
                            with lock:
                                firsts.append(time.monotonic())

        threads = [threading.Thread(target=ask, args=(f"p{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        firsts.sort()
        assert firsts[1] - firsts[0] < 0.3  # two slots: two start at once
        assert firsts[2] - firsts[0] > 0.4  # the third waited for a slot (10 tokens at 20/s)


def test_long_prompts_ask_for_the_window_once_per_worker(
    ollama: OllamaServer, tmp_path: Path
) -> None:
    long = "word " * 80  # past the length after which an answer checks whether it was cut
    results = map_prompt(
        "{item} " + long,
        list("abcdef"),
        "echo",
        hosts=ollama.url,
        parallel=2,
        cache=tmp_path,
        display="none",
    )
    assert not results.failed
    assert all(r.num_ctx for r in results)  # each knows its window, for .prompt_cut
    asked = [r for r in ollama.requests if r.path == "/api/ps"]
    assert 1 <= len(asked) <= 2


def test_a_crash_while_keeping_an_answer_fails_that_item_and_the_run_ends(
    ollama: OllamaServer,
) -> None:
    from ollama_magic.batch.runner import Job, Runner

    def keep(index: int, result: GenerationResult) -> None:
        if index == 1:
            raise OSError("disk full")

    job = Job(
        path="/api/generate",
        total=3,
        todo=[0, 1, 2],
        body=lambda i: {"model": "echo", "prompt": f"p{i}"},
        hosts=[ollama.url],
        parallel=2,
        done=keep,
    )
    outcome = Runner(job, lambda url: OllamaClient(url)).run(lambda snapshot: None)
    assert outcome.errors == {1: "OSError: disk full"}
    assert sorted(outcome.results) == [0, 1, 2] and not outcome.interrupted
