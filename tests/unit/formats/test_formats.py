"""Tests for strom.formats: round trips, batch/single agreement, error reporting, CSV quoting
and protocol conformance of the serialization schemas."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.formats import (
    AbstractDeserializationSchema,
    AbstractSerializationSchema,
    CsvSchema,
    DeserializationError,
    DeserializationSchema,
    JsonSchema,
    SerializationError,
    SerializationSchema,
    SimpleStringSchema,
)
from strom.formats.base import MAX_PREVIEW_BYTES

# -- protocol conformance ---------------------------------------------------------------------


@pytest.mark.parametrize("schema", [SimpleStringSchema(), JsonSchema(), CsvSchema()])
def test_builtin_schemas_satisfy_both_protocols(schema: object) -> None:
    assert isinstance(schema, DeserializationSchema)
    assert isinstance(schema, SerializationSchema)


class _DuckUpper:
    """Satisfies DeserializationSchema structurally, without the base class."""

    def open(self) -> None:
        pass

    def deserialize(self, message: bytes) -> str:
        return message.decode().upper()

    def deserialize_batch(self, messages: list[bytes]) -> list[str]:
        return [self.deserialize(m) for m in messages]

    def is_end_of_stream(self, next_element: str) -> bool:
        return next_element == "END"


def test_structural_schema_is_recognised_and_incomplete_one_is_not() -> None:
    assert isinstance(_DuckUpper(), DeserializationSchema)
    assert not isinstance(_DuckUpper(), SerializationSchema)

    class OnlyDeserialize:
        def deserialize(self, message: bytes) -> bytes:
            return message

    assert not isinstance(OnlyDeserialize(), DeserializationSchema)
    assert not isinstance(object(), DeserializationSchema)


class _Reversed(AbstractDeserializationSchema[str], AbstractSerializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        if message.startswith(b"!"):
            raise DeserializationError(message, "starts with '!'")
        return message.decode()[::-1]

    def serialize(self, element: str) -> bytes:
        if not element:
            raise SerializationError(element, "empty")
        return element[::-1].encode()


def test_base_class_defaults() -> None:
    schema = _Reversed()
    schema.open()
    assert schema.is_end_of_stream("anything") is False
    assert schema.deserialize_batch([b"abc", b"xy"]) == ["cba", "yx"]
    assert schema.serialize_batch(["abc", "xy"]) == [b"cba", b"yx"]
    assert schema.deserialize_batch([]) == []
    assert schema.serialize_batch([]) == []


def test_base_class_batch_reports_index_of_bad_record() -> None:
    schema = _Reversed()
    with pytest.raises(DeserializationError) as info:
        schema.deserialize_batch([b"ok", b"fine", b"!bad", b"!also-bad"])
    assert info.value.index == 2
    assert "batch index 2" in str(info.value)

    with pytest.raises(SerializationError) as sinfo:
        schema.serialize_batch(["a", "b", ""])
    assert sinfo.value.index == 2


def test_base_classes_are_abstract() -> None:
    with pytest.raises(TypeError):
        AbstractDeserializationSchema()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        AbstractSerializationSchema()  # type: ignore[abstract]


# -- errors -----------------------------------------------------------------------------------


def test_deserialization_error_names_origin_and_reason_and_truncates_payload() -> None:
    raw = b"x" * 10_000
    err = DeserializationError(raw, "broken thing", "topic=t partition=1 offset=5")
    message = str(err)
    assert "topic=t partition=1 offset=5" in message
    assert "broken thing" in message
    assert "10000 bytes" in message
    assert "x" * MAX_PREVIEW_BYTES in message
    assert "x" * (MAX_PREVIEW_BYTES + 1) not in message
    assert len(message) < 300
    assert err.raw is raw
    assert isinstance(err, ValueError)
    # repr() must not dump the payload either (it ends up in logs and tracebacks).
    assert len(repr(err)) < 100


def test_short_payload_is_shown_whole() -> None:
    message = str(DeserializationError(b"\x00abc", "nope", "file=x line=3"))
    assert message.startswith("cannot deserialize record at file=x line=3: nope")
    assert "b'\\x00abc'" in message
    assert "..." not in message


def test_origin_can_be_filled_in_after_the_fact() -> None:
    with pytest.raises(DeserializationError) as info:
        JsonSchema().deserialize(b"{nope")
    err = info.value
    assert err.origin is None
    assert " at " not in str(err).split(":")[0]
    err.origin = "topic=orders partition=3 offset=42"
    assert "at topic=orders partition=3 offset=42" in str(err)


def test_serialization_error_truncates_element_repr() -> None:
    big = {"k": "v" * 100_000, "items": list(range(100_000))}
    err = SerializationError(big, "too weird", "file=out.csv")
    message = str(err)
    assert "too weird" in message
    assert "file=out.csv" in message
    assert len(message) < 400
    assert err.element is big
    assert len(err.element_repr) <= 2 * MAX_PREVIEW_BYTES + 3


def test_serialization_error_survives_broken_repr() -> None:
    class Nasty:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    err = SerializationError(Nasty(), "bad")
    assert "Nasty" in str(err)
    assert "bad" in str(err)


def test_errors_pickle_without_losing_their_fields() -> None:
    err = DeserializationError(b"payload", "reason", "file=a line=1", index=4)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.raw, copy.reason, copy.origin, copy.index) == (
        b"payload",
        "reason",
        "file=a line=1",
        4,
    )
    assert str(copy) == str(err)

    unpicklable = lambda: None  # noqa: E731
    serr = SerializationError(unpicklable, "cannot", index=1)
    scopy = pickle.loads(pickle.dumps(serr))
    assert scopy.element_repr == serr.element_repr
    assert scopy.element is None
    assert scopy.index == 1
    assert str(scopy) == str(serr)


# -- SimpleStringSchema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "hello", "grüße, 世界 🚀", "line\nbreak", "\x00nul", "a" * 10_000]
)
def test_string_round_trip(text: str) -> None:
    schema = SimpleStringSchema()
    assert schema.serialize(text) == text.encode("utf-8")
    assert schema.deserialize(schema.serialize(text)) == text


def test_string_other_encoding() -> None:
    schema = SimpleStringSchema("latin-1")
    assert schema.serialize("café") == b"caf\xe9"
    assert schema.deserialize(b"caf\xe9") == "café"
    assert SimpleStringSchema("utf-16").deserialize("hé".encode("utf-16")) == "hé"


def test_string_unknown_encoding_fails_at_construction() -> None:
    with pytest.raises(LookupError):
        SimpleStringSchema("no-such-codec")


def test_string_invalid_utf8_raises_with_reason_and_truncated_payload() -> None:
    payload = b"ok" + b"\xff" + b"z" * 5_000
    with pytest.raises(DeserializationError) as info:
        SimpleStringSchema().deserialize(payload)
    message = str(info.value)
    assert "invalid utf-8 at byte 2" in message
    assert "5003 bytes" in message
    assert len(message) < 300
    assert info.value.raw == payload
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_string_unencodable_and_wrong_type() -> None:
    with pytest.raises(SerializationError, match="cannot be encoded in ascii"):
        SimpleStringSchema("ascii").serialize("naïve")
    with pytest.raises(SerializationError, match="expected str, got int"):
        SimpleStringSchema().serialize(42)  # type: ignore[arg-type]


def test_string_batch_matches_single_and_locates_failures() -> None:
    schema = SimpleStringSchema()
    messages = [b"a", "ü".encode(), b"", b"xyz"]
    assert schema.deserialize_batch(messages) == [schema.deserialize(m) for m in messages]
    elements = ["a", "ü", "", "xyz"]
    assert schema.serialize_batch(elements) == [schema.serialize(e) for e in elements]

    with pytest.raises(DeserializationError) as info:
        schema.deserialize_batch([b"a", b"b", b"\xc3", b"\xff"])
    assert info.value.index == 2
    assert info.value.raw == b"\xc3"

    with pytest.raises(SerializationError) as sinfo:
        SimpleStringSchema("ascii").serialize_batch(["a", "b", "c", "ö"])
    assert sinfo.value.index == 3


# -- JsonSchema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, None, True], "c": {"d": "é 世界 🚀"}},
        [],
        "just a string",
        0,
        -(2**63),
        2**64 - 1,
        None,
        False,
    ],
)
def test_json_round_trip(value: Any) -> None:
    schema = JsonSchema()
    assert schema.deserialize(schema.serialize(value)) == value


def test_json_options() -> None:
    value = {"b": 1, "a": [1, 2]}
    assert JsonSchema().serialize(value) == b'{"b":1,"a":[1,2]}'
    assert JsonSchema(sort_keys=True).serialize(value) == b'{"a":[1,2],"b":1}'
    assert JsonSchema(append_newline=True).serialize(value) == b'{"b":1,"a":[1,2]}\n'
    both = JsonSchema(sort_keys=True, append_newline=True)
    assert both.serialize_batch([value, 1]) == [b'{"a":[1,2],"b":1}\n', b"1\n"]


def test_json_default_hook() -> None:
    schema = JsonSchema(default=str)
    assert schema.serialize({"amount": Decimal("1.10")}) == b'{"amount":"1.10"}'
    assert schema.serialize_batch([Decimal("2"), 3]) == [b'"2"', b"3"]


def test_json_unsupported_type_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot encode as JSON") as info:
        JsonSchema().serialize({"when": Decimal("1")})
    assert "Decimal" in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"{", b"{'a': 1}", b"[1,]", b"NaN", b"\xff\xfe"])
def test_json_invalid_raises_deserialization_error(payload: bytes) -> None:
    with pytest.raises(DeserializationError, match="invalid JSON") as info:
        JsonSchema().deserialize(payload)
    assert info.value.raw == payload


def test_json_invalid_message_is_truncated() -> None:
    payload = b'{"data": "' + b"q" * 100_000
    with pytest.raises(DeserializationError) as info:
        JsonSchema().deserialize(payload)
    message = str(info.value)
    assert "invalid JSON" in message
    assert f"{len(payload)} bytes" in message
    assert len(message) < 400


def test_json_batch_matches_single_and_locates_failures() -> None:
    schema = JsonSchema()
    messages = [b'{"a":1}', b"[1,2]", b'"s"', b"null"]
    assert schema.deserialize_batch(messages) == [schema.deserialize(m) for m in messages]
    elements = [{"a": 1}, [1, 2], "s", None]
    assert schema.serialize_batch(elements) == [schema.serialize(e) for e in elements]

    with pytest.raises(DeserializationError) as info:
        schema.deserialize_batch([b"1", b"2", b"3", b"{oops", b"[bad"])
    assert info.value.index == 3
    assert info.value.raw == b"{oops"
    assert "batch index 3" in str(info.value)

    with pytest.raises(SerializationError) as sinfo:
        schema.serialize_batch([1, {2}, object()])
    assert sinfo.value.index == 1


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(deadline=None, max_examples=200)
@given(values=st.lists(json_values, max_size=5), sort_keys=st.booleans())
def test_json_property_round_trip_and_batch_agreement(values: list[Any], sort_keys: bool) -> None:
    schema = JsonSchema(sort_keys=sort_keys)
    encoded = schema.serialize_batch(values)
    assert encoded == [schema.serialize(v) for v in values]
    assert schema.deserialize_batch(encoded) == values
    assert [schema.deserialize(e) for e in encoded] == values


# -- CsvSchema --------------------------------------------------------------------------------


def test_csv_plain_round_trip() -> None:
    schema = CsvSchema()
    assert schema.serialize(("a", "b", "c")) == b"a,b,c\n"
    assert schema.deserialize(b"a,b,c\n") == ("a", "b", "c")
    assert schema.deserialize(b"a,b,c") == ("a", "b", "c")
    assert schema.format_row(["x", 1, 2.5]) == "x,1,2.5\n"


@pytest.mark.parametrize(
    ("row", "line"),
    [
        (("a,b", "c"), '"a,b",c\n'),
        (('say "hi"', "x"), '"say ""hi""",x\n'),
        (("two\nlines", "x"), '"two\nlines",x\n'),
        (("carriage\rreturn", "x"), '"carriage\rreturn",x\n'),
        (("crlf\r\n", ""), '"crlf\r\n",\n'),
        (("",), '""\n'),
        ((" padded ", "é世🚀"), " padded ,é世🚀\n"),
    ],
)
def test_csv_quoting(row: tuple[str, ...], line: str) -> None:
    schema = CsvSchema()
    assert schema.format_row(row) == line
    assert schema.deserialize(line.encode()) == row


def test_csv_custom_delimiters() -> None:
    schema = CsvSchema(delimiter=";", quote_char="'", line_delimiter="\r\n")
    line = schema.serialize(["a;b", "it's", "plain", 'dq"'])
    assert line == b"'a;b';'it''s';plain;dq\"\r\n"
    assert schema.deserialize(line) == ("a;b", "it's", "plain", 'dq"')

    no_newline = CsvSchema(delimiter="\t", line_delimiter="")
    assert no_newline.serialize(["a", "b\nc"]) == b'a\t"b\nc"'
    assert no_newline.deserialize(b'a\t"b\nc"') == ("a", "b\nc")


def test_csv_reads_crlf_lines_when_delimiter_is_lf() -> None:
    assert CsvSchema().deserialize(b"a,b\r\n") == ("a", "b")


def test_csv_typed_fields_nulls_and_dicts() -> None:
    schema = CsvSchema(
        field_names=["id", "price", "active", "note"],
        field_types=[int, float, bool, str],
        null_literal="NULL",
    )
    assert schema.serialize((1, 2.5, True, None)) == b"1,2.5,True,NULL\n"
    assert schema.serialize({"note": "n", "active": False, "price": 0.1, "id": 7}) == (
        b"7,0.1,False,n\n"
    )
    assert schema.deserialize(b"1,2.5,True,NULL\n") == (1, 2.5, True, None)
    assert schema.deserialize(b"1,NULL,false,x") == (1, None, False, "x")
    # bool converts by meaning, not by Python truthiness ("False" is a non-empty string).
    assert schema.deserialize(b"1,1,FALSE,x")[2] is False
    assert schema.deserialize(b"1,1,yes,x")[2] is True

    as_dict = CsvSchema(["id", "name"], [int, str], as_dict=True)
    assert as_dict.deserialize(b"3,bob\n") == {"id": 3, "name": "bob"}
    assert as_dict.serialize(as_dict.deserialize(b"3,bob\n")) == b"3,bob\n"


def test_csv_none_without_null_literal_is_an_empty_field() -> None:
    assert CsvSchema().serialize(["a", None, "b"]) == b"a,,b\n"
    empty_is_null = CsvSchema(null_literal="")
    assert empty_is_null.deserialize(b"a,,b") == ("a", None, "b")
    assert empty_is_null.deserialize(empty_is_null.serialize([None])) == (None,)


def test_csv_wrong_field_count() -> None:
    schema = CsvSchema(["a", "b", "c"])
    with pytest.raises(DeserializationError, match="expected 3 fields, got 2"):
        schema.deserialize(b"1,2\n")
    with pytest.raises(DeserializationError, match="expected 3 fields, got 4"):
        schema.deserialize(b"1,2,3,4")
    with pytest.raises(SerializationError, match="expected 3 fields, got 1"):
        schema.serialize(["only"])


def test_csv_bad_conversion_names_field_and_converter() -> None:
    schema = CsvSchema(["id", "price"], [int, float])
    with pytest.raises(DeserializationError) as info:
        schema.deserialize(b"1,cheap\n")
    message = str(info.value)
    assert "field 'price' (#1)" in message
    assert "cannot convert 'cheap' with float" in message
    assert isinstance(info.value.__cause__, ValueError)

    unnamed = CsvSchema(field_types=[int, int])
    with pytest.raises(DeserializationError, match=r"field #0: cannot convert 'x' with int"):
        unnamed.deserialize(b"x,1")


def test_csv_bad_conversion_of_huge_field_stays_short() -> None:
    schema = CsvSchema(field_types=[int])
    with pytest.raises(DeserializationError) as info:
        schema.deserialize(b"9" * 50_000 + b"z")
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'"unterminated,x', "malformed CSV"),
        (b'"a"b,c', "malformed CSV"),
        (b"a,b\nc,d", "expected one CSV record, found 2"),
        (b"ok,\xff", "invalid utf-8"),
    ],
)
def test_csv_malformed_input(payload: bytes, reason: str) -> None:
    with pytest.raises(DeserializationError, match=reason):
        CsvSchema().deserialize(payload)


def test_csv_serialize_rejects_bad_elements() -> None:
    with pytest.raises(SerializationError, match="needs field_names"):
        CsvSchema().serialize({"a": 1})
    schema = CsvSchema(["a", "b"])
    with pytest.raises(SerializationError, match=r"missing fields \['b'\]"):
        schema.serialize({"a": 1})
    with pytest.raises(SerializationError, match=r"unexpected fields \['z'\]"):
        schema.serialize({"a": 1, "b": 2, "z": 3})
    with pytest.raises(SerializationError, match="expected a tuple, list or mapping, got str"):
        schema.serialize("a,b")
    with pytest.raises(SerializationError, match="at least one field"):
        CsvSchema().serialize([])
    with pytest.raises(SerializationError, match="cannot be encoded in ascii"):
        CsvSchema(encoding="ascii").serialize(["ü"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"field_names": ["a", "a"]}, "duplicates"),
        ({"field_names": []}, "must not be empty"),
        ({"field_names": ["a"], "field_types": [int, int]}, "field_types has 2"),
        ({"as_dict": True}, "as_dict=True needs field_names"),
        ({"delimiter": "::"}, "single character"),
        ({"delimiter": "\n"}, "clashes with the line delimiter"),
        ({"quote_char": ","}, "must differ"),
        ({"line_delimiter": ",\n"}, "clashes with the line delimiter"),
    ],
)
def test_csv_rejects_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CsvSchema(**kwargs)


def test_csv_batch_matches_single_and_locates_failures() -> None:
    schema = CsvSchema(["n", "s"], [int, str])
    messages = [b"1,a\n", b'2,"b,c"\n', b"3,\n"]
    assert schema.deserialize_batch(messages) == [schema.deserialize(m) for m in messages]
    rows = [(1, "a"), (2, "b,c"), (3, "")]
    assert schema.serialize_batch(rows) == [schema.serialize(r) for r in rows]
    assert schema.deserialize_batch(schema.serialize_batch(rows)) == rows

    with pytest.raises(DeserializationError) as info:
        schema.deserialize_batch([b"1,a", b"2,b", b"x,c", b"4"])
    assert info.value.index == 2
    assert "field 'n' (#0)" in str(info.value)

    with pytest.raises(SerializationError) as sinfo:
        schema.serialize_batch([(1, "a"), (2,)])
    assert sinfo.value.index == 1


@pytest.mark.parametrize(
    "schema",
    [
        SimpleStringSchema("latin-1"),
        JsonSchema(sort_keys=True, default=str),
        CsvSchema(["a", "b"], [int, bool], delimiter=";", null_literal="-", as_dict=True),
    ],
)
def test_schemas_pickle(schema: Any) -> None:
    copy = pickle.loads(pickle.dumps(schema))
    assert repr(copy) == repr(schema)
    sample = {"a": 1, "b": True} if isinstance(schema, CsvSchema) else "é"
    assert copy.serialize(sample) == schema.serialize(sample)
    assert copy.deserialize(schema.serialize(sample)) == sample


csv_field = st.text(max_size=12)
csv_rows = st.lists(csv_field, min_size=1, max_size=6)


@settings(deadline=None, max_examples=300)
@given(
    rows=st.lists(csv_rows, min_size=1, max_size=5),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quote_char=st.sampled_from(['"', "'"]),
    line_delimiter=st.sampled_from(["\n", "\r\n", "\r", ""]),
)
def test_csv_property_round_trip(
    rows: list[list[str]], delimiter: str, quote_char: str, line_delimiter: str
) -> None:
    schema = CsvSchema(delimiter=delimiter, quote_char=quote_char, line_delimiter=line_delimiter)
    encoded = schema.serialize_batch(rows)
    assert encoded == [schema.serialize(r) for r in rows]
    assert all(e.endswith(line_delimiter.encode()) for e in encoded)
    expected = [tuple(r) for r in rows]
    assert schema.deserialize_batch(encoded) == expected
    assert [schema.deserialize(e) for e in encoded] == expected


@settings(deadline=None, max_examples=200)
@given(
    rows=st.lists(
        st.tuples(st.integers(), st.none() | csv_field.filter(lambda s: s != "NULL")),
        min_size=1,
        max_size=5,
    )
)
def test_csv_property_typed_round_trip_with_nulls(rows: list[tuple[int, str | None]]) -> None:
    schema = CsvSchema(["n", "s"], [int, str], null_literal="NULL")
    assert schema.deserialize_batch(schema.serialize_batch(rows)) == rows
