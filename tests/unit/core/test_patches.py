"""Merge patches between statuses: the difference only, and removals as nulls."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from treadle.core.patches import apply_merge_patch, merge_patch

leaves = st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.lists(st.integers()))
documents = st.recursive(
    st.dictionaries(st.sampled_from("abcd"), leaves, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from("abcd"), st.one_of(leaves, inner), max_size=4),
    max_leaves=12,
)


def test_a_patch_holds_only_what_changed_and_nulls_what_went() -> None:
    before: dict[str, Any] = {
        "phase": "Running",
        "tasks": {"a": {"phase": "Retrying", "nextRetryAt": "t"}, "b": {"phase": "Pending"}},
        "deadLetters": [{"task": "a"}],
    }
    after = {
        "phase": "Running",
        "tasks": {"a": {"phase": "Queued"}, "b": {"phase": "Pending"}},
        "deadLetters": [],
    }
    assert merge_patch(before, after) == {
        "tasks": {"a": {"phase": "Queued", "nextRetryAt": None}},
        "deadLetters": [],
    }
    assert merge_patch(after, after) == {}


@given(documents, documents)
def test_applying_the_patch_gives_the_new_document(before: Any, after: Any) -> None:
    assert apply_merge_patch(before, merge_patch(before, after)) == after
