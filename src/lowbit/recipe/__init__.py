"""The plan of a deploy and how it runs.

    from lowbit.recipe import Recipe, read_recipe, recipe_text
    recipe = read_recipe("int8.toml")                      # or Recipe(...), from_options(...)
    print(recipe_text(recipe))                             # the effective recipe, as TOML

recipe.py holds the frozen, validated Recipe; options.py maps deploy's keywords and
flags onto it; document.py reads and writes it as TOML; pipeline.py and steps/ run it
as named steps; provenance.py records it (with versions, CPU and input hashes) in
every model deploy writes.
"""

from lowbit.recipe.document import parse_recipe, read_recipe, recipe_text, write_recipe
from lowbit.recipe.recipe import (
    PRECISIONS,
    AdaRounding,
    BiasCorrection,
    Equalization,
    FloatConversion,
    Int8Options,
    Recipe,
    Smoothing,
    Validation,
    WeightOnly,
)

__all__ = ["PRECISIONS", "AdaRounding", "BiasCorrection", "Equalization", "FloatConversion",
           "Int8Options", "Recipe", "Smoothing", "Validation", "WeightOnly", "parse_recipe",
           "read_recipe", "recipe_text", "write_recipe"]
