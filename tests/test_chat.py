"""Chat memory: request bodies, what is remembered (answers, never reasoning), the warning."""

from __future__ import annotations

from ollama_magic.chat import Conversation, context_warning


def test_first_turn_carries_the_system_prompt_and_shared_fields() -> None:
    conversation = Conversation("c", system="Answer in French.")
    generate = {
        "model": "m",
        "prompt": "Hello",
        "images": ["aGk="],
        "options": {"num_ctx": 64},
        "format": "json",
        "keep_alive": "10m",
        "think": "low",
        "stream": False,
    }
    body = conversation.request(generate)
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello", "images": ["aGk="]},
        ],
        "format": "json",
        "options": {"num_ctx": 64},
        "keep_alive": "10m",
        "think": "low",
        "stream": False,
    }


def test_recorded_turns_are_sent_back_without_reasoning() -> None:
    conversation = Conversation()
    first = conversation.request({"model": "m", "prompt": "Hi", "stream": True})
    conversation.record(first, "Hello!", tokens=30)
    second = conversation.request({"model": "other", "prompt": "And?", "stream": True})
    assert second["model"] == "other"
    assert second["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And?"},
    ]
    assert conversation.model == "m" and conversation.tokens == 30 and len(conversation) == 1


def test_history_renders_as_text_and_escaped_markdown() -> None:
    conversation = Conversation("lab", system="Be brief.")
    body = conversation.request({"model": "m", "prompt": "<b>hi</b>", "stream": True})
    conversation.record(body, "Hello <script>", tokens=12)
    assert repr(conversation).splitlines() == [
        "Conversation 'lab': 1 turn, about 12 tokens of context",
        "system: Be brief.",
        "you: <b>hi</b>",
        "m: Hello <script>",
    ]
    shown = conversation._repr_html_()
    assert "<script>" not in shown and "<b>hi" not in shown
    assert "&lt;script&gt;" in shown and "&lt;b&gt;hi" in shown
    assert "empty" in repr(Conversation())


def test_context_warning_threshold() -> None:
    assert context_warning("default", 79, 100) is None
    text = context_warning("default", 80, 100)
    assert text and "80 of 100 context tokens (80%)" in text and "%ollama reset," in text
    assert "%ollama reset lab" in (context_warning("lab", 99, 100) or "")
    assert context_warning("default", 500, None) is None


def test_a_new_system_prompt_counts_only_once_its_turn_is_recorded() -> None:
    conversation = Conversation(system="old")
    body = conversation.request({"model": "m", "prompt": "Hi", "stream": True}, "new")
    assert body["messages"][0] == {"role": "system", "content": "new"}
    assert conversation.system == "old"  # the turn may still fail
    conversation.record(body, "Hello", tokens=None)
    assert conversation.system == "new"
    cleared = conversation.request({"model": "m", "prompt": "x", "stream": True}, "")
    assert cleared["messages"][0]["role"] == "user"
