"""MixtureSampler and mixture_dataset: systematic shares, weight changes, index ranges."""

from __future__ import annotations

import pytest

from mixopt.integrations import MixtureSampler, mixture_dataset

pytestmark = pytest.mark.science


def test_shares_follow_the_weights_within_one_draw():
    s = MixtureSampler({"a": 50, "b": 30, "c": 7}, {"a": 0.62, "b": 0.3, "c": 0.08})
    for n in range(1, 501):
        s.next_index()
        shares = s.realised_shares()
        for d, w in {"a": 0.62, "b": 0.3, "c": 0.08}.items():
            assert abs(shares[d] - w) <= 1.0 / n + 1e-12, (n, d, shares)


def test_indices_stay_in_their_domain_and_cover_it_each_pass():
    sizes = {"a": 5, "b": 3}
    s = MixtureSampler(sizes, {"a": 0.5, "b": 0.5}, num_samples=30, seed=3)
    seen = {"a": [], "b": []}
    for _ in range(30):
        d, i = s.next_index()
        seen[d].append(i)
    assert all(0 <= i < 5 for i in seen["a"]) and all(5 <= i < 8 for i in seen["b"])
    assert sorted(seen["a"][:5]) == [0, 1, 2, 3, 4]  # a whole shuffled pass before a repeat
    assert sorted(seen["b"][:3]) == [5, 6, 7]
    assert len(list(s)) == len(s) == 30


def test_set_weights_starts_a_segment():
    s = MixtureSampler({"a": 10, "b": 10})
    assert s.weights == {"a": 0.5, "b": 0.5}
    for _ in range(10):
        s.next_index()
    assert not s.set_weights({"a": 1, "b": 1})  # the same mixture, normalised: no change
    assert s.set_weights({"a": 3, "b": 1})
    for _ in range(400):
        s.next_index()
    assert s.segments[0]["counts"] == {"a": 5, "b": 5}
    assert s.segments[1]["counts"] == {"a": 300, "b": 100}
    assert s.set_weights({"b": 1})  # an omitted domain is 0
    assert {s.next_index()[0] for _ in range(20)} == {"b"}


@pytest.mark.parametrize(
    "weights, words",
    [
        ({"z": 1.0}, "unknown domains ['z']"),
        ({"a": -1.0, "b": 1.0}, "non-negative"),
        ({"a": float("nan"), "b": 1.0}, "non-negative"),
        ({"a": 0.0, "b": 0.0}, "all be zero"),
    ],
)
def test_bad_weights_are_named(weights, words):
    s = MixtureSampler({"a": 1, "b": 1})
    with pytest.raises(ValueError, match="weights") as e:
        s.set_weights(weights)
    assert words in str(e.value)


def test_bad_sizes():
    with pytest.raises(ValueError, match="without items"):
        MixtureSampler({"a": 0, "b": 2})
    with pytest.raises(ValueError, match="at least one domain"):
        MixtureSampler({})


def test_state_dict_resumes_the_same_draws():
    a = MixtureSampler({"x": 7, "y": 4}, {"x": 0.3, "y": 0.7}, seed=5)
    for _ in range(9):
        a.next_index()
    b = MixtureSampler({"x": 7, "y": 4}, seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.next_index() for _ in range(40)] == [b.next_index() for _ in range(40)]


def test_mixture_dataset_items_carry_their_domain():
    torch = pytest.importorskip("torch")
    data = {"a": [{"x": i} for i in range(4)], "b": [{"x": 100 + i} for i in range(6)]}
    ds = mixture_dataset(data, {"a": 0.25, "b": 0.75}, with_domain="domain", length=40)
    assert isinstance(ds, torch.utils.data.IterableDataset)
    items = list(ds)
    assert len(items) == len(ds) == 40
    assert sum(1 for it in items if it["domain"] == 0) == 10
    assert all((it["x"] < 100) == (it["domain"] == 0) for it in items)
    with pytest.raises(ValueError, match="differ"):
        mixture_dataset(data, sampler=MixtureSampler({"b": 6, "a": 4}))
