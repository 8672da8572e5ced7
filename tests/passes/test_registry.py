"""The pass registry: names, descriptions, duplicates refused, unknown names listed."""

from __future__ import annotations

import pytest

from lowbit.errors import LowbitError, UsageError
from lowbit.passes import DEFAULT_PASSES, GraphPass, get_pass, list_passes, resolve_passes
from lowbit.passes.registry import register

EXPECTED = {"fold_constants", "lift_constants", "remove_dead_nodes", "remove_identity",
            "remove_dropout", "remove_noop_casts", "collapse_reshapes", "fold_batchnorm",
            "fold_affine", "fuse_horizontal", "fuse_pad_into_conv", "eliminate_concat",
            "eliminate_common_subexpressions", "inline_functions"}


def test_every_pass_is_registered_with_a_one_line_description() -> None:
    passes = list_passes()
    assert {p.name for p in passes} == EXPECTED
    for p in passes:
        assert p.description and "\n" not in p.description and len(p.description) < 100
    assert set(DEFAULT_PASSES) <= EXPECTED and "fuse_horizontal" not in DEFAULT_PASSES
    assert "inline_functions" not in DEFAULT_PASSES  # custom ops kept whole unless asked


def test_a_duplicate_name_is_refused() -> None:
    with pytest.raises(LowbitError, match="already registered"):
        register(GraphPass("fold_constants", "again", lambda model: 0))
    assert get_pass("fold_constants").description != "again"


def test_an_unknown_name_lists_the_registered_passes() -> None:
    with pytest.raises(UsageError, match=r"unknown graph pass 'fold_everything'.*fold_affine"):
        get_pass("fold_everything")


def test_passes_resolve_from_a_list_or_a_comma_separated_string() -> None:
    assert [p.name for p in resolve_passes("fold_constants, remove_identity")] == [
        "fold_constants", "remove_identity"]
    assert [p.name for p in resolve_passes(["fold_batchnorm"])] == ["fold_batchnorm"]
    assert [p.name for p in resolve_passes(None)] == list(DEFAULT_PASSES)
    with pytest.raises(UsageError, match="'nope'"):
        resolve_passes("fold_constants,nope")
