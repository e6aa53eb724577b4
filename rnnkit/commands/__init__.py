"""The subcommands of ``rnnkit`` that drive recipes: train, evaluate, predict, generate, translate.

``rnnkit.cli`` adds them to its group; nothing else imports this package. They are thin: they turn
flags and a TOML file into the objects of ``rnnkit.recipes.run`` and ``rnnkit.train.TrainConfig``
(``settings.py``), call the library, and print; mistakes become one line on stderr (``errors.py``).
"""
