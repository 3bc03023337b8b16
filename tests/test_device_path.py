"""The per-batch paths of training and scoring never copy host data to the device nor read back from it.

They run here on PyTorch's meta device: tensors with shapes and no data, where ``.item()`` and
``.cpu()`` raise, and every copy from a CPU tensor to the device is recorded. A loop that moved
random numbers, positions or images to the device per batch, or waited for a value, fails.
"""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from memorization_curvature import models, training
from memorization_curvature.batches import DeviceImages, ImageSet, LabelledBatches
from memorization_curvature.curvature import score_batches

META = torch.device("meta")


class HostToDevice(TorchDispatchMode):
    """Counts operations that turn a CPU tensor (not a 0-d scalar) into a device tensor."""

    def __init__(self):
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        outputs = out if isinstance(out, (tuple, list)) else [out]
        if any(isinstance(o, torch.Tensor) and o.device == META for o in outputs) and any(
                a.device.type == "cpu" and a.dim() > 0 for a in inputs):
            self.copies += 1
        return out


def image_set(n=120, shape=(3, 8, 8)):
    pixels = np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)
    return ImageSet(pixels, np.full(shape[0], 120.0), np.full(shape[0], 60.0), 255.0)


def recipe(batch_size):
    return training.TrainConfig(epochs=1, batch_size=batch_size, lr=0.1, momentum=0.9, weight_decay=1e-4,
                                lr_milestones=(0.5,), lr_gamma=0.1, augment_shift=2, augment_flip=True)


def test_the_meta_device_catches_what_this_test_forbids():
    x = torch.ones(3, device=META)
    with pytest.raises(Exception):
        x.sum().item()
    with pytest.raises(Exception):
        x.cpu()
    with HostToDevice() as watch:
        torch.arange(4).to(META)
    assert watch.copies == 1


@pytest.mark.parametrize("record_logits", [False, True])  # statistics from the training pass: gathered on the device
@pytest.mark.parametrize("placement", ["device", "stream"])
def test_a_training_epoch_copies_to_the_device_a_fixed_number_of_times(placement, record_logits):
    images = image_set()
    model = models.build_model("small_cnn", in_channels=3, num_classes=10, image_size=8).to(META)
    labels = torch.zeros(len(images), dtype=torch.long, device=META)
    train_x = DeviceImages(images, META, placement, workers=0)
    copies = {}
    for batch_size in (8, 40):  # 15 batches, then 3
        optimizer = training.sgd(model, recipe(batch_size), META)
        with HostToDevice() as watch:
            _, recorded = training.train_epoch(model, optimizer, train_x, labels, recipe(batch_size),
                                               torch.Generator().manual_seed(0), record_logits=record_logits)
        copies[batch_size] = watch.copies
        assert (recorded is not None) == record_logits
        if record_logits:
            assert recorded.shape == (len(images), 10) and recorded.device == META
    if placement == "device":
        # per epoch: the order, and the shifts and flips of every sample (one table); nothing per batch
        assert copies == {8: 2, 40: 2}
    else:
        # streamed pixels must travel, one copy per batch, and nothing else does
        assert copies == {8: 2 + 15, 40: 2 + 3}


@pytest.mark.parametrize("probes_per_pass", [1, 3])
def test_scoring_batches_copy_nothing_to_the_device(probes_per_pass):
    images = image_set(50)
    model = models.build_model("small_cnn", in_channels=3, num_classes=10, image_size=8).to(META).eval()
    data = LabelledBatches(images, np.arange(50) % 10, batch_size=16, device=META)
    with HostToDevice() as watch:  # the loop of curvature_scores, as on CUDA (channels_last)
        scores = list(score_batches(model, data, device=META, dtype=torch.float32, channels_last=True, n_probes=5,
                                    seed=0, h=1e-3, form="paper", method="finite_difference",
                                    probes_per_pass=probes_per_pass))
    assert [len(s) for s in scores] == [16, 16, 16, 2] and all(s.device == META for s in scores)
    assert watch.copies == 0


def reference_augment(pixels, dy, dx, flip, shift):
    """Per image, in numpy: pad with black, crop at (dy, dx), flip."""
    out = []
    for image, y, x, f in zip(pixels, dy, dx, flip):
        padded = np.pad(image, ((0, 0), (shift, shift), (shift, shift)))
        crop = padded[:, y : y + image.shape[1], x : x + image.shape[2]]
        out.append(crop[:, :, ::-1] if f else crop)
    return np.stack(out)


@pytest.mark.parametrize("shift,flip", [(2, True), (3, False), (0, True)])
def test_augmentation_shifts_and_flips_each_image_by_its_own_parameters(shift, flip):
    pixels = np.random.default_rng(1).integers(0, 256, (30, 3, 7, 9), dtype=np.uint8)
    config = training.TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, lr_milestones=(),
                                  lr_gamma=0.1, augment_shift=shift, augment_flip=flip)
    params = training.draw_augmentation(30, config, torch.Generator().manual_seed(0))
    assert params.shape == (30, 3) and params[:, :2].max() <= 2 * shift and params[:, 2].any() == flip
    positions = torch.tensor([4, 0, 29, 17, 17, 8])
    augment = training.Augmentation(params, shift, (3, 7, 9), torch.device("cpu"))
    out = augment(torch.from_numpy(pixels[positions.numpy()]), positions)
    dy, dx, flips = params[positions].numpy().T
    assert np.array_equal(out.numpy(), reference_augment(pixels[positions.numpy()], dy, dx, flips, shift))
    none = training.TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, lr_milestones=(),
                                lr_gamma=0.1)
    assert training.draw_augmentation(30, none, torch.Generator()) is None
