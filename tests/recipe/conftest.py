"""The recipe tests' shared fixtures."""

from tests.recipe.test_pipeline import flow  # noqa: F401 (a fixture test_provenance uses)
