"""The curvature estimate against the closed form of a linear softmax classifier.

For logits z = W x + b and cross-entropy with label y, grad_x L = W^T (p - e_y) and the input
Hessian is H = W^T (diag(p) - p p^T) W, so for probes v the finite-difference score equals
h^2 * mean_k ||H v_k||^2 up to O(h^3), and its expectation over Rademacher v is h^2 tr(H^2).
"""

import numpy as np
import pytest
import torch
from torch import nn

from memorization_curvature.curvature import curvature_scores, rademacher_probes
from memorization_curvature.models import SmallCNN

D, K = 16, 5


def linear_model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, K)).to(dtype)
    with torch.no_grad():
        model[1].weight.mul_(3)  # a sharper model makes the curvature differ clearly between samples
    return model


def exact_hessians(model, x, y):
    w = model[1].weight.detach()
    p = torch.softmax(model(x), dim=1).detach()
    jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, K, K)
    return w.T @ jac @ w  # (N, D, D)


def data(n=40, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=dtype), torch.randint(0, K, (n,), generator=g)


def test_matches_closed_form_for_the_same_probes():
    model, (x, y) = linear_model(), data()
    h, n_probes = 1e-5, 6
    scores = curvature_scores(model, x, y, n_probes=n_probes, h=h, seed=3)
    hess = exact_hessians(model, x, y)
    v = rademacher_probes(torch.arange(len(x)), n_probes, (1, 4, 4), seed=3).to(torch.float64).flatten(2)
    exact = (torch.einsum("nij,nkj->nki", hess, v) ** 2).sum(-1).mean(-1) * h**2
    # the finite difference is exact up to O(h) relative error; 1e-3 leaves a wide margin at h = 1e-5
    torch.testing.assert_close(scores, exact, rtol=1e-3, atol=0)


def test_paper_settings_in_float32_match_closed_form():
    model, (x, y) = linear_model(torch.float32), data(dtype=torch.float32)
    h, n_probes = 1e-3, 10
    scores = curvature_scores(model, x, y, n_probes=n_probes, h=h, seed=0)
    hess = exact_hessians(model.double(), x.double(), y)
    v = rademacher_probes(torch.arange(len(x)), n_probes, (1, 4, 4), seed=0).to(torch.float64).flatten(2)
    exact = (torch.einsum("nij,nkj->nki", hess, v) ** 2).sum(-1).mean(-1) * h**2
    # h = 1e-3 in float32: finite-difference and rounding error stay within 2 %
    torch.testing.assert_close(scores, exact, rtol=2e-2, atol=0)


def test_expectation_is_h2_trace_of_h_squared():
    model, (x, y) = linear_model(), data(n=8)
    h, n_probes = 1e-5, 3000
    estimate = curvature_scores(model, x, y, n_probes=n_probes, h=h, seed=11) / h**2
    h2 = exact_hessians(model, x, y) @ exact_hessians(model, x, y)  # H^2, symmetric
    trace = torch.diagonal(h2, dim1=1, dim2=2).sum(-1)
    # Var(v^T A v) = 2 (||A||_F^2 - sum_i A_ii^2) for Rademacher v; allow 5 standard errors
    variance = 2 * ((h2**2).sum((1, 2)) - (torch.diagonal(h2, dim1=1, dim2=2) ** 2).sum(-1))
    stderr = torch.sqrt(variance / n_probes)
    assert torch.all((estimate - trace).abs() < 5 * stderr + 1e-3 * trace)
    assert torch.all(stderr < 0.1 * trace)  # the check has teeth: 5 stderr is at most half the value


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_independent_of_batch_size_and_order(dtype, rtol):
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=8).to(dtype)
    model.train()  # BatchNorm in train mode would mix samples; scoring must switch to eval
    x = torch.randn(50, 1, 8, 8, dtype=dtype)
    y = torch.randint(0, 10, (50,))
    full = curvature_scores(model, x, y, n_probes=3, seed=5, batch_size=50)
    # a ReLU network has samples of almost zero curvature, where float32 rounding is all there is
    atol = rtol * float(full.median())
    small = curvature_scores(model, x, y, n_probes=3, seed=5, batch_size=7)
    torch.testing.assert_close(small, full, rtol=rtol, atol=atol)
    perm = torch.randperm(50)
    shuffled = curvature_scores(model, x[perm], y[perm], n_probes=3, seed=5, sample_ids=perm, batch_size=16)
    torch.testing.assert_close(shuffled, full[perm], rtol=rtol, atol=atol)
    other_seed = curvature_scores(model, x, y, n_probes=3, seed=6, batch_size=50)
    assert not torch.allclose(other_seed, full)


def test_model_state_is_restored():
    model = SmallCNN(1, 10, width=8)
    model.train()
    model.classifier.weight.requires_grad_(False)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    curvature_scores(model, x, y, n_probes=2)
    assert model.training
    assert not model.classifier.weight.requires_grad
    assert model.classifier.bias.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_wrong_label_has_higher_curvature_than_right_label():
    model, (x, _) = linear_model(), data(n=200)
    predicted = model(x).argmax(1)
    wrong = (predicted + 1) % K
    right_scores = curvature_scores(model, x, predicted, n_probes=10)
    wrong_scores = curvature_scores(model, x, wrong, n_probes=10)
    assert np.median((wrong_scores / right_scores).numpy()) > 1


def exact_scores(model, x, y, n_probes, h, seed, form="paper"):
    """h^2 mean ||H v||^2 (paper) or h mean ||H v|| (official) with the scorer's own probes."""
    hess = exact_hessians(model, x, y)
    v = rademacher_probes(torch.arange(len(x)), n_probes, tuple(x.shape[1:]), seed).to(torch.float64).flatten(2)
    norms_sq = (torch.einsum("nij,nkj->nki", hess, v) ** 2).sum(-1) * h**2
    return (norms_sq if form == "paper" else norms_sq.sqrt()).mean(-1)


@pytest.mark.parametrize("form", ["paper", "official"])
def test_hvp_method_is_exact_and_finite_difference_close(form):
    model, (x, y) = linear_model(), data()
    exact = exact_scores(model, x, y, n_probes=5, h=1e-3, seed=2, form=form)
    hvp = curvature_scores(model, x, y, n_probes=5, h=1e-3, seed=2, form=form, method="hvp")
    torch.testing.assert_close(hvp, exact, rtol=1e-10, atol=0)
    fd = curvature_scores(model, x, y, n_probes=5, h=1e-6, seed=2, form=form) * (1e-3 / 1e-6) ** (2 if form == "paper" else 1)
    torch.testing.assert_close(fd, exact, rtol=1e-3, atol=0)


def test_official_form_ranks_like_the_paper_form():
    model, (x, y) = linear_model(), data(n=200)
    paper = curvature_scores(model, x, y, n_probes=10)
    official = curvature_scores(model, x, y, n_probes=10, form="official")
    assert not torch.allclose(paper, official)
    ranks = lambda s: s.argsort().argsort().double()  # noqa: E731
    assert np.corrcoef(ranks(paper), ranks(official))[0, 1] > 0.95


@pytest.mark.parametrize("activation", [nn.Tanh, nn.GELU])
def test_finite_difference_converges_to_hvp_on_a_smooth_network(activation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), activation(), nn.Linear(32, 32), activation(),
                          nn.Linear(32, K)).double()
    x, y = data(n=30)
    errors = []
    for h in (1e-1, 1e-2, 1e-3, 1e-4):
        fd = curvature_scores(model, x, y, n_probes=4, h=h, seed=1)
        hvp = curvature_scores(model, x, y, n_probes=4, h=h, seed=1, method="hvp")
        errors.append(float(((fd - hvp).abs() / hvp).max()))
    # the finite difference's error is O(h): each tenfold smaller h cuts it at least fivefold
    assert all(a > 5 * b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3


@pytest.mark.parametrize("method", ["finite_difference", "hvp"])
def test_independent_of_probes_per_pass_and_loader(method):
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=8).double()
    x, y = torch.randn(23, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (23,))
    reference = curvature_scores(model, x, y, n_probes=5, seed=4, method=method)
    if method == "finite_difference":
        for per_pass in (2, 5, 7):
            stacked = curvature_scores(model, x, y, n_probes=5, seed=4, probes_per_pass=per_pass)
            torch.testing.assert_close(stacked, reference, rtol=1e-9, atol=0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    torch.testing.assert_close(curvature_scores(model, loader, n_probes=5, seed=4, method=method), reference,
                               rtol=1e-9, atol=0)
    ids = torch.arange(23)
    with_ids = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, ids), batch_size=10, shuffle=True,
                                           generator=torch.Generator().manual_seed(0))
    # the loader reshuffles on each pass: read the order of a pass with the same generator state
    with_ids.generator.manual_seed(0)
    order = torch.cat([batch[2] for batch in with_ids])
    with_ids.generator.manual_seed(0)
    shuffled = curvature_scores(model, with_ids, n_probes=5, seed=4, method=method)
    torch.testing.assert_close(shuffled, reference[order], rtol=1e-9, atol=0)


def test_low_precision_model_is_refused():
    model, (x, y) = linear_model(torch.bfloat16), data(dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        curvature_scores(model, x, y)


@pytest.mark.parametrize("kwargs,match", [({"n_probes": 0}, "n_probes"), ({"h": 0.0}, "h must be"), ({"h": -1e-3}, "h must be"),
                                          ({"form": "squared"}, "form"), ({"method": "exact"}, "method"),
                                          ({"probes_per_pass": 0}, "probes_per_pass")])
def test_bad_arguments_are_refused(kwargs, match):
    model, (x, y) = linear_model(), data(n=4)
    with pytest.raises(ValueError, match=match):
        curvature_scores(model, x, y, **kwargs)


class DataDependent(nn.Module):
    """A model torch.fx cannot trace (Python control flow on a tensor value)."""

    def __init__(self):
        super().__init__()
        self.net = SmallCNN(1, 10, width=8)

    def forward(self, x):
        return self.net(x) if x.sum() > -1e9 else -self.net(x)


def test_folding_batchnorm_changes_nothing_but_speed():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=8).double()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    x, y = torch.randn(20, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (20,))
    plain = curvature_scores(model, x, y, n_probes=4, seed=1)
    folded = curvature_scores(model, x, y, n_probes=4, seed=1, fold_bn=True)
    torch.testing.assert_close(folded, plain, rtol=1e-7, atol=0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the caller's model is untouched
    untraceable = DataDependent().double()
    torch.testing.assert_close(curvature_scores(untraceable, x, y, n_probes=4, seed=1, fold_bn=True),
                               curvature_scores(untraceable, x, y, n_probes=4, seed=1), rtol=1e-12, atol=0)


def test_cifar_resnet18_keeps_32x32_resolution_in_its_stem():
    from memorization_curvature.models import build_model

    model = build_model("resnet18_cifar", in_channels=3, num_classes=100, image_size=32).eval()
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    scores = curvature_scores(model, torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2]), n_probes=2)
    assert scores.shape == (3,) and torch.all(scores > 0)
