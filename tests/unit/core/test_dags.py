"""The task graph: unknown and self dependencies, cycles with their path, order, ancestors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.core.dags import Dag, GraphError


def test_a_cycle_is_reported_with_its_path() -> None:
    dag = Dag({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert dag.problems() == ["spec.tasks: dependency cycle a -> b -> c -> a"]


def test_an_unknown_dependency_is_reported_with_the_field_and_the_known_tasks() -> None:
    dag = Dag({"a": [], "b": ["nope"]})
    assert dag.problems() == ["spec.tasks[1].dependsOn: unknown task 'nope' (tasks are: a, b)"]


def test_a_task_depending_on_itself_is_reported() -> None:
    assert Dag({"a": ["a"]}).problems() == ["spec.tasks[0].dependsOn: task 'a' depends on itself"]


def test_order_puts_every_task_after_its_dependencies() -> None:
    dag = Dag({"merge": ["fetch"], "fetch": ["list"], "list": [], "notify": ["merge"]})
    assert dag.order == ["list", "fetch", "merge", "notify"]


def test_ancestors_are_transitive() -> None:
    dag = Dag({"a": [], "b": ["a"], "c": ["b"], "d": []})
    assert dag.ancestors("c") == {"a", "b"}
    assert dag.ancestors("d") == frozenset()


def test_order_of_an_invalid_graph_raises() -> None:
    with pytest.raises(GraphError, match="cycle"):
        _ = Dag({"a": ["b"], "b": ["a"]}).order


def test_a_long_chain_needs_no_recursion() -> None:
    chain = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert Dag(chain).order[-1] == "t4999"
    chain["t0"] = ["t4999"]
    cycle = Dag(chain).find_cycle()
    assert cycle is not None
    assert len(cycle) == 5001


@st.composite
def acyclic(draw: st.DrawFn) -> dict[str, list[str]]:
    size = draw(st.integers(min_value=1, max_value=25))
    names = [f"t{i}" for i in range(size)]
    graph: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        graph[name] = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
    return graph


@given(acyclic())
def test_generated_acyclic_graphs_have_no_problems_and_a_valid_order(
    graph: dict[str, list[str]],
) -> None:
    dag = Dag(graph)
    assert dag.problems() == []
    position = {name: i for i, name in enumerate(dag.order)}
    assert all(position[dep] < position[name] for name, deps in graph.items() for dep in deps)


@given(acyclic(), st.data())
def test_a_back_edge_makes_a_cycle_whose_path_follows_real_edges(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    names = list(graph)
    if len(names) < 2:
        return
    low = data.draw(st.integers(min_value=0, max_value=len(names) - 2))
    high = data.draw(st.integers(min_value=low + 1, max_value=len(names) - 1))
    # Make names[high] reachable from names[low], then close the loop with a back edge.
    graph[names[high]] = sorted({*graph[names[high]], names[low]})
    graph[names[low]] = sorted({*graph[names[low]], names[high]})
    cycle = Dag(graph).find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    for before, after in itertools.pairwise(cycle):
        assert before in graph[after]  # `after` depends on `before`
    assert Dag(graph).problems()[0].startswith("spec.tasks: dependency cycle ")
