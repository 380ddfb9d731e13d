"""`kubectl treadle example`: the shipped examples by short name, listed or printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster import REPO
from treadle.plugin import examples
from treadle.plugin.output import Failure


def test_every_example_of_the_repository_is_found_by_its_short_name_number_or_file() -> None:
    found = examples.examples()
    assert list(found.values()) == sorted((REPO / "examples").glob("[0-9][0-9]-*.yaml"))
    assert examples.find("hello").name == "01-hello.yaml"
    assert examples.find("01") == examples.find("01-hello") == examples.find("01-hello.yaml")
    assert all(examples.summary(path) for path in found.values())  # each says what it shows
    with pytest.raises(Failure, match=r"no example 'nope' \(examples: worker-pool, hello, "):
        examples.find("nope")


def test_the_summary_is_the_opening_comments_first_sentence(tmp_path: Path) -> None:
    path = tmp_path / "01-x.yaml"
    path.write_text("# expect: Running\n# One thing. Then\n# another.\n#   kubectl run\nkind: X\n")
    assert examples.summary(path) == "One thing."
    path.write_text("# " + "word " * 40 + "\n")
    assert len(examples.summary(path)) == 90
