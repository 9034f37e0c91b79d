"""``LineSplitter``: the socket source's lines, from the bytes of its connections."""

from __future__ import annotations

from collections import deque

from strom.formats import DeserializationError

__all__ = ["LineSplitter"]


class LineSplitter:
    """Cuts the bytes of one connection after another into lines at ``delimiter``, and hands
    them out decoded.

    Complete lines queue up in ``lines`` as ``(connection, offset, raw)``: the number of the
    connection and the byte offset of the line within it, for error messages. With the
    delimiter ``"\\n"`` a trailing ``"\\r"`` is dropped from each line, so CRLF lines work.
    """

    def __init__(self, delimiter: str, encoding: str, where: str) -> None:
        self._delim = delimiter.encode(encoding)
        self._strip_cr = delimiter == "\n"
        self._encoding = encoding
        self._where = where
        self._buf = bytearray()
        self._scan = 0  # buf[:scan] holds no delimiter start; avoids rescanning long lines
        self._offset = 0  # byte offset of buf[0] within the current connection
        self.lines: deque[tuple[int, int, bytes]] = deque()  # (connection, offset, raw)

    def start_connection(self) -> None:
        """A new connection: its bytes start at offset 0."""
        self._buf.clear()
        self._scan = 0
        self._offset = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def split(self, connection: int) -> None:
        """Queue every complete line fed so far."""
        buf, delim = self._buf, self._delim
        start = 0
        pos = buf.find(delim, self._scan)
        while pos >= 0:
            self._emit(bytes(buf[start:pos]), self._offset + start, connection)
            start = pos + len(delim)
            pos = buf.find(delim, start)
        if start:
            del buf[:start]
            self._offset += start
        # A delimiter may be cut across two reads: rescan its possible first bytes next time.
        self._scan = max(0, len(buf) - len(delim) + 1)

    def end_connection(self, connection: int, *, clean: bool) -> int:
        """The connection ended; returns how many bytes of an unterminated line were dropped.

        After a clean end the unterminated tail is queued as the last line: a FIN ends the byte
        stream, so it is complete. After a reset it is dropped: most likely a torn line.
        """
        dropped = 0
        if clean:
            if self._buf:
                self._emit(bytes(self._buf), self._offset, connection)
        else:
            dropped = len(self._buf)
        self._buf.clear()
        self._scan = 0
        return dropped

    def take(self, max_records: int) -> list[str]:
        """Up to ``max_records`` queued lines, decoded. A line that does not decode raises
        ``DeserializationError`` once the good lines before it are handed out."""
        lines, encoding = self.lines, self._encoding
        out: list[str] = []
        while lines and len(out) < max_records:
            connection, offset, raw = lines[0]
            try:
                out.append(raw.decode(encoding))
            except UnicodeDecodeError as exc:
                if out:
                    break  # hand out the good lines first; the bad one raises on the next poll
                lines.popleft()
                raise DeserializationError(
                    raw,
                    f"invalid {encoding} at byte {exc.start} of the line: {exc.reason}",
                    f"socket {self._where} (connection {connection}, line at byte offset {offset})",
                ) from exc
            lines.popleft()
        return out

    def clear(self) -> None:
        """Forget queued lines and buffered bytes."""
        self.lines.clear()
        self._buf.clear()

    def _emit(self, raw: bytes, offset: int, connection: int) -> None:
        if self._strip_cr and raw.endswith(b"\r"):
            raw = raw[:-1]
        self.lines.append((connection, offset, raw))
