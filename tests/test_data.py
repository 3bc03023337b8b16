import numpy as np

from memorization_curvature import data
from memorization_curvature.batches import normalize_images


def test_digits_split_is_fixed_stratified_and_complete():
    a = data.prepare("digits", test_fraction=0.2, split_seed=0)
    b = data.prepare("digits", test_fraction=0.2, split_seed=0)
    c = data.prepare("digits", test_fraction=0.2, split_seed=1)
    assert len(a.train_labels) + len(a.test_labels) == 1797
    assert len(a.test_labels) == 360
    assert a.train_images.shape[1:] == (1, 8, 8) and a.train_images.dtype == np.uint8
    assert a.train_images.max() == 16 and a.pixel_max == 16
    assert np.array_equal(a.train_source_index, b.train_source_index)
    assert not np.array_equal(a.train_source_index, c.train_source_index)
    # stratified: every class keeps its share within one sample
    full = np.bincount(np.concatenate([a.train_labels, a.test_labels]))
    assert np.all(np.abs(np.bincount(a.test_labels) - 0.2 * full) <= 1)


def test_normalized_training_images_have_zero_mean_unit_std():
    prepared = data.prepare("digits", test_fraction=0.2, split_seed=0)
    x = normalize_images(prepared.train_images, prepared)
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1) < 1e-3


def test_round_trip_through_arrays():
    prepared = data.prepare("digits", test_fraction=0.25, split_seed=3)
    again = data.PreparedData.from_arrays(prepared.to_arrays())
    assert np.array_equal(again.train_images, prepared.train_images)
    assert again.pixel_max == prepared.pixel_max
    assert list(again.class_names) == [str(i) for i in range(10)]
