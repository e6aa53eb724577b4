"""The README's Python examples run as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})


def test_readme_names_the_install_and_test_commands_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    for command in ('pip install "torch==2.13.0" -e ".[test]"', "python -m pytest -q"):
        assert command in text
        assert command in ci
