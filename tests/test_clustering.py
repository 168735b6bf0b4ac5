"""Clustering that resists chaining, as a pure function: no database, no model.

Groups are what the exact rules know before tonight's links (a household's rows under its key, a
new ID number's rows, a single ID-less row); links are scored pairs. The defaults below are the
configured ones: link 0.9, strong 0.9999, a cluster holds "several rows" from 2 distinct rows.
"""

from __future__ import annotations

import random

import pytest

from rosterlink.link.clustering import CLUSTER_BRIDGE, MODEL_UNCERTAIN, Group, Link, Rules, cluster

RULES = Rules(link=0.9, strong=0.9999, guard_min_rows=2, max_reviews_per_row=2)


def group(*rows: int, ids: dict[int, str] | None = None, key: str | None = None, cannot=()) -> Group:
    """A group whose rows are all distinct (one shape each)."""
    ids = ids or {}
    return Group(
        rows={r: ids.get(r) for r in rows},
        shapes=frozenset((r,) for r in rows),
        keys=frozenset({key} if key else ()),
        cannot=frozenset(cannot),
    )


def link(left: int, right: int, probability: float, weight: float = 10.0) -> Link:
    return Link(left, right, probability, weight, {"name": {"level": "exact"}})


def clusters(result) -> list[set[int]]:
    return [set(c) for c in result.clusters()]


def reviewed(result) -> list[tuple[str, int, int]]:
    return [(reason, e.left, e.right) for reason, e in result.to_review]


def test_links_are_taken_strongest_first_whatever_their_input_order():
    # row 9 (no ID) looks like two people with different ID numbers; the stronger link wins
    groups = [group(1, ids={1: "A"}), group(2, ids={2: "B"}), group(9)]
    result = cluster(groups, [link(1, 9, 0.95), link(2, 9, 0.99)], RULES)
    assert clusters(result) == [{1}, {2, 9}]
    assert result.accepted[9] == link(2, 9, 0.99)
    assert reviewed(result) == [(CLUSTER_BRIDGE, 1, 9)]


def test_equal_probabilities_are_ordered_by_weight():
    groups = [group(1, ids={1: "A"}), group(2, ids={2: "B"}), group(9)]
    result = cluster(groups, [link(1, 9, 0.95, weight=5.0), link(2, 9, 0.95, weight=7.0)], RULES)
    assert clusters(result) == [{1}, {2, 9}]


def test_two_clusters_of_several_rows_merge_only_on_a_strong_link():
    groups = [group(1, 2, key="H000001"), group(3, 4, key="H000002")]
    weak = cluster(groups, [link(2, 3, 0.999)], RULES)
    assert clusters(weak) == [{1, 2}, {3, 4}]
    assert reviewed(weak) == [(CLUSTER_BRIDGE, 2, 3)]
    strong = cluster(groups, [link(2, 3, 0.99995)], RULES)
    assert clusters(strong) == [{1, 2, 3, 4}]
    assert strong.keys(strong.root(1)) == {"H000001", "H000002"}
    assert strong.retired_by == {"H000002": link(2, 3, 0.99995)}  # the newer key is the one retired
    assert strong.to_review == []


def test_one_row_twice_is_one_row_for_the_guard():
    # a household whose two rows are the same row written twice holds one distinct row: no guard
    twice = Group(rows={1: None, 2: None}, shapes=frozenset({("same",)}), keys=frozenset({"H000001"}))
    result = cluster([twice, group(3, 4, key="H000002")], [link(2, 3, 0.95)], RULES)
    assert clusters(result) == [{1, 2, 3, 4}]


def test_holders_of_different_id_numbers_never_merge_however_strong_the_link():
    groups = [group(1, ids={1: "A"}), group(2, ids={2: "B"})]
    result = cluster(groups, [link(1, 2, 0.999999)], RULES)
    assert clusters(result) == [{1}, {2}]
    assert reviewed(result) == [(CLUSTER_BRIDGE, 1, 2)]


def test_a_row_like_two_households_does_not_chain_them_into_one():
    # A (rows 1, 2) - B (row 9, no ID) - C (rows 3, 4): A-B and B-C are links, A-C is not one
    groups = [group(1, 2, key="H000001"), group(3, 4, key="H000002"), group(9)]
    result = cluster(groups, [link(1, 9, 0.97), link(3, 9, 0.96)], RULES)
    assert clusters(result) == [{1, 2, 9}, {3, 4}]
    assert reviewed(result) == [(CLUSTER_BRIDGE, 3, 9)]
    assert result.retired_by == {}


def test_a_chain_of_single_rows_links_up():
    # the guard is for clusters that already hold several rows: single rows still chain
    result = cluster([group(1), group(2), group(3)], [link(1, 2, 0.95), link(2, 3, 0.94)], RULES)
    assert clusters(result) == [{1, 2, 3}]


def test_links_below_the_threshold_go_to_review_as_uncertain():
    result = cluster([group(1, key="H000001"), group(9)], [link(1, 9, 0.5)], RULES)
    assert clusters(result) == [{1}, {9}]
    assert reviewed(result) == [(MODEL_UNCERTAIN, 1, 9)]


def test_an_uncertain_link_is_dropped_once_the_row_found_its_household():
    # row 9 (no ID) is confidently tied to household 1; its doubt about household 2 is not queued
    groups = [group(1, key="H000001"), group(2, ids={2: "B"}, key="H000002"), group(9)]
    result = cluster(groups, [link(1, 9, 0.95), link(2, 9, 0.5)], RULES)
    assert clusters(result) == [{1, 9}, {2}]
    assert result.to_review == []


def test_reviews_per_row_are_capped_and_never_offered_twice():
    groups = [group(1, key="H1"), group(2, key="H2"), group(3, key="H3"), group(9)]
    links = [link(1, 9, 0.6), link(2, 9, 0.5), link(3, 9, 0.4)]
    result = cluster(groups, links, RULES)
    assert reviewed(result) == [(MODEL_UNCERTAIN, 1, 9), (MODEL_UNCERTAIN, 2, 9)]
    again = cluster(groups, links, RULES, queued={(MODEL_UNCERTAIN, 1, 9)})
    assert reviewed(again) == [(MODEL_UNCERTAIN, 2, 9), (MODEL_UNCERTAIN, 3, 9)]


def test_rows_a_reviewer_kept_apart_are_never_merged_nor_queued_again():
    groups = [group(1, key="H000001", cannot={9}), group(9, cannot={1})]
    result = cluster(groups, [link(1, 9, 0.99)], RULES)
    assert clusters(result) == [{1}, {9}]
    assert result.to_review == []


def test_the_inputs_are_not_changed():
    groups = [group(1, 2, key="H000001"), group(3, 4, key="H000002")]
    links = [link(3, 4, 0.5), link(2, 3, 0.99995)]
    before = (list(groups), list(links))
    cluster(groups, links, RULES)
    assert (groups, links) == before
    assert groups[0].rows == {1: None, 2: None}


@pytest.mark.parametrize("seed", range(5))
def test_the_result_does_not_depend_on_the_order_of_the_input(seed):
    rng = random.Random(seed)
    groups = [
        group(1, 2, key="H000001"),
        group(3, 4, key="H000002"),
        group(5, ids={5: "A"}),
        group(6, ids={6: "B"}),
        *(group(r) for r in range(10, 20)),
    ]
    links = [
        link(a, b, round(rng.uniform(0.3, 1.0), 3), round(rng.uniform(-5, 20), 2))
        for a in (1, 3, 5, 6, *range(10, 20))
        for b in range(10, 20)
        if a < b and rng.random() < 0.4
    ]
    expected = cluster(groups, links, RULES)
    for _ in range(5):
        shuffled_groups, shuffled_links = list(groups), list(links)
        rng.shuffle(shuffled_groups)
        rng.shuffle(shuffled_links)
        again = cluster(shuffled_groups, shuffled_links, RULES)
        assert clusters(again) == clusters(expected)
        assert reviewed(again) == reviewed(expected)
        assert again.accepted == expected.accepted
        assert again.retired_by == expected.retired_by
