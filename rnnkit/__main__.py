"""``python -m rnnkit``: the same command as ``rnnkit`` (``rnnkit.cli``)."""
from .cli import main

main(prog_name="rnnkit")
