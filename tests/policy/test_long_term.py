"""Profile merging is incremental and never wiped; knowledge de-duplication and capacity."""

from __future__ import annotations

from memoryos_core import HashingEmbedder, KnowledgeEntry, ProfileTrait
from memoryos_core.policy.long_term import find_duplicate, merge_profile, over_capacity

EMBED = HashingEmbedder(64)


def test_profile_updates_one_trait_at_a_time_and_keeps_provenance() -> None:
    profile = {
        "job": ProfileTrait("job", "nurse", ("p1",), 1.0),
        "hobby": ProfileTrait("hobby", "hiking", ("p2",), 1.0),
    }
    merged, applied = merge_profile(profile, [ProfileTrait("Job", "doctor", ("p9",), 2.0)], capacity=10)
    assert merged["job"].value == "doctor"
    assert merged["job"].page_ids == ("p1", "p9")
    assert merged["hobby"].value == "hiking"
    assert [t.value for t in applied] == ["doctor"]


def test_placeholder_or_empty_values_never_replace_a_trait() -> None:
    profile = {"job": ProfileTrait("job", "nurse", ("p1",), 1.0)}
    updates = [
        ProfileTrait("job", "unknown", ("p2",), 2.0),
        ProfileTrait("job", "  ", ("p3",), 2.0),
        ProfileTrait("", "x", (), 2.0),
    ]
    merged, applied = merge_profile(profile, updates, capacity=10)
    assert merged == profile and applied == []


def test_profile_capacity_drops_the_least_recently_updated() -> None:
    profile = {f"t{i}": ProfileTrait(f"t{i}", "v", (), float(i)) for i in range(5)}
    merged, _ = merge_profile(profile, [ProfileTrait("new", "v", (), 10.0)], capacity=3)
    assert set(merged) == {"t3", "t4", "new"}


def test_near_duplicate_knowledge_is_found_and_distinct_is_not() -> None:
    texts = ["user works as a nurse in berlin", "user loves hiking"]
    items = [
        KnowledgeEntry(f"k{i}", "user", t, (), (), 0.0, tuple(v))
        for i, (t, v) in enumerate(zip(texts, EMBED.embed(texts)))
    ]
    same = EMBED.embed(["user works as a nurse in berlin"])[0]
    other = EMBED.embed(["completely different sentence about taxes"])[0]
    assert find_duplicate(same, items, 0.9) is items[0]
    assert find_duplicate(other, items, 0.9) is None
    assert find_duplicate(same, [], 0.9) is None


def test_over_capacity_returns_the_oldest_items() -> None:
    items = [KnowledgeEntry(f"k{i}", "user", "t", (), (), float(i)) for i in range(5)]
    assert [i.id for i in over_capacity(items, 3)] == ["k0", "k1"]
    assert over_capacity(items, 5) == []
