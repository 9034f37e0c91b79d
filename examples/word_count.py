"""Word count, the classic first streaming job: ``flat_map`` → ``key_by`` → ``sum``.

Lines come from a collection (no socket needed). Each line is split into lower-case words,
each word becomes ``(word, 1)``, the stream is partitioned by word and summed per word. The sum
is a *rolling* aggregate, as in Flink: every incoming word prints its word's updated count, so
the last line printed for a word holds its final count. With parallelism > 1 each line starts
with the printing subtask (``2> ``), and different words are counted by different subtasks.

Run: ``python examples/word_count.py [PARALLELISM]`` or
``strom run examples/word_count.py --parallelism 2``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

from strom import StreamExecutionEnvironment

TEXT = [
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",
    "Or to take arms against a sea of troubles",
    "And by opposing end them. To die: to sleep;",
]

_WORD = re.compile(r"[a-z']+")


def split_words(line: str) -> Iterator[tuple[str, int]]:
    for word in _WORD.findall(line.lower()):
        yield (word.strip("'"), 1)


def main(parallelism: int | None = None) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    if parallelism is not None:
        env.set_parallelism(parallelism)
    (env.from_collection(TEXT).flat_map(split_words).key_by(lambda pair: pair[0]).sum(1).print())
    env.execute("word count")


if __name__ == "__main__":
    main(parallelism=int(sys.argv[1]) if len(sys.argv) > 1 else None)
