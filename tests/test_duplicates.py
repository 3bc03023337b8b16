"""Planted duplicates with conflicting labels are all found, and nothing else is."""

import numpy as np

from memorization_curvature.duplicates import conflicting_pairs, image_features, similar_pairs

from dataset_files import digit_images


def smooth_images(n, seed):
    """n distinct smooth colour images (3, 32, 32): random 8x8 patterns upsampled, as photos are smooth."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return (F.interpolate(low, size=32, mode="bilinear", align_corners=False) * 255).round().numpy()


def test_planted_shifted_rescaled_copies_are_found_and_nothing_else():
    rng = np.random.default_rng(0)
    images = smooth_images(400, seed=0)
    labels = rng.integers(0, 10, 400)
    sources = rng.choice(200, size=12, replace=False)
    targets = 200 + rng.choice(200, size=12, replace=False)
    for src, dst in zip(sources, targets):
        copy = np.roll(images[src], shift=(1, -1), axis=(1, 2))  # shifted by a pixel each way
        images[dst] = np.clip(copy * 0.8 + 20, 0, 255)  # darker, brighter background
        labels[dst] = (labels[src] + 1 + rng.integers(9)) % 10  # a conflicting label
    images = images.astype(np.uint8)
    pairs = conflicting_pairs(similar_pairs(image_features(images), threshold=0.9, block=64), labels)
    found = {tuple(sorted(p)) for p in pairs[["i", "j"]].to_numpy().tolist()}
    planted = {tuple(sorted((int(s), int(t)))) for s, t in zip(sources, targets)}
    assert found == planted
    assert (pairs["label_i"] != pairs["label_j"]).all()


def test_blocks_do_not_change_the_pairs():
    images, _ = digit_images(150, 16)
    features = image_features(images[:, None])
    a = similar_pairs(features, 0.9, block=7)
    b = similar_pairs(features, 0.9, block=1000)
    assert a[["i", "j"]].values.tolist() == b[["i", "j"]].values.tolist() and len(a) > 0
    assert (a["i"] < a["j"]).all()


def test_chunked_features_and_blocked_comparison_change_nothing():
    images = smooth_images(300, seed=1).astype(np.uint8)
    images[150] = images[3]
    features = image_features(images, 8)
    assert np.array_equal(image_features(images, 8, chunk=7), features)
    whole = similar_pairs(features, 0.5)
    blocked = similar_pairs(features, 0.5, block=13)
    assert (3, 150) in set(zip(whole["i"], whole["j"])) and whole.equals(blocked)


def test_area_downsampling_matches_torch_adaptive_pooling():
    import torch
    import torch.nn.functional as F

    from memorization_curvature.duplicates import area_downsample

    images = np.random.default_rng(2).uniform(0, 255, (5, 3, 21, 32)).astype(np.float32)
    for side in (8, 5):  # windows of one size, and overlapping windows of two sizes
        expected = F.adaptive_avg_pool2d(torch.from_numpy(images), side).numpy()
        np.testing.assert_allclose(area_downsample(images, side), expected, rtol=1e-5)
