"""The Python blocks of docs/models.md run as written (each in a fresh namespace, named as this module
so that pyproject's filterwarnings turns a deprecated form in an example into an error)."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_its_examples():
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    exec(compile(BLOCKS[index], f"docs/models.md block {index + 1}", "exec"), {"__name__": __name__})
