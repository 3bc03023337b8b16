"""Images held on the device and images streamed from a memory-mapped file give the same batches,
and so the same trained network."""

import numpy as np
import pytest
import torch

from memorization_curvature import data, io, models, training
from memorization_curvature.batches import DeviceImages, ImageSet, LabelledBatches, normalize_images


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prepared") / "data.npz"
    io.save_npz(path, **data.prepare("digits", test_fraction=0.2, split_seed=0).to_arrays())
    return path


def mapped(path):
    return data.PreparedData.from_arrays(io.load_npz(path, mmap=("train_images", "test_images")))


def test_mapped_images_are_read_from_the_file_not_copied(digits_file):
    prepared = mapped(digits_file)
    assert isinstance(prepared.train_images, np.memmap) and not prepared.train_images.flags.writeable
    in_memory = data.PreparedData.from_arrays(io.load_npz(digits_file))
    assert np.array_equal(prepared.train_images, in_memory.train_images)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_batches_held_on_the_device(digits_file, workers):
    images = ImageSet.of(mapped(digits_file)).subset(np.arange(5, 400))  # a subset, as a fold uses
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    held = list(DeviceImages(images, torch.device("cpu"), "device").iterate(order, 64))
    streamed = list(DeviceImages(images, torch.device("cpu"), "stream", workers=workers).iterate(order, 64))
    assert len(held) == len(streamed) == 7
    for (p1, x1), (p2, x2) in zip(held, streamed):
        assert torch.equal(p1, p2) and torch.equal(x1, x2)
    # and both are the normalized images at those positions
    positions, x = held[0]
    expected = normalize_images(images.images[images.index[positions.numpy()]], mapped(digits_file))
    assert torch.equal(x, expected)


def test_auto_placement_streams_what_does_not_fit(digits_file, monkeypatch):
    from memorization_curvature import batches

    images = ImageSet.of(mapped(digits_file))
    assert DeviceImages(images, torch.device("cpu"), "auto").placement == "device"
    monkeypatch.setattr(batches, "_free_bytes", lambda device: images.nbytes)  # twice the pixels needed
    assert DeviceImages(images, torch.device("cpu"), "auto").placement == "stream"
    with pytest.raises(ValueError, match="placement 'disk'"):
        DeviceImages(images, torch.device("cpu"), "disk")


def test_training_streamed_gives_the_same_weights(digits_file):
    prepared = mapped(digits_file)
    config = training.TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-4,
                                  lr_milestones=(0.5,), lr_gamma=0.1, augment_shift=1, augment_flip=True, seed=3)
    weights, logits = [], []
    for placement in ("device", "stream"):
        torch.manual_seed(0)
        model = models.build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
        seen = []
        training.train(model, ImageSet.of(prepared), torch.from_numpy(prepared.train_labels),
                       ImageSet.of(prepared, "test"), torch.from_numpy(prepared.test_labels), config,
                       device=torch.device("cpu"), placement=placement, workers=2,
                       on_epoch_end=lambda epoch, net, metrics, train_logits, _: seen.append(train_logits))
        weights.append(model.state_dict())
        logits.append(seen[-1])
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert torch.equal(logits[0], logits[1])
    assert (logits[0].argmax(1).numpy() == prepared.train_labels).mean() > 0.8  # it did learn


def test_scoring_batches_carry_labels_and_ids(digits_file):
    prepared = mapped(digits_file)
    labels = np.arange(len(prepared.test_labels)) % 10
    batches = list(LabelledBatches(ImageSet.of(prepared, "test"), labels, 100, first_id=1000))
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, normalize_images(prepared.test_images, prepared))
    assert torch.cat([b[1] for b in batches]).tolist() == labels.tolist()
    assert torch.cat([b[2] for b in batches]).tolist() == list(range(1000, 1000 + len(labels)))
    with pytest.raises(ValueError, match="3 labels"):
        LabelledBatches(ImageSet.of(prepared, "test"), labels[:3], 100)


def test_a_mapped_image_set_pickles_as_its_file_not_its_pixels(digits_file):
    import pickle

    images = ImageSet.of(mapped(digits_file)).subset(np.arange(10, 300))
    blob = pickle.dumps(images)
    assert len(blob) < images.images.nbytes / 10  # the file's name and layout, and the index: not the pixels
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap) and copy.images.filename == images.images.filename
    assert np.array_equal(copy.pixels(np.arange(len(copy))), images.pixels(np.arange(len(images))))
    in_memory = ImageSet(np.array(images.images), images.mean, images.std, images.pixel_max)
    assert len(pickle.dumps(in_memory)) > in_memory.images.nbytes  # arrays in memory still travel whole


def test_streaming_under_the_spawn_start_method(digits_file):
    # spawned workers get the pickled reader: with a memory map they open the file themselves
    images = ImageSet.of(mapped(digits_file)).subset(np.arange(3, 203))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    held = list(DeviceImages(images, torch.device("cpu"), "device").iterate(order, 50))
    spawned = list(DeviceImages(images, torch.device("cpu"), "stream", workers=2, context="spawn").iterate(order, 50))
    assert len(spawned) == 4
    for (p1, x1), (p2, x2) in zip(held, spawned):
        assert torch.equal(p1, p2) and torch.equal(x1, x2)
