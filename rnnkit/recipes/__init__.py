"""Recipes: each way of using a recurrent network, from data files to a trained model and predictions.

``get_recipe(name)`` gives one (``classify``, ``tag``, ``translate``, ``lm``, ``tree``, ``regress``);
``rnnkit.recipes.run`` trains, evaluates and loads them; the ``rnnkit`` command is a thin layer on both.
"""
# the modules that define recipes; importing one registers it (see base.register)
RECIPE_MODULES = ("classify", "tag", "translate", "lm", "tree", "regress")

from .base import (COMMON_MODEL_DEFAULTS, Recipe, RecipeState, cell_options, data_options_for,  # noqa: E402
                   encoder_config, get_recipe, model_options_for, recipe_names, register)

__all__ = ["Recipe", "RecipeState", "COMMON_MODEL_DEFAULTS", "get_recipe", "recipe_names", "register",
           "model_options_for", "data_options_for", "cell_options", "encoder_config"]
