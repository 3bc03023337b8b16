"""Difference propagation: the same finite difference of input gradients, with linear ops in bf16."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from memorization_curvature import curvature, difference, models, training
from memorization_curvature.batches import ImageSet, normalize_images
from memorization_curvature.data import prepare

NETWORKS = {  # name: (constructor arguments, input shape)
    "small_cnn": ({"in_channels": 1, "num_classes": 10, "image_size": 8}, (1, 8, 8)),
    "resnet18_cifar": ({"in_channels": 3, "num_classes": 10, "image_size": 16}, (3, 16, 16)),
    "resnet18": ({"in_channels": 3, "num_classes": 10, "image_size": 32}, (3, 32, 32)),
}


def scoring_copy(model, dtype=torch.float64):
    model = model.to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return curvature.fold_batchnorm(model)


def random_network(name, seed=0):
    """Random weights and BatchNorm statistics of real batches (so the folded BatchNorm is not the identity)."""
    torch.manual_seed(seed)
    kwargs, shape = NETWORKS[name]
    model = models.build_model(name, **kwargs).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *shape))
    return scoring_copy(model), shape


class CrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy whose gradient keeps its precision for confident samples: the label's entry
    is -(sum of the other classes' probabilities), not softmax - 1, which rounds to 0 in float64 once
    the loss is below 1e-16 and keeps few digits well before (autograd's F.cross_entropy)."""

    @staticmethod
    def forward(ctx, logits, y):
        probs = torch.softmax(logits, 1)
        ctx.save_for_backward(probs, y)
        return F.cross_entropy(logits, y, reduction="sum")

    @staticmethod
    def backward(ctx, upstream):
        probs, y = ctx.saved_tensors
        others = probs.scatter(1, y[:, None], 0.0)
        return upstream * others.scatter(1, y[:, None], -others.sum(1, keepdim=True)), None


def input_gradient(model, x, y, accurate):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = CrossEntropySum.apply(logits, y) if accurate else F.cross_entropy(logits, y, reduction="sum")
    return torch.autograd.grad(loss, x)[0]


def finite_difference(model, x, y, dx, accurate=True):
    """g(x + dx) - g(x); ``accurate=False``: today's scoring path (F.cross_entropy's gradient)."""
    return input_gradient(model, x + dx, y, accurate) - input_gradient(model, x, y, accurate)


def relu_pattern_changes(model, x, dx):
    """How many ReLU inputs change sign between x and x + dx, per sample."""
    signs = []
    hooks = [m.register_forward_hook(lambda m, i, o: signs.append(i[0] > 0)) for m in model.modules()
             if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
        half = len(signs)
        model(x + dx)
    for hook in hooks:
        hook.remove()
    return sum((a != b).flatten(1).sum(1) for a, b in zip(signs[:half], signs[half:]))


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("h", [1e-3, 0.3])
def test_float64_propagation_is_the_finite_difference(name, h):
    model, shape = random_network(name)
    propagation, why = difference.build(model, torch.float64)
    assert propagation is not None, why
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, *shape, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=generator)
    dx = h * curvature.rademacher_probes(torch.arange(8), 1, shape, seed=0, dtype=torch.float64)[:, 0]
    expected = finite_difference(model, x, y, dx).flatten(1)
    got = propagation.gradient_difference(propagation.clean(x, y), dx).flatten(1)
    error = (got - expected).norm(dim=1) / expected.norm(dim=1)
    assert error.max() < 1e-9, error
    if h > 0.1:  # every sample changes activation patterns within this step: still the same difference
        assert (relu_pattern_changes(model, x, dx) > 0).all()


@pytest.fixture(scope="module")
def digits():
    prepared = prepare("digits", test_fraction=0.2, split_seed=0)
    return prepared, normalize_images(prepared.train_images, prepared), torch.from_numpy(prepared.train_labels)


def train(name, kwargs, images, labels, config, keep=()):
    """A network trained on (images, labels); with ``keep``, copies of it after those epochs instead."""
    torch.manual_seed(config.seed)
    model = models.build_model(name, **kwargs)
    kept = {}
    training.train(model, images, labels, images.subset(np.arange(0)), torch.empty(0, dtype=torch.long), config,
                   device=torch.device("cpu"),
                   on_epoch_end=lambda epoch, net, *_: kept.update({epoch: copy.deepcopy(net)}) if epoch in keep else None)
    return kept if keep else model


def spearman_of_bf16_against_float64(model, x, y, n_probes=4, h=1e-3):
    exact = scoring_copy(model, torch.float64)
    fast, why = difference.build(scoring_copy(model, torch.float32), torch.bfloat16)
    assert fast is not None, why
    keys = curvature.probe_keys(torch.arange(len(x)), n_probes, seed=0)
    state = fast.clean(x.float(), y)
    reference, scores = torch.zeros(len(x), dtype=torch.float64), torch.zeros(len(x), dtype=torch.float64)
    for k in range(n_probes):
        dx = h * curvature.probes_from_keys(keys[:, k : k + 1], tuple(x.shape[1:]), torch.float64)[:, 0]
        reference += finite_difference(exact, x.double(), y, dx).flatten(1).pow(2).sum(1)
        scores += fast.squared_norms(state, dx.float())
    return spearmanr(scores.numpy(), reference.numpy())[0]


@pytest.fixture(scope="module")
def digits_checkpoints(digits):
    """The small CNN after epochs 3 and 12 of the default digits recipe (config.yaml's), as the workflow trains it."""
    prepared, x, y = digits
    recipe = training.TrainConfig(epochs=12, batch_size=16, lr=0.01, momentum=0.9, weight_decay=0.0,
                                  lr_milestones=(0.6, 0.8), lr_gamma=0.1, seed=0)
    kept = train("small_cnn", {"in_channels": 1, "num_classes": 10, "image_size": 8}, ImageSet.of(prepared, "train"), y,
                 recipe, keep=(3, 12))
    return kept, x, y


@pytest.fixture(scope="module")
def trained_resnet18(digits):
    """The CIFAR-form ResNet18 trained 3 epochs on 500 digits as 3-channel 8x8 images."""
    prepared, _, y = digits
    colour = prepared.train_images[:500].repeat(3, axis=1)
    images = ImageSet(colour, np.full(3, prepared.mean[0]), np.full(3, prepared.std[0]), prepared.pixel_max)
    config = training.TrainConfig(epochs=3, batch_size=32, lr=0.01, momentum=0.9, weight_decay=0.0, lr_milestones=(),
                                  lr_gamma=1.0, seed=0)
    model = train("resnet18_cifar", {"in_channels": 3, "num_classes": 10, "image_size": 8}, images, y[:500], config)
    return model, images.normalize(torch.from_numpy(colour[:96])), y[:96]


def test_float64_propagation_is_the_finite_difference_on_trained_networks(digits_checkpoints, trained_resnet18):
    kept, x, y = digits_checkpoints
    for model, x, y in ((kept[12], x[:64], y[:64]), trained_resnet18):
        exact = scoring_copy(copy.deepcopy(model), torch.float64)
        propagation, _ = difference.build(exact, torch.float64)
        x, y = x[:64].double(), y[:64]
        dx = 1e-3 * curvature.rademacher_probes(torch.arange(len(x)), 1, tuple(x.shape[1:]), seed=3,
                                                dtype=torch.float64)[:, 0]
        expected = finite_difference(exact, x, y, dx).flatten(1)
        got = propagation.gradient_difference(propagation.clean(x, y), dx).flatten(1)
        assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max() < 1e-9


@pytest.mark.parametrize("epoch", [3, 12])
def test_bf16_ranks_like_float64_on_the_trained_digits_checkpoints(digits_checkpoints, epoch):
    kept, x, y = digits_checkpoints
    assert spearman_of_bf16_against_float64(copy.deepcopy(kept[epoch]), x, y) >= 0.999


def test_bf16_ranks_like_float64_on_a_trained_resnet18(trained_resnet18):
    model, x, y = trained_resnet18
    assert spearman_of_bf16_against_float64(copy.deepcopy(model), x, y, n_probes=2) >= 0.999


def test_an_unknown_operation_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2))
    propagation, why = difference.build(model)
    assert propagation is None and "GELU" in why


def test_scoring_in_bf16_agrees_with_float32_whatever_the_batching(digits_checkpoints):
    kept, x, y = digits_checkpoints
    model, x, y = kept[12], x[:300], y[:300]
    float32 = curvature.curvature_scores(model, x, y, n_probes=3)
    bf16 = curvature.curvature_scores(model, x, y, n_probes=3, precision="bf16")
    assert spearmanr(bf16, float32)[0] > 0.999 and not torch.equal(bf16, float32)
    other = curvature.curvature_scores(model, x, y, n_probes=3, precision="bf16", batch_size=37, probes_per_pass=2)
    other, bf16 = other.numpy(), bf16.numpy()
    np.testing.assert_allclose(other, bf16, rtol=1e-2)
    assert np.median(np.abs(other - bf16) / bf16) < 1e-3


def test_a_model_that_cannot_be_propagated_is_scored_in_float32(caplog):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 3))
    x, y = torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,))
    with caplog.at_level("INFO", logger="memorization_curvature"):
        bf16 = curvature.curvature_scores(model, x, y, n_probes=2, precision="bf16")
    assert torch.equal(bf16, curvature.curvature_scores(model, x, y, n_probes=2))
    assert "GELU" in caplog.text and "float32 finite difference" in caplog.text


def test_bf16_is_for_the_finite_difference_only():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(ValueError, match="finite difference"):
        curvature.curvature_scores(model, torch.randn(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), method="hvp",
                                   precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        curvature.curvature_scores(model, torch.randn(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), precision="fp8")
