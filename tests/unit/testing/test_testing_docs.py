"""docs/testing.md promises its examples run: run every Python block in it, and pin the public
names of strom.testing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import strom.testing

DOC = Path(__file__).resolve().parents[3] / "docs" / "testing.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_guide_has_examples() -> None:
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_example_runs(index: int) -> None:
    code = compile(BLOCKS[index], f"{DOC.name}[example {index + 1}]", "exec")
    exec(code, {"__name__": f"docs_example_{index}"})


def test_public_names() -> None:
    assert sorted(strom.testing.__all__) == [
        "CheckNotApplicable",
        "CollectingServer",
        "CollectingSinkFunction",
        "FailOnce",
        "FaultProxy",
        "InjectedFailure",
        "LineServer",
        "ManualClock",
        "SinkConformance",
        "SinkFunctionHarness",
        "SinkWriterHarness",
        "SourceConformance",
        "SourceFunctionHarness",
        "SourceReaderHarness",
        "TestingSink",
        "TestingSource",
        "conformance_tests",
        "fail_once_at",
        "free_port",
        "run_to_completion",
    ]
    for name in strom.testing.__all__:
        assert getattr(strom.testing, name) is not None
