"""The Python examples in the README and in docs/ run as written."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# custom-cells.md's blocks build on each other: test_custom_cells.py runs them in order, in one namespace
DOCUMENTS = [README, *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "custom-cells.md")]
BLOCKS = [(doc, k, block) for doc in DOCUMENTS
          for k, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S))]


@pytest.mark.parametrize("doc,index,block", BLOCKS, ids=[f"{d.name}-{k}" for d, k, _ in BLOCKS])
def test_documented_example_runs(doc, index, block):
    exec(compile(block, f"{doc.name} python block {index}", "exec"), {})


def test_readme_names_the_install_and_test_commands_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    text = README.read_text()
    for command in ('pip install "torch==2.13.0" -e ".[test]"', "python -m pytest -q"):
        assert command in text
        assert command in ci
