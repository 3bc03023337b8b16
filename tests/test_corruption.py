import numpy as np
import pytest

from memorization_curvature.corruption import corrupt_labels


@pytest.fixture
def labels():
    return np.random.default_rng(123).integers(0, 10, size=1437)


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.1, 0.25, 0.5])
def test_exact_count_and_never_the_true_class(labels, rate):
    given, corrupted = corrupt_labels(labels, 10, rate, seed=0)
    assert corrupted.sum() == round(rate * len(labels))
    assert np.all(given[corrupted] != labels[corrupted])
    assert np.array_equal(given[~corrupted], labels[~corrupted])
    assert given.min() >= 0 and given.max() < 10


def test_deterministic_for_a_seed_and_different_across_seeds(labels):
    a = corrupt_labels(labels, 10, 0.1, seed=7)
    b = corrupt_labels(labels, 10, 0.1, seed=7)
    c = corrupt_labels(labels, 10, 0.1, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_new_label_uniform_over_the_other_classes():
    true = np.zeros(90_000, dtype=np.int64)  # every sample in class 0
    given, corrupted = corrupt_labels(true, 10, 0.5, seed=1)
    counts = np.bincount(given[corrupted], minlength=10)
    assert counts[0] == 0
    expected = corrupted.sum() / 9
    # each of the 9 other classes within 5 standard deviations of a uniform draw
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_rate_is_refused(labels, rate):
    with pytest.raises(ValueError, match="noise rate"):
        corrupt_labels(labels, 10, rate, seed=0)


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        corrupt_labels(np.array([0, 1, 5]), 3, 0.1, seed=0)


def test_injected_duplicates_are_exact_copies_with_conflicting_labels():
    from memorization_curvature.corruption import inject_duplicates

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 1, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 300)
    new, given, true, injected = inject_duplicates(images, labels, 10, 25, seed=3)
    assert injected.sum() == 25 and np.array_equal(images[~injected], new[~injected])
    assert not np.array_equal(images, new)  # the input is left alone, the copy changed
    for target in np.flatnonzero(injected):
        sources = np.flatnonzero((images == new[target]).all(axis=(1, 2, 3)) & ~injected)
        assert len(sources) == 1  # an exact copy of one other, unchanged training image
        assert true[target] == labels[sources[0]] and given[target] != labels[sources[0]]
    assert np.array_equal(given[~injected], labels[~injected])
    again = inject_duplicates(images, labels, 10, 25, seed=3)
    assert np.array_equal(again[1], given) and np.array_equal(again[3], injected)
    with pytest.raises(ValueError, match="injected duplicates"):
        inject_duplicates(images, labels, 10, 151, seed=0)


def test_injected_duplicates_written_to_a_file_backed_array_are_the_same(tmp_path):
    from memorization_curvature.corruption import inject_duplicates
    from memorization_curvature.data import new_image_array

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5000, 1, 3, 3), dtype=np.uint8)  # more than one copying chunk
    labels = rng.integers(0, 10, 5000)
    in_memory = inject_duplicates(images, labels, 10, 40, seed=2)
    out = new_image_array(images.shape, str(tmp_path), "train")
    on_disk = inject_duplicates(images, labels, 10, 40, seed=2, out=out)
    assert on_disk[0] is out and isinstance(out, np.memmap)
    for a, b in zip(in_memory, on_disk):
        assert np.array_equal(a, b)
