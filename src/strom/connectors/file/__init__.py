"""File connectors (``read_text_file``, ``write_as_text``, ``write_as_csv``).

``FileSource`` reads text lines of a file or directory tree, exactly-once with checkpoints (its
byte offsets are its state). ``TextSink`` and ``CsvSink`` write one file, or one file per
subtask in a directory, at-least-once: they flush and fsync on every checkpoint, and after a
restore the records since the last checkpoint may appear twice.
"""

from strom.connectors.file.listing import enumerate_files
from strom.connectors.file.sinks import CsvSink, TextSink, WriteMode
from strom.connectors.file.source import FileSource

__all__ = ["CsvSink", "FileSource", "TextSink", "WriteMode", "enumerate_files"]
