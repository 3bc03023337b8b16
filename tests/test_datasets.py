"""Each dataset kind through the real reader, on tiny files in its real on-disk format."""

import numpy as np
import pytest

from memorization_curvature import data

from dataset_files import write_cifar10, write_cifar100, write_imagefolder, write_mnist


def assert_read_as_written(prepared, written, splits=("train", "test")):
    """Every pixel and label the reader gives back is the one written, in the files' order."""
    for split in splits:
        images, labels = written[split]
        np.testing.assert_array_equal(getattr(prepared, f"{split}_images"), images, err_msg=split)
        np.testing.assert_array_equal(getattr(prepared, f"{split}_labels"), labels, err_msg=split)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path, name, folder):
    written = write_mnist(tmp_path, folder, n_train=50, n_test=20)
    prepared = data.prepare(name, test_fraction=0.2, split_seed=0, root=str(tmp_path))
    assert prepared.train_images.shape == (50, 1, 28, 28) and prepared.test_images.shape == (20, 1, 28, 28)
    assert prepared.pixel_max == 255 and prepared.num_classes == 10
    assert prepared.class_names[3] == {"mnist": "3 - three", "fashion_mnist": "Dress"}[name]
    assert_read_as_written(prepared, written)
    assert not np.array_equal(written["train"][0], written["train"][0].transpose(0, 1, 3, 2))  # a swap would show


def test_cifar10_batches_with_and_without_checksums(tmp_path):
    written = write_cifar10(tmp_path, per_batch=10, n_test=20)
    # the official MD5 sums guard users' files: our tiny copies fail them
    with pytest.raises(data.DatasetNotFound, match="cifar-10-batches-py"):
        data.prepare("cifar10", test_fraction=0.2, split_seed=0, root=str(tmp_path))
    prepared = data.prepare("cifar10", test_fraction=0.2, split_seed=0, root=str(tmp_path), verify_checksums=False)
    assert prepared.train_images.shape == (50, 3, 32, 32) and len(prepared.test_labels) == 20
    assert list(prepared.class_names) == [f"class{c}" for c in range(10)]
    assert_read_as_written(prepared, written)  # channels, rows and columns where CIFAR's layout puts them


def test_cifar100_fine_labels(tmp_path):
    written = write_cifar100(tmp_path, n_train=30, n_test=10)
    prepared = data.prepare("cifar100", test_fraction=0.2, split_seed=0, root=str(tmp_path), verify_checksums=False)
    assert prepared.num_classes == 100 and prepared.class_names[3] == "fine03"
    assert_read_as_written(prepared, written)  # the fine labels, not the coarse ones written beside them


def test_imagefolder_split_or_test_folder(tmp_path):
    written = write_imagefolder(tmp_path / "a", per_class=5, size=16)
    split = data.prepare("imagefolder", test_fraction=0.2, split_seed=0, root=str(tmp_path / "a"), image_size=16)
    assert split.train_images.shape == (40, 3, 16, 16) and len(split.test_labels) == 10
    assert list(split.class_names) == [f"digit_{c}" for c in range(10)]
    # images already of the side asked for are kept pixel for pixel; the split is by source index
    images, labels = written["train"]
    np.testing.assert_array_equal(split.train_images, images[split.train_source_index])
    np.testing.assert_array_equal(split.train_labels, labels[split.train_source_index])
    test_index = np.setdiff1d(np.arange(50), split.train_source_index)
    np.testing.assert_array_equal(split.test_images, images[test_index])
    written = write_imagefolder(tmp_path / "b", per_class=4, size=16, test_per_class=2)
    held_out = data.prepare("imagefolder", test_fraction=0.2, split_seed=0, root=str(tmp_path / "b"), image_size=16)
    assert len(held_out.train_labels) == 40 and len(held_out.test_labels) == 20
    assert_read_as_written(held_out, written)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_files_say_which_and_where(tmp_path, name):
    with pytest.raises(data.DatasetNotFound) as error:
        data.prepare(name, test_fraction=0.2, split_seed=0, root=str(tmp_path / "nowhere"))
    assert "nowhere" in str(error.value)


def test_imagefolder_decoded_into_files_by_several_processes_is_the_same(tmp_path):
    from memorization_curvature import data as data_module

    write_imagefolder(tmp_path / "a", per_class=30, size=20)  # 300 images: two decoding tasks of 256
    plain = data.prepare("imagefolder", test_fraction=0.2, split_seed=0, root=str(tmp_path / "a"), image_size=16)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    parallel = data.prepare("imagefolder", test_fraction=0.2, split_seed=0, root=str(tmp_path / "a"), image_size=16,
                            workers=2, scratch=str(scratch))
    assert data_module._CHUNK < 300
    assert isinstance(parallel.train_images, np.memmap)  # written to a file as decoded, not held in memory
    for field in ("train_images", "test_images", "train_labels", "test_labels", "mean", "std"):
        assert np.array_equal(getattr(plain, field), getattr(parallel, field)), field


def test_imagefolder_keeps_the_centre_of_oblong_images(tmp_path):
    from PIL import Image

    # 60 x 20 pixels: red, green and blue thirds; the centre square is the green one
    picture = np.zeros((20, 60, 3), dtype=np.uint8)
    picture[:, :20, 0] = picture[:, 20:40, 1] = picture[:, 40:, 2] = 255
    for label in ("a", "b"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(picture).save(tmp_path / "train" / label / f"{i}.png")
    prepared = data.prepare("imagefolder", test_fraction=0.2, split_seed=0, root=str(tmp_path), image_size=10)
    image = prepared.train_images[0]
    assert image.shape == (3, 10, 10)
    inner = image[:, :, 1:-1]  # the outermost columns blend with the neighbouring thirds
    assert inner[1].min() == 255 and inner[0].max() == 0 and inner[2].max() == 0  # undistorted, centred
