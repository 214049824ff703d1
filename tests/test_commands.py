"""The ``%ollama`` line-command parser: names, aliases, values and help."""

from __future__ import annotations

import pytest

from ollama_magic.args import ArgsError
from ollama_magic.commands import COMMANDS, command_help, overview, parse_command


@pytest.mark.parametrize(
    ("line", "name"),
    [("list", "models"), ("ls", "models"), ("copy a b", "cp"), ("delete a", "rm"), ("", "help")],
)
def test_aliases(line: str, name: str) -> None:
    assert parse_command(line).name == name


def test_values() -> None:
    load = parse_command("load qwen3:8b --keep-alive -1m --num-ctx 8192 --host :1234").args
    assert (load.model, load.keep_alive, load.num_ctx, load.host) == (
        "qwen3:8b",
        "-1m",
        8192,
        ":1234",
    )
    create = parse_command(
        "create mine --from echo -s 'Talk like a pirate.' -p temperature=0.2 -p stop=END"
    ).args
    assert create.base == "echo" and create.system == "Talk like a pirate."
    assert create.param == ["temperature=0.2", "stop=END"]
    embed = parse_command("embed nomic-embed-text The sky is blue -o v").args
    assert embed.text == ["The", "sky", "is", "blue"] and embed.out == "v"
    assert parse_command("rm a b c").args.models == ["a", "b", "c"]
    assert parse_command("reset").args.conversation == "default"


def test_per_command_help_and_overview() -> None:
    assert parse_command("pull -h").name == "help"
    assert parse_command("pull -h").args.command == "pull"
    assert command_help("ls").startswith("usage: %ollama models")
    text = overview()
    for name, unit in COMMANDS.items():
        assert f"  {name}" in text
        assert unit.parser.prog == f"%ollama {name}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("frob", "unknown command 'frob'"),
        ("pull", "the following arguments are required: NAME"),
        ("create x", "--from"),
        ("load x --num-ctx many", "invalid int value"),
        ("show x --template --license", "not allowed with argument"),
        ("pull 'x", "cannot split the magic line"),
    ],
)
def test_mistakes_are_one_line(line: str, message: str) -> None:
    with pytest.raises(ArgsError, match=message):
        parse_command(line)


def test_vectors_stay_lists_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ollama_magic.commands.models import as_array as _as_array

    assert type(_as_array([[0.5, 0.5]])).__name__ == "ndarray"
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    assert _as_array([[0.5, 0.5]]) == [[0.5, 0.5]]
