"""Built-in synthetic tasks, so that everything runs with no download."""
from .mackey_glass import mackey_glass

__all__ = ["mackey_glass"]
