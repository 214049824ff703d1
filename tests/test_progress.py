"""Pull, push and create progress: folding Ollama's status objects, and showing them."""

from __future__ import annotations

import io

from ollama_magic.live import ProgressDisplay, ProgressText
from ollama_magic.progress import Progress

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

PULL = [
    {"status": "pulling manifest"},
    {"status": "pulling aaaaaaaaaaaa", "digest": DIGEST_A, "total": 4_000_000},
    {
        "status": "pulling aaaaaaaaaaaa",
        "digest": DIGEST_A,
        "total": 4_000_000,
        "completed": 1_000_000,
    },
    {
        "status": "pulling aaaaaaaaaaaa",
        "digest": DIGEST_A,
        "total": 4_000_000,
        "completed": 4_000_000,
    },
    {"status": "pulling bbbbbbbbbbbb", "digest": DIGEST_B, "total": 500, "completed": 500},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]


def fed(items: list[dict], step: float = 0.5) -> Progress:
    progress = Progress("pull", "m:latest", 0.0)
    for i, item in enumerate(items):
        progress.feed(item, i * step)
    return progress


def test_layers_totals_and_statuses() -> None:
    progress = fed(PULL)
    assert list(progress.layers) == [DIGEST_A, DIGEST_B]
    assert progress.total == 4_000_500 and progress.completed == 4_000_500
    assert progress.statuses == [
        "pulling manifest",
        "pulling aaaaaaaaaaaa",
        "pulling bbbbbbbbbbbb",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert progress.succeeded
    assert progress.summary(3.5) == "Pulled m:latest: 4.0 MB in 3.5 s."


def test_completed_absent_until_nonzero_counts_as_zero() -> None:
    progress = fed(PULL[:2])
    assert progress.completed == 0 and progress.stopped() == "at 0% (0 B of 4.0 MB)"
    assert "  0%" in progress.line()


def test_rate_comes_from_recent_samples() -> None:
    progress = fed(PULL[:4], step=1.0)  # 4 MB in 2 s between the first and last sample
    assert progress.rate() == 2_000_000
    assert "2.0 MB/s" in progress.line()


def test_line_follows_the_current_layer_and_plain_statuses() -> None:
    progress = fed(PULL[:5])
    assert progress.line().startswith("pulling bbbbbbbbbbbb  100%")
    progress.feed({"status": "verifying sha256 digest"}, 2.5)
    assert progress.line() == "verifying sha256 digest"


def test_create_has_no_bytes() -> None:
    progress = Progress("create", "mine", 0.0)
    for status in ("using existing layer sha256:" + "a" * 64, "writing manifest", "success"):
        progress.feed({"status": status}, 1.0)
    assert progress.summary(1.0) == "Created mine in 1.0 s."
    assert progress.stopped() == "at 'success'"


def test_html_escapes_server_text() -> None:
    progress = Progress("pull", "<b>x</b>", 0.0)
    progress.feed({"status": "<img src=x>", "digest": DIGEST_A, "total": 10, "completed": 5}, 0)
    progress.feed({"status": "<script>"}, 0)
    html = progress.html()
    assert "<img" not in html and "<script>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<progress value='5' max='10'" in html and "5 B of 10 B" in html


def test_html_lists_every_status_with_bars_on_layer_lines() -> None:
    html = fed(PULL).html()
    order = [html.index(status) for status in fed(PULL).statuses]
    assert order == sorted(order)
    assert html.count("<progress") == 2


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, str]] = []

    def show(self, bundle: dict, display_id: str) -> None:
        self.calls.append(("show", bundle, display_id))

    def update(self, bundle: dict, display_id: str) -> None:
        self.calls.append(("update", bundle, display_id))

    def final(self, bundle: dict) -> None:
        self.calls.append(("final", bundle, ""))


def test_notebook_view_starts_and_ends_empty_and_throttles() -> None:
    recorder = Recorder()
    view = ProgressDisplay(recorder, interval=0.1)
    progress = Progress("pull", "m", 0.0)
    for i, item in enumerate(PULL):
        progress.feed(item, i * 0.01)
        view.update(progress, i * 0.01)  # 10 ms apart: only the first passes the throttle
    view.close(progress, 1.0)
    kinds = [(kind, bool(bundle)) for kind, bundle, _ in recorder.calls]
    assert kinds == [("show", False), ("update", True), ("update", False)]
    assert len({display_id for _, _, display_id in recorder.calls}) == 1


def test_terminal_view_prints_each_status_once_without_a_tty() -> None:
    out = io.StringIO()
    view = ProgressText(out)
    progress = Progress("pull", "m", 0.0)
    for i, item in enumerate(PULL):
        progress.feed(item, i)
        view.update(progress, i)
    view.close(progress, 9)
    assert out.getvalue().splitlines() == fed(PULL).statuses


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_view_rewrites_one_line_on_a_tty_and_clears_it() -> None:
    out = Tty()
    view = ProgressText(out, interval=0)
    progress = Progress("pull", "m", 0.0)
    for i, item in enumerate(PULL[:4]):
        progress.feed(item, i)
        view.update(progress, i)
    view.close(progress, 9)
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 4 + 2
    assert "100% ▕" in text and text.endswith("\r")
