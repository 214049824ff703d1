"""Go's encoding/json behaviour: first-value decoding, syntax error texts, escapes, base64."""

from __future__ import annotations

import pytest

from ollama_magic.server.gojson import (
    EmptyBody,
    GoJSONError,
    decode_base64,
    decode_first,
    dumps,
    dumps_str,
    go_quote,
    raw_field,
    syntax_error,
)


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\t "])
def test_empty_bodies_are_eof(body: bytes) -> None:
    with pytest.raises(EmptyBody):
        decode_first(body)


def test_only_the_first_value_counts() -> None:
    assert decode_first(b' {"a": 1} {"b": 2} trailing junk') == {"a": 1}
    assert decode_first(b"null") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": x}', "invalid character 'x' looking for beginning of value"),
        (b'{"model":"echo"', "unexpected EOF"),
        (b'{"model":', "unexpected EOF"),
        (b"nul", "unexpected EOF"),
        (b"{,}", "invalid character ',' looking for beginning of object key string"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"[1,]", "invalid character ']' looking for beginning of value"),
        (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a":nil}', "invalid character 'i' in literal null (expecting 'u')"),
        (b'{"a":"x\ny"}', "invalid character '\\n' in string literal"),
        (b'{"a":"\\x"}', "invalid character 'x' in string escape code"),
        (b'{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
        (b'{"a":-x}', "invalid character 'x' in numeric literal"),
        (b'{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a":1e}', "invalid character '}' in exponent of numeric literal"),
        (b'{"a":01}', "invalid character '1' after object key:value pair"),
        (b'{"a":NaN}', "invalid character 'N' looking for beginning of value"),
        (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"a":\xc3\xa9}', "invalid character '\u00c3' looking for beginning of value"),
    ],
)
def test_syntax_errors_read_like_go(body: bytes, message: str) -> None:
    with pytest.raises(GoJSONError) as info:
        decode_first(body)
    assert str(info.value) == message


def test_valid_json_has_no_syntax_error() -> None:
    assert syntax_error(b'{"a": [1, -2.5e3, true, null, "\\u00e9"]}') is None


def test_dumps_is_compact_with_gos_html_escapes() -> None:
    data = {"r": "<think>&</think>", "zh": "你好", "n": 1, "line": "a\u2028b\n"}
    assert dumps(data) == (
        b'{"r":"\\u003cthink\\u003e\\u0026\\u003c/think\\u003e","zh":"\xe4\xbd\xa0\xe5\xa5\xbd",'
        b'"n":1,"line":"a\\u2028b\\n"}'
    )
    assert dumps_str("<b>") == b'"\\u003cb\\u003e"'


def test_lone_surrogates_become_replacement_characters() -> None:
    assert dumps("\ud800x") == '"\ufffdx"'.encode()
    assert dumps_str("\udfff") == '"\ufffd"'.encode()


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("echo", '"echo"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("tab\there\n", '"tab\\there\\n"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("你好", '"你好"'),
        ("\u200b", '"\\u200b"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_raw_field_keeps_the_bytes_as_sent() -> None:
    body = b'{"model":"x", "Format" : [1, 2] , "z":{"format":0}}'
    assert raw_field(body, "format") == b"[1, 2]"
    assert raw_field(b'{"format":"a","format":"b"}', "format") == b'"b"'
    assert raw_field(b"[]", "format") is None


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        # Go's encoding/base64 TestDecodeCorrupt
        ("", None),
        ("\n", None),
        ("AAA=\n", None),
        ("AAAA\n", None),
        ("!!!!", 0),
        ("====", 0),
        ("x===", 1),
        ("=AAA", 0),
        ("A=AA", 1),
        ("AA=A", 2),
        ("AA==A", 4),
        ("AAA=AAAA", 4),
        ("AAAAA", 4),
        ("AAAAAA", 4),
        ("A=", 1),
        ("A==", 1),
        ("AA=", 3),
        ("AA==", None),
        ("AAA=", None),
        ("AAAA", None),
        ("AAAAAA=", 7),
        ("YWJjZA=====", 8),
        ("A!\n", 1),
        ("A=\n", 1),
        ("data:image/png;base64,AAAA", 4),
    ],
)
def test_base64_errors_name_gos_offset(text: str, offset: int | None) -> None:
    if offset is None:
        decode_base64(text)
        return
    with pytest.raises(GoJSONError) as info:
        decode_base64(text)
    assert str(info.value) == f"illegal base64 data at input byte {offset}"


def test_base64_decodes_with_newlines() -> None:
    assert decode_base64("aGVs\nbG8=") == b"hello"
