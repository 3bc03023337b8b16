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
    # 8x8: its stem keeps the resolution, and float64 convolutions at 16x16 cost the CPU 4x more
    "resnet18_cifar": ({"in_channels": 3, "num_classes": 10, "image_size": 8}, (3, 8, 8)),
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


def propagated_against_subtracted(model, shape, h, seed):
    """(x, y, dx, the finite difference by subtraction, by float64 propagation) on 8 random samples."""
    propagation, why = difference.build(model, torch.float64)
    assert propagation is not None, why
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, *shape, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=generator)
    dx = h * curvature.rademacher_probes(torch.arange(8), 1, shape, seed=0, dtype=torch.float64)[:, 0]
    expected = finite_difference(model, x, y, dx).flatten(1)
    return x, y, dx, expected, propagation.gradient_difference(propagation.clean(x, y), dx).flatten(1)


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("h", [1e-3, 0.3])
def test_float64_propagation_is_the_finite_difference(name, h):
    model, shape = random_network(name)
    x, _, dx, expected, got = propagated_against_subtracted(model, shape, h, seed=1)
    error = (got - expected).norm(dim=1) / expected.norm(dim=1)
    assert error.max() < 1e-9, error
    if h > 0.1:  # every sample changes activation patterns within this step: still the same difference
        assert (relu_pattern_changes(model, x, dx) > 0).all()


@pytest.mark.parametrize("h", [1e-3, 0.3])
def test_the_mirrored_query_propagates_exactly(h):
    # the privacy audit's second query (models.Flipped): a flip of the input, a permutation
    network, shape = random_network("small_cnn")
    model = curvature.fold_batchnorm(models.Flipped(network))
    assert difference.build(model, torch.bfloat16)[0] is not None  # bf16 too: no float32 fallback
    x, y, dx, expected, got = propagated_against_subtracted(model, shape, h, seed=2)
    assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max() < 1e-9
    # and it is the mirrored image's: the network's difference at flipped inputs, flipped back
    plain = finite_difference(network, x.flip(-1), y, dx.flip(-1)).flip(-1).flatten(1)
    assert torch.allclose(expected, plain, rtol=1e-9, atol=1e-14)


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
    resnet, resnet_x, resnet_y = trained_resnet18
    for model, x, y in ((kept[12], x[:64], y[:64]), (resnet, resnet_x[:32], resnet_y[:32])):
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
    # 600 of the 1,437 training samples: the float64 reference is the cost
    assert spearman_of_bf16_against_float64(copy.deepcopy(kept[epoch]), x[:600], y[:600]) >= 0.999


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


# -- every node read exactly, or refused (issue 23, point 7) --


def frozen(model):
    """A float64 eval-mode copy with parameters not requiring gradients, BatchNorm not folded."""
    model = copy.deepcopy(model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def assert_propagates_exactly(model, shape, h, classes=5, n=8):
    """The float64 propagation through ``model`` equals g(x + dx) - g(x) by autograd; returns (x, dx)."""
    propagation, why = difference.build(model, torch.float64)
    assert propagation is not None, why
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, *shape, generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=generator)
    dx = h * curvature.rademacher_probes(torch.arange(n), 1, shape, seed=0, dtype=torch.float64)[:, 0]
    expected = finite_difference(model, x, y, dx).flatten(1)
    got = propagation.gradient_difference(propagation.clean(x, y), dx).flatten(1)
    error = (got - expected).norm(dim=1) / expected.norm(dim=1)
    assert error.max() < 1e-9, error
    return x, dx


def inputs_of(model, modules, x):
    """The input of each of ``modules`` (copied before any in-place operation) when ``model`` runs on x."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, i: seen.append(i[0].clone())) for m in modules]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def randomize_batchnorm(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                t.data = torch.randn(t.shape, generator=generator, dtype=t.dtype)
            m.running_var.data = 0.5 + torch.rand(m.running_var.shape, generator=generator, dtype=m.running_var.dtype)
    return model


class Pooling(nn.Module):
    """Average pooling as modules and functions (plain, padded, adaptive), and a broadcast addition."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool, self.adaptive = nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        a = F.relu(self.conv(x))
        b = F.avg_pool2d(a, 3, stride=1, padding=1, count_include_pad=False) + F.adaptive_avg_pool2d(a, 1)
        return self.fc(self.adaptive(F.relu(self.pool(b))).flatten(1))


class Reshaping(nn.Module):
    """Tensor.view and Tensor.reshape between the layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, stride=2)
        self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 5)

    def forward(self, x):
        a = F.relu(self.conv(x)).view(-1, 64)
        return self.fc2(F.relu(self.fc1(a)).reshape(-1, 4, 8).reshape(-1, 32))


class Concatenation(nn.Module):
    """Concatenation of channels (one tensor twice, an in-place ReLU's output) and of flattened features."""

    def __init__(self, cat):
        super().__init__()
        self.cat = cat
        self.conv1, self.conv2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 2, 1)
        self.conv3 = nn.Conv2d(8, 4, 3, padding=1, stride=2)
        self.fc = nn.Linear(64 + 128, 5)

    def forward(self, x):
        a = self.conv1(x)
        b = F.relu(self.conv2(x), inplace=True)  # nothing else reads conv2's output: the same function
        c = F.relu(self.conv3(self.cat([F.relu(a), b, a], 1)))
        return self.fc(self.cat((c.flatten(1), x.flatten(1)), dim=1))


def with_batchnorm(order):
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    if order == "relu first":  # not a convolution's output: folding leaves it as it is
        layers[1:] = layers[:0:-1]
    model = randomize_batchnorm(nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 8 * 8, 5)))
    return scoring_copy(model) if order == "relu first" else frozen(model)


TINY_MODELS = {  # name: a float64 eval-mode model of (2, 8, 8) inputs
    "batchnorm unfolded": lambda: with_batchnorm("unfolded"),
    "batchnorm after a relu": lambda: with_batchnorm("relu first"),
    "average pooling": lambda: frozen(Pooling()),
    "dropout": lambda: frozen(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                                            nn.Linear(256, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 5))),
    "view and reshape": lambda: frozen(Reshaping()),
    "torch.cat": lambda: frozen(Concatenation(torch.cat)),
    "torch.concat": lambda: frozen(Concatenation(torch.concat)),
}


@pytest.mark.parametrize("name", list(TINY_MODELS))
@pytest.mark.parametrize("h", [1e-3, 0.3])
def test_float64_propagation_through_more_operations_is_the_finite_difference(name, h):
    torch.manual_seed(0)
    model = TINY_MODELS[name]()
    kinds = {type(m) for m in model.modules()}
    if name.startswith("batchnorm"):  # propagated as BatchNorm, not folded into a convolution
        assert nn.BatchNorm2d in kinds
    if name == "dropout":
        assert nn.Dropout in kinds and not model.training
    x, dx = assert_propagates_exactly(model, (2, 8, 8), h)
    if h > 0.1 and nn.ReLU in kinds:  # activation patterns change: still the same difference
        assert (relu_pattern_changes(model, x, dx) > 0).any()


def test_float64_propagation_through_max_pooling_whose_argmax_moves():
    torch.manual_seed(0)
    pools = [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)]
    model = frozen(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), pools[0], nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                 pools[1], nn.Flatten(), nn.Linear(4 * 3 * 3, 5)))
    x, dx = assert_propagates_exactly(model, (2, 8, 8), h=0.5)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    for pool, clean, shifted in zip(pools, inputs_of(model, pools, x), inputs_of(model, pools, x + dx)):
        argmax = [F.max_pool2d(t, pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode,
                               return_indices=True)[1] for t in (clean, shifted)]
        assert (argmax[0] != argmax[1]).any()  # the shifted input is routed elsewhere for some elements


class Clamp(nn.Module):
    """A clamping function as a module (fx traces through it: the function is in the graph), for hooks."""

    def __init__(self, function, lo, hi):
        super().__init__()
        self.function, self.min_val, self.max_val = function, lo, hi

    def forward(self, x):
        return self.function(x)


def test_float64_propagation_through_relu6_and_hardtanh_is_the_finite_difference():
    torch.manual_seed(0)
    clamps = [nn.ReLU6(inplace=True), nn.Hardtanh(-0.5, 0.5), Clamp(F.relu6, 0.0, 6.0),
              Clamp(lambda t: F.hardtanh(t, min_val=-1.5, max_val=0.25), -1.5, 0.25)]
    layers = []
    for i, clamp in enumerate(clamps):
        conv = nn.Conv2d(2 if i == 0 else 6, 6, 3, padding=1)
        conv.weight.data *= 8 if isinstance(clamp, (nn.ReLU6, Clamp)) and clamp.max_val == 6 else 2
        layers += [conv, clamp]
    model = frozen(nn.Sequential(*layers, nn.Flatten(), nn.Linear(6 * 6 * 6, 5)))
    propagation, why = difference.build(model, torch.float64)
    assert propagation is not None, why
    kinds = {n.target if n.op == "call_function" else type(model.get_submodule(n.target))
             for n in propagation.graph_module.graph.nodes if n.op in ("call_function", "call_module")}
    assert {nn.ReLU6, nn.Hardtanh, F.relu6, F.hardtanh} <= kinds
    x, dx = assert_propagates_exactly(model, (2, 6, 6), h=0.3)
    clamps = [m for m in model.modules() if isinstance(m, (nn.Hardtanh, Clamp))]
    for clamp, clean, shifted in zip(clamps, inputs_of(model, clamps, x), inputs_of(model, clamps, x + dx)):
        for kink in (clamp.min_val, clamp.max_val):  # some inputs cross each kink under the shift
            assert ((clean > kink) != (shifted > kink)).any(), (clamp, kink)
    assert_propagates_exactly(model, (2, 6, 6), h=1e-3)


@pytest.mark.parametrize("activation", [nn.SiLU(), nn.GELU(), F.silu])
def test_smooth_activations_are_refused_by_name(activation):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), activation if isinstance(activation, nn.Module)
                          else Clamp(activation, None, None), nn.Linear(8, 3))
    propagation, why = difference.build(model)
    name = type(activation).__name__ if isinstance(activation, nn.Module) else activation.__name__
    assert propagation is None and name in why


class Refused(nn.Module):
    """A tiny model around one operation that the propagation does not read exactly."""

    def __init__(self, case):
        super().__init__()
        self.case = case
        self.conv = {"reflect padding": nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                     "same padding": nn.Conv2d(2, 2, 3, padding="same")}.get(case, nn.Conv2d(2, 2, 3, padding=1))
        self.norm = {"affine=False": nn.BatchNorm2d(2, affine=False),
                     "no running statistics": nn.BatchNorm2d(2, track_running_stats=False)}.get(case, nn.Identity())
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.bias = nn.Parameter(torch.zeros(2, 4, 4))
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        a = self.norm(self.conv(x))
        if self.case == "relu in place":  # overwrites a, read again below
            a = a + F.relu(a, inplace=True)
        if self.case == "relu in place on the input":
            a = a + F.relu(x, inplace=True)
        if self.case == "module in place on a view":  # the view's base is read again
            a = a + self.relu(a.view(-1, 2, 4, 4)).view(-1, 2, 4, 4)
        if self.case == "add with alpha":
            a = torch.add(a, F.relu(a), alpha=2.0)
        if self.case == "get_attr":
            a = a + self.bias
        if self.case == "pool returning indices":
            a = self.pool(a)[0].repeat(1, 1, 2, 2)
        logits = self.fc(a.flatten(1))
        return (logits, a) if self.case == "two outputs" else logits


REFUSALS = {  # case: what the reason says
    "relu in place": "in place", "relu in place on the input": "in place", "module in place on a view": "in place",
    "add with alpha": "alpha", "reflect padding": "padding_mode='reflect'", "same padding": "padding='same'",
    "affine=False": "affine=False", "no running statistics": "track_running_stats=False", "get_attr": "get_attr",
    "pool returning indices": "return_indices", "two outputs": "output",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_what_is_not_read_exactly_is_refused_with_its_reason(case):
    propagation, why = difference.build(Refused(case).eval())
    assert propagation is None and REFUSALS[case] in why, why


def test_propagation_is_for_eval_mode():
    model = with_batchnorm("unfolded")
    propagation, why = difference.build(model, torch.float64)
    assert propagation is not None, why
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        propagation.clean(torch.randn(2, 2, 8, 8, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
