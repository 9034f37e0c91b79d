"""CSV records: one delimited line per record, for Kafka values and text/CSV files.

Writing goes through the stdlib :mod:`csv` writer (minimal quoting, quotes doubled), so any
field may contain the delimiter, the quote character or line breaks. Reading takes a
``str.split`` fast path when a line has no quote character and no line break, which is
exactly when the stdlib reader would find nothing to unquote.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .base import (
    AbstractDeserializationSchema,
    AbstractSerializationSchema,
    DeserializationError,
    SerializationError,
    _bounded_repr,
    _first_deserialization_failure,
    _shorten,
)

__all__ = ["CsvSchema"]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _parse_bool(text: str) -> bool:
    # bool("False") is True, so a plain ``bool`` converter would silently accept garbage.
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


class _Passthrough:
    # csv.writer.writerow returns whatever write() returns: the formatted line, with no
    # buffer to reset between rows.
    def write(self, line: str) -> str:
        return line


class CsvSchema(AbstractDeserializationSchema[Any], AbstractSerializationSchema[Any]):
    """One CSV line per record.

    ``deserialize`` returns a tuple of fields, or a dict keyed by ``field_names`` when
    ``as_dict`` is true. Fields equal to ``null_literal`` become ``None``; the others are
    passed through ``field_types`` when given (``bool`` accepts true/false, yes/no, 1/0, not
    Python's truthiness). When ``field_names`` or ``field_types`` is given, every record must
    have exactly that many fields. A trailing ``line_delimiter`` on the input is ignored.

    ``serialize`` accepts a tuple, a list, or a mapping (written in ``field_names`` order; it
    must have exactly those keys) and returns the line *including* ``line_delimiter``, so
    records can be concatenated into a file; pass ``line_delimiter=""`` for Kafka values.
    ``None`` is written as ``null_literal``, or as an empty field when that is not set.
    """

    def __init__(
        self,
        field_names: Sequence[str] | None = None,
        field_types: Sequence[Callable[[str], Any]] | None = None,
        delimiter: str = ",",
        quote_char: str = '"',
        line_delimiter: str = "\n",
        null_literal: str | None = None,
        encoding: str = "utf-8",
        as_dict: bool = False,
    ) -> None:
        if isinstance(field_names, str):
            raise TypeError("field_names must be a sequence of names, not a str")
        names = tuple(field_names) if field_names is not None else None
        types = tuple(field_types) if field_types is not None else None
        if names is not None:
            if not names:
                raise ValueError("field_names must not be empty")
            if len(set(names)) != len(names):
                raise ValueError(f"field_names has duplicates: {names!r}")
        if types is not None and not types:
            raise ValueError("field_types must not be empty")
        if names is not None and types is not None and len(names) != len(types):
            raise ValueError(
                f"field_names has {len(names)} entries but field_types has {len(types)}"
            )
        if as_dict and names is None:
            raise ValueError("as_dict=True needs field_names")
        for label, char in (("delimiter", delimiter), ("quote_char", quote_char)):
            if len(char) != 1:
                raise ValueError(f"{label} must be a single character, got {char!r}")
            if char in "\r\n" or char in line_delimiter:
                raise ValueError(f"{label} {char!r} clashes with the line delimiter")
        if delimiter == quote_char:
            raise ValueError("delimiter and quote_char must differ")
        codecs.lookup(encoding)

        self.field_names = names
        self.field_types = types
        self.delimiter = delimiter
        self.quote_char = quote_char
        self.line_delimiter = line_delimiter
        self.null_literal = null_literal
        self.encoding = encoding
        self.as_dict = as_dict
        self._arity = len(names) if names is not None else len(types) if types else None
        self._converters = (
            tuple(_parse_bool if t is bool else t for t in types) if types is not None else None
        )
        self._build_writer()

    def _build_writer(self) -> None:
        # The writer quotes a field when it contains any character of its line terminator,
        # and only then (Python 3.11 leaves a lone "\r" unquoted under "\n"). Adding the
        # missing line-break characters to the terminator forces quoting of every line break,
        # which the reader needs; the extra suffix is cut off each written line.
        extra = "".join(c for c in "\r\n" if c not in self.line_delimiter)
        self._cut = len(extra)
        writer = csv.writer(
            _Passthrough(),
            delimiter=self.delimiter,
            quotechar=self.quote_char,
            quoting=csv.QUOTE_MINIMAL,
            doublequote=True,
            lineterminator=self.line_delimiter + extra,
        )
        self._writerow: Callable[[Sequence[Any]], str] = writer.writerow

    def __getstate__(self) -> dict[str, Any]:
        # csv writers cannot be pickled; schemas travel to worker processes.
        state = self.__dict__.copy()
        del state["_writerow"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_writer()

    def __repr__(self) -> str:
        return (
            f"CsvSchema(field_names={self.field_names!r}, field_types={self.field_types!r}, "
            f"delimiter={self.delimiter!r}, quote_char={self.quote_char!r}, "
            f"line_delimiter={self.line_delimiter!r}, null_literal={self.null_literal!r}, "
            f"encoding={self.encoding!r}, as_dict={self.as_dict!r})"
        )

    # -- reading --------------------------------------------------------------------------

    def _split(self, text: str, raw: bytes) -> list[str]:
        line_delimiter = self.line_delimiter
        if line_delimiter and text.endswith(line_delimiter):
            text = text[: -len(line_delimiter)]
        if self.quote_char not in text and "\n" not in text and "\r" not in text:
            return text.split(self.delimiter)
        try:
            rows = list(
                csv.reader(
                    io.StringIO(text, newline=""),
                    delimiter=self.delimiter,
                    quotechar=self.quote_char,
                    doublequote=True,
                    strict=True,
                )
            )
        except csv.Error as exc:
            raise DeserializationError(raw, f"malformed CSV: {exc}") from exc
        if len(rows) != 1:
            raise DeserializationError(raw, f"expected one CSV record, found {len(rows)}")
        return rows[0]

    def _field_label(self, i: int) -> str:
        if self.field_names is not None:
            return f"{self.field_names[i]!r} (#{i})"
        return f"#{i}"

    def _convert(self, fields: list[str], raw: bytes) -> Any:
        if self._arity is not None and len(fields) != self._arity:
            raise DeserializationError(raw, f"expected {self._arity} fields, got {len(fields)}")
        null = self.null_literal
        converters = self._converters
        values: list[Any]
        if converters is None:
            values = fields if null is None else [None if f == null else f for f in fields]
        else:
            try:
                if null is None:
                    values = [c(f) for c, f in zip(converters, fields, strict=True)]
                else:
                    values = [
                        None if f == null else c(f) for c, f in zip(converters, fields, strict=True)
                    ]
            except Exception:
                # Converters are arbitrary user callables and may raise anything; redo the
                # row field by field to name the one that failed.
                err = self._conversion_error(fields, raw)
                if err is None:
                    raise
                raise err from err.__cause__
        if self.as_dict:
            assert self.field_names is not None
            return dict(zip(self.field_names, values, strict=True))
        return tuple(values)

    def _conversion_error(self, fields: list[str], raw: bytes) -> DeserializationError | None:
        assert self._converters is not None
        for i, (convert, field) in enumerate(zip(self._converters, fields, strict=True)):
            if field == self.null_literal:
                continue
            try:
                convert(field)
            except Exception as exc:
                name = getattr(convert, "__qualname__", None) or repr(convert)
                err = DeserializationError(
                    raw,
                    f"field {self._field_label(i)}: cannot convert {_bounded_repr(field)} "
                    f"with {name}: {type(exc).__name__}: {_shorten(str(exc))}",
                )
                err.__cause__ = exc
                return err
        return None

    def _parse(self, message: bytes) -> Any:
        try:
            text = str(message, self.encoding)
        except UnicodeDecodeError as exc:
            raise DeserializationError(
                message, f"invalid {self.encoding} at byte {exc.start}: {exc.reason}"
            ) from exc
        return self._convert(self._split(text, message), message)

    def deserialize(self, message: bytes) -> Any:
        return self._parse(message)

    def deserialize_batch(self, messages: list[bytes]) -> list[Any]:
        parse = self._parse
        try:
            return [parse(m) for m in messages]
        except DeserializationError:
            err = _first_deserialization_failure(parse, messages)
            if err is None:
                raise
            raise err from err.__cause__

    # -- writing --------------------------------------------------------------------------

    def _row(self, element: Any) -> Sequence[Any]:
        row: Sequence[Any]
        if isinstance(element, tuple | list):
            row = element
        elif isinstance(element, Mapping):
            names = self.field_names
            if names is None:
                raise SerializationError(element, "writing a mapping needs field_names")
            missing = [n for n in names if n not in element]
            if missing:
                raise SerializationError(element, f"missing fields {missing!r}")
            if len(element) != len(names):
                extra = sorted(map(repr, set(element) - set(names)))
                raise SerializationError(element, f"unexpected fields [{', '.join(extra)}]")
            row = [element[n] for n in names]
        else:
            raise SerializationError(
                element, f"expected a tuple, list or mapping, got {type(element).__name__}"
            )
        if self._arity is not None and len(row) != self._arity:
            raise SerializationError(element, f"expected {self._arity} fields, got {len(row)}")
        if not row:
            # An empty row would be written as an empty line, which reads back as one field.
            raise SerializationError(element, "a CSV row needs at least one field")
        null = self.null_literal
        if null is not None:
            row = [null if v is None else v for v in row]
        return row

    def format_row(self, element: Any) -> str:
        """The CSV line for ``element`` as text, ending with ``line_delimiter``."""
        row = self._row(element)
        try:
            line = self._writerow(row)
        except (csv.Error, TypeError, ValueError) as exc:
            raise SerializationError(element, f"cannot write CSV: {exc}") from exc
        return line[: -self._cut] if self._cut else line

    def serialize(self, element: Any) -> bytes:
        line = self.format_row(element)
        try:
            return line.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise SerializationError(
                element,
                f"character {exc.object[exc.start : exc.end]!r} cannot be encoded in "
                f"{self.encoding}: {exc.reason}",
            ) from exc
