"""The finite difference of input gradients, g(x + dx) - g(x), computed by propagating the difference.

The finite-difference curvature subtracts two gradients that differ by about h = 1e-3 of their size,
so computed as a subtraction it needs float32 throughout. Carried through the network explicitly it
does not: with the clean pass's values (float32), the difference of every activation is propagated
forward and the difference of every backward signal backward. A linear operation (convolution with
BatchNorm folded into it, linear layer, BatchNorm not folded, pooling by averages, residual addition,
concatenation, flattening and reshaping, dropout in eval mode) acts on the difference alone, W dx, with
nothing to cancel, so the convolutions and linear layers, where the FLOPs are, can run in bf16
(``linear_dtype``) and keep a relative error of about 1e-3 *of the difference*. The nonlinearities are
piecewise linear, elementwise or routing, and exact in float32, activation-pattern changes included:

- ReLU forward: relu(z + dz) - relu(z) by cases (dz where both are positive, no subtraction);
  backward: m' * du + (m' - m) * u, m and m' the clean and shifted masks, u the clean signal.
- ReLU6 and Hardtanh (clamp to [lo, hi], two kinks) the same way: forward clamp(dz + e, lo - c, hi - c)
  with c = clamp(z) and e = z - c (dz where both are inside, no subtraction; exact near a kink);
  backward as ReLU's, with the masks lo < z < hi of the clean and the shifted input.
- max pooling: routed by the shifted and the clean argmax; where they agree, the difference itself.
- the loss: softmax(l + dl) - softmax(l) = p * expm1(dl - s) with s, the change of the log-sum-exp,
  taken relative to the most probable class (:func:`softmax_difference`): no cancellation.

The clean backward signal starts from the loss gradient with the label's entry written as minus the
sum of the others (:func:`loss_gradient`), so a confident sample keeps its digits there too.

The result is the same finite difference (not the Hessian-vector product), to rounding, in eval mode.
Models are read with torch.fx (:func:`memorization_curvature.curvature.fold_batchnorm` already traces
them). :func:`build` reads every argument and setting of every node, and returns None with the node and
the reason where it meets one it does not propagate exactly, so that the caller falls back to the float32
finite difference: an operation not listed in :data:`SUPPORTED` (smooth activations such as SiLU and GELU
among them: their difference would be a subtraction again), a parameter or buffer read in the graph
(get_attr), ``torch.add`` with ``alpha`` or ``out``, a convolution padded other than with zeros or with
"same"/"valid", BatchNorm without affine parameters or running statistics, a max pooling that returns
indices, an output that is not one tensor, and an in-place activation (``inplace=True``) whose input is
read by anything else (in place, it would overwrite a value that is still read; where nothing else reads
it, the activation is propagated as if not in place, which is then the same function).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

# How each kind of node is propagated: "affine" (convolution, linear, BatchNorm: a linear map plus a
# bias, the FLOP-heavy part, run in linear_dtype), "linear" (cheap linear maps of one tensor without a
# bias, run in float32 by the operation itself), "relu", "hardtanh" (clamp to [lo, hi]: ReLU6, Hardtanh),
# "maxpool", "add", "cat".
_MODULES: dict[type, str] = {
    nn.Conv2d: "affine", nn.Linear: "affine", nn.BatchNorm2d: "affine", nn.ReLU: "relu", nn.ReLU6: "hardtanh",
    nn.Hardtanh: "hardtanh", nn.MaxPool2d: "maxpool", nn.AdaptiveAvgPool2d: "linear", nn.AvgPool2d: "linear",
    nn.Flatten: "linear", nn.Identity: "linear", nn.Dropout: "linear",
}
_FUNCTIONS: dict[object, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "hardtanh", F.hardtanh: "hardtanh", operator.add: "add",
    torch.add: "add", torch.cat: "cat", torch.concat: "cat", torch.flatten: "linear",
    F.adaptive_avg_pool2d: "linear", F.avg_pool2d: "linear",
    torch.flip: "linear",  # a permutation of the input (the privacy audit's mirrored query): exact in bf16
}
_METHODS = {"flatten": "linear", "view": "linear", "reshape": "linear", "relu": "relu"}
SUPPORTED = sorted({t.__name__ for t in _MODULES} | {getattr(f, "__name__", str(f)) for f in _FUNCTIONS}
                   | {f"Tensor.{m}" for m in _METHODS})

# The parameters, in order, of the functions and methods whose arguments are read here (the "linear" ones
# are run as they are, on the difference: every argument is theirs to read).
_PARAMETERS: dict[object, tuple[str, ...]] = {
    F.relu: ("input", "inplace"), torch.relu: ("input",), "relu": ("input",), F.relu6: ("input", "inplace"),
    F.hardtanh: ("input", "min_val", "max_val", "inplace"), operator.add: ("input", "other"),
    torch.add: ("input", "other", "alpha", "out"), torch.cat: ("tensors", "dim", "out"),
    torch.concat: ("tensors", "dim", "out"),
}
# Modules whose eval-mode function is what is propagated (BatchNorm: running statistics; Dropout: none).
_EVAL_ONLY = (nn.BatchNorm2d, nn.Dropout)


@dataclass
class _Step:
    node: fx.Node
    kind: str
    run: Callable  # the node's operation on its input values (the clean pass)
    inputs: list[fx.Node]
    params: dict = field(default_factory=dict)  # what the propagation reads of the node's arguments


def _kind(graph_module: fx.GraphModule, node: fx.Node) -> tuple[str | None, str]:
    if node.op == "call_module":
        module = graph_module.get_submodule(node.target)
        return _MODULES.get(type(module)), type(module).__name__
    if node.op == "call_function":
        return _FUNCTIONS.get(node.target), getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return _METHODS.get(node.target), f"Tensor.{node.target}"
    if node.op in ("placeholder", "output"):
        return node.op, node.op
    return None, node.op


class DifferencePropagation:
    """g(x + dx) - g(x) for one traced model: :meth:`clean` once per batch, then
    :meth:`gradient_difference` for each probe's dx. The gradient is that of each sample's own
    cross-entropy loss with respect to its input (eval mode, as scoring runs)."""

    def __init__(self, graph_module: fx.GraphModule, steps: list[_Step], linear_dtype: torch.dtype):
        self.graph_module = graph_module
        self.steps = steps
        self.linear_dtype = linear_dtype
        self._weights: dict[nn.Module, torch.Tensor] = {}
        self.input = next(s.node for s in steps if s.kind == "placeholder")
        self.output = next(s for s in steps if s.kind == "output").inputs[0]
        self._eval_only = [(s.node.name, m) for s in steps if s.node.op == "call_module"
                           and isinstance(m := graph_module.get_submodule(s.node.target), _EVAL_ONLY)]

    # -- the clean pass: values of every node, and the clean backward signal at each nonlinearity --

    def clean(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        training = [name for name, module in self._eval_only if module.training]
        if training:
            raise ValueError(f"difference propagation is for eval mode; {', '.join(training)} in training mode")
        values: dict[fx.Node, object] = {}
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            for step in self.steps:
                if step.kind == "placeholder":
                    values[step.node] = x
                elif step.kind in ("relu", "hardtanh"):  # never in place: the clean input is kept
                    values[step.node] = step.run(values[step.inputs[0]])
                elif step.kind != "output":
                    values[step.node] = step.run(*(_value(values, a) for a in step.node.args),
                                                 **{k: _value(values, v) for k, v in step.node.kwargs.items()})
            logits = values[self.output]
            # the loss in float64 (N x K numbers), and every backward signal scaled per sample so that its
            # largest logit entry is 1: a confident sample's signals do not underflow in float32 or bf16
            probs = torch.softmax(logits.detach().double(), 1)
            gradient = loss_gradient(probs, y)
            scale = 1.0 / gradient.abs().amax(1, keepdim=True).clamp_min(1e-300)
            nonlinear = [s.node for s in self.steps if s.kind in ("relu", "hardtanh", "maxpool")]
            upstream = torch.autograd.grad(logits, [values[n] for n in nonlinear], (gradient * scale).to(logits.dtype),
                                           allow_unused=True) if nonlinear else ()
        state = {"values": {n: v.detach() if isinstance(v, torch.Tensor) else v for n, v in values.items()},
                 "upstream": {n: (torch.zeros_like(values[n]) if u is None else u.detach())
                              for n, u in zip(nonlinear, upstream)},
                 "probs": probs, "scale": scale[:, 0]}
        self._weights = {module: self._low(module.weight) for step in self.steps if step.kind == "affine"
                         and isinstance(module := self.graph_module.get_submodule(step.node.target), (nn.Conv2d, nn.Linear))}
        for step in self.steps:  # the clean argmax of every max pooling
            if step.kind == "maxpool":
                module = self.graph_module.get_submodule(step.node.target)
                state.setdefault("indices", {})[step.node] = _pool(module, state["values"][step.inputs[0]])[1]
        return state

    def repeat(self, state: dict, times: int) -> dict:
        """The clean state of each sample repeated ``times`` times (sample-major), for stacked probes."""
        def rep(v):
            return v.repeat_interleave(times, 0) if isinstance(v, torch.Tensor) else v

        return {key: ({n: rep(v) for n, v in value.items()} if isinstance(value, dict) else rep(value))
                for key, value in state.items()}

    # -- the difference passes --

    def gradient_difference(self, state: dict, dx: torch.Tensor) -> torch.Tensor:
        """g(x + dx) - g(x), float64, shaped like dx."""
        scaled = self.scaled_difference(state, dx)
        return scaled.double() / state["scale"].view(-1, *[1] * (dx.dim() - 1))

    def squared_norms(self, state: dict, dx: torch.Tensor) -> torch.Tensor:
        """||g(x + dx) - g(x)||^2 of each sample, float64 (N,): what the curvature score sums."""
        return self.scaled_difference(state, dx).flatten(1).double().pow(2).sum(1) / state["scale"] ** 2

    def scaled_difference(self, state: dict, dx: torch.Tensor) -> torch.Tensor:
        """The gradient difference times the state's per-sample scale, in dx's dtype."""
        values, diffs = state["values"], {self.input: dx}
        routes: dict[fx.Node, torch.Tensor] = {}  # each max pooling's argmax at x + dx, found going forward
        for step in self.steps:
            if step.kind in ("placeholder", "output"):
                continue
            diffs[step.node] = self._forward(step, values, diffs, state, routes)
        loss = softmax_difference(state["probs"], diffs[self.output].double()) * state["scale"][:, None]
        grads = {self.output: loss.to(dx.dtype)}
        for step in reversed(self.steps):
            if step.kind in ("placeholder", "output") or step.node not in grads:
                continue
            for node, grad in self._backward(step, values, diffs, grads.pop(step.node), state, routes):
                grads[node] = grads[node] + grad if node in grads else grad
        return grads.get(self.input, torch.zeros_like(dx))

    def _low(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.linear_dtype)

    def _weight(self, module: nn.Module) -> torch.Tensor:
        """The module's weight in linear_dtype, converted once per batch (in :meth:`clean`), not per probe."""
        return self._weights[module] if module in self._weights else self._low(module.weight)

    def _forward(self, step: _Step, values, diffs, state, routes) -> torch.Tensor:
        node, kind = step.node, step.kind
        if kind == "affine":
            module = self.graph_module.get_submodule(node.target)
            d = diffs[step.inputs[0]]
            if isinstance(module, nn.Conv2d):
                out = F.conv2d(self._low(d), self._weight(module), None, module.stride, module.padding,
                               module.dilation, module.groups)
            elif isinstance(module, nn.Linear):
                out = F.linear(self._low(d), self._weight(module))
            else:  # BatchNorm in eval mode (not folded): a per-channel scale; elementwise, in float32
                return d * _bn_scale(module).view(1, -1, *([1] * (d.dim() - 2)))
            return out.to(d.dtype)
        if kind == "linear":
            return step.run(*(_value(diffs, a) for a in node.args), **{k: _value(diffs, v) for k, v in node.kwargs.items()})
        if kind == "add":  # a constant operand has no difference
            a, b = (diffs[t] if isinstance(t, fx.Node) else 0 for t in step.params["operands"])
            return a + b
        if kind == "cat":
            return torch.cat([diffs[t] for t in step.params["tensors"]], step.params["dim"])
        if kind == "relu":
            z, dz = values[step.inputs[0]], diffs[step.inputs[0]]
            shifted = z + dz
            return torch.where(z > 0, torch.where(shifted > 0, dz, -z), torch.where(shifted > 0, shifted, 0.0))
        if kind == "hardtanh":
            # clamp(z + dz) - clamp(z) = clamp(dz + e, lo - c, hi - c), c = clamp(z), e = z - c: dz itself where
            # both are inside; near a kink, e and the bounds are exact differences (Sterbenz), so no cancellation
            lo, hi = step.params["bounds"]
            z, dz = values[step.inputs[0]], diffs[step.inputs[0]]
            c = z.clamp(lo, hi)
            return torch.minimum(torch.maximum(dz + (z - c), lo - c), hi - c)
        if kind == "maxpool":
            module = self.graph_module.get_submodule(node.target)
            a, da = values[step.inputs[0]], diffs[step.inputs[0]]
            pooled, new = _pool(module, a + da)
            routes[node] = new
            old = state["indices"][node]
            same = new == old
            flat = da.flatten(2).gather(2, old.flatten(2)).view_as(pooled)
            return torch.where(same, flat, pooled - values[node])
        raise AssertionError(kind)

    def _backward(self, step: _Step, values, diffs, grad: torch.Tensor, state, routes):
        """Pairs (input node, its share of the gradient difference)."""
        node, kind = step.node, step.kind
        if kind == "affine":
            module = self.graph_module.get_submodule(node.target)
            source = values[step.inputs[0]]
            if isinstance(module, nn.Conv2d):
                out = torch.nn.grad.conv2d_input(source.shape, self._weight(module), self._low(grad), module.stride,
                                                 module.padding, module.dilation, module.groups)
            elif isinstance(module, nn.Linear):
                out = self._low(grad) @ self._weight(module)
            else:
                return [(step.inputs[0], grad * _bn_scale(module).view(1, -1, *([1] * (grad.dim() - 2))))]
            return [(step.inputs[0], out.to(grad.dtype))]
        if kind == "linear":  # cheap linear maps: their transpose by autograd, at the clean input
            (source,) = step.inputs
            def at(t):
                return step.run(*(_value(values, a, source, t) for a in node.args),
                                **{k: _value(values, v, source, t) for k, v in node.kwargs.items()})

            _, transpose = torch.func.vjp(at, values[source])
            return [(source, transpose(grad)[0])]
        if kind == "add":  # an operand broadcast in the addition gets the sum over the broadcast dimensions
            return [(t, _unbroadcast(grad, values[t].shape)) for t in step.params["operands"] if isinstance(t, fx.Node)]
        if kind == "cat":
            tensors, dim = step.params["tensors"], step.params["dim"]
            return list(zip(tensors, grad.split([values[t].shape[dim] for t in tensors], dim)))
        if kind in ("relu", "hardtanh"):  # m' * du + (m' - m) * u
            source = step.inputs[0]
            z, dz, u = values[source], diffs[source], state["upstream"][node]
            if kind == "relu":
                old, new = z > 0, (z + dz) > 0
            else:
                lo, hi = step.params["bounds"]
                shifted = z + dz
                old, new = (z > lo) & (z < hi), (shifted > lo) & (shifted < hi)
            return [(source, torch.where(new, grad, 0.0) + torch.where(new == old, 0.0, torch.where(new, u, -u)))]
        if kind == "maxpool":
            source = step.inputs[0]
            a, u = values[source], state["upstream"][node]
            new, old = routes[node], state["indices"][node]
            same = new == old
            # unpool(u + du, new) - unpool(u, old): where the argmax stays, du alone
            out = torch.zeros_like(a).flatten(2)
            out.scatter_add_(2, new.flatten(2), torch.where(same, grad, u + grad).flatten(2))
            out.scatter_add_(2, old.flatten(2), torch.where(same, 0.0, -u).flatten(2))
            return [(source, out.view_as(a))]
        raise AssertionError(kind)


def loss_gradient(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of each sample's cross-entropy with respect to its logits, softmax - onehot, with the
    label's entry as -(sum of the other probabilities): for a confident sample softmax - 1 keeps few
    correct digits (none once the loss is below the precision), the sum keeps them all."""
    others = probs.scatter(1, y[:, None], 0.0)
    return others.scatter(1, y[:, None], -others.sum(1, keepdim=True))


def softmax_difference(probs: torch.Tensor, dl: torch.Tensor) -> torch.Tensor:
    """softmax(l + dl) - softmax(l) from p = softmax(l) (N, K) and dl, without subtracting two
    probabilities: p_k * expm1(dl_k - s), s = log sum_k p_k exp(dl_k), with s taken relative to each
    sample's most probable class r, s - dl_r = log1p(sum_{k != r} p_k expm1(dl_k - dl_r)), so that a
    confident sample (p_r near 1) keeps its tiny difference instead of rounding noise."""
    top = probs.argmax(1, keepdim=True)
    relative = dl - dl.gather(1, top)  # dl_k - dl_r; 0 at r
    others = probs.scatter(1, top, 0.0)
    shift = torch.log1p((others * torch.expm1(relative)).sum(1, keepdim=True))  # s - dl_r
    return probs * torch.expm1(relative - shift)


def _value(values: dict, arg, node: fx.Node | None = None, replacement=None):
    """``arg`` with each node in it replaced by its value (``node`` by ``replacement``)."""
    if isinstance(arg, fx.Node):
        return replacement if node is not None and arg is node else values[arg]
    if isinstance(arg, (tuple, list)):
        return type(arg)(_value(values, a, node, replacement) for a in arg)
    return arg


def _unbroadcast(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The transpose of broadcasting a tensor of ``shape`` to grad's shape: sums over the broadcast dimensions."""
    if grad.dim() > len(shape):  # (an empty list of dimensions would sum over all of them)
        grad = grad.sum(list(range(grad.dim() - len(shape))))
    ones = [i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1]
    return grad.sum(ones, keepdim=True) if ones else grad


def _bn_scale(module: nn.BatchNorm2d) -> torch.Tensor:
    return module.weight / torch.sqrt(module.running_var + module.eps)


def _pool(module: nn.MaxPool2d, t: torch.Tensor):
    return F.max_pool2d(t, module.kernel_size, module.stride, module.padding, module.dilation,
                        ceil_mode=module.ceil_mode, return_indices=True)


def build(graph_module: nn.Module, linear_dtype: torch.dtype = torch.bfloat16) -> tuple[DifferencePropagation | None, str]:
    """The propagation for a model (a torch.fx GraphModule, or a module fx can trace), or (None, why): why
    names the first node it cannot propagate exactly and what of it is not supported."""
    if not isinstance(graph_module, fx.GraphModule):
        try:
            graph_module = fx.symbolic_trace(graph_module)
        except Exception as error:  # noqa: BLE001 - any tracing failure: not propagated
            return None, f"torch.fx cannot trace it ({type(error).__name__}: {error})"
    steps: dict[fx.Node, _Step] = {}
    for node in graph_module.graph.nodes:
        kind, name = _kind(graph_module, node)
        if node.op == "get_attr":
            return None, f"{node.name} reads {node.target} in the graph (get_attr), not through a module"
        if kind is None:
            return None, f"its operation {name} ({node.name}) is not one of {', '.join(SUPPORTED)}"
        params = _read(graph_module, node, kind)
        if isinstance(params, str):
            return None, f"{node.name} ({name}): {params}"
        inputs = list(node.all_input_nodes)
        if kind in ("affine", "relu", "hardtanh", "maxpool", "linear") and len(inputs) != 1:
            return None, f"{node.name} ({name}) takes {len(inputs)} tensors; expected one"
        if params.get("inplace") and not _overwrites_nothing_read(inputs[0], steps):
            return None, (f"{node.name} ({name}) works in place (inplace=True) on {inputs[0].name}, which is read "
                          "elsewhere or is (a view of) a tensor read elsewhere or the input")
        if kind == "relu":
            run = F.relu
        elif kind == "hardtanh":
            run = functools.partial(F.hardtanh, min_val=params["bounds"][0], max_val=params["bounds"][1])
        elif node.op == "call_module":
            run = graph_module.get_submodule(node.target)
        elif node.op == "call_method":
            run = (lambda method: lambda t, *args, **kwargs: getattr(t, method)(*args, **kwargs))(node.target)
        else:
            run = node.target
        steps[node] = _Step(node, kind, run, inputs, params)
    if sum(s.kind == "placeholder" for s in steps.values()) != 1:
        return None, "it does not take exactly one input"
    return DifferencePropagation(graph_module, list(steps.values()), linear_dtype), ""


def _read(graph_module: fx.GraphModule, node: fx.Node, kind: str) -> dict | str:
    """What the propagation reads of a node's arguments and settings, or what of them it cannot propagate
    exactly. Every argument and setting is either read here or is the operation's own ("linear" nodes, run
    as they are on the difference; the pooling and flattening modules)."""
    if kind == "placeholder":
        return {}
    if kind == "output":
        return {} if len(node.args) == 1 and isinstance(node.args[0], fx.Node) else "the output is not one tensor"
    if node.op == "call_module":
        module = graph_module.get_submodule(node.target)
        if len(node.args) != 1 or not isinstance(node.args[0], fx.Node) or node.kwargs:
            return "called with other than one tensor"
        if isinstance(module, nn.Conv2d):
            if isinstance(module.padding, str):
                return f"padding={module.padding!r} is not supported (numbers only)"
            if module.padding_mode != "zeros":
                return f"padding_mode={module.padding_mode!r} is not supported (zeros only)"
        if isinstance(module, nn.BatchNorm2d):
            if not module.affine:
                return "BatchNorm without affine parameters (affine=False) is not supported"
            if module.running_var is None:
                return "BatchNorm without running statistics (track_running_stats=False) is not supported"
        if isinstance(module, nn.MaxPool2d) and module.return_indices:
            return "max pooling that returns indices (return_indices=True) is not supported"
        if kind == "relu":
            return {"inplace": module.inplace}
        if kind == "hardtanh":
            return _bounds(module.min_val, module.max_val) or {"bounds": (module.min_val, module.max_val),
                                                               "inplace": module.inplace}
        return {}
    if kind == "linear":
        return {}
    names = _PARAMETERS[node.target]
    arguments = dict(zip(names, node.args))
    if len(node.args) > len(names) or any(k not in names or k in arguments for k in node.kwargs):
        return f"arguments {node.args} {node.kwargs} not understood (parameters: {', '.join(names)})"
    arguments.update(node.kwargs)
    if arguments.get("out") is not None:
        return "out= is not supported"
    if kind in ("relu", "hardtanh"):
        inplace = arguments.get("inplace", False)
        if not isinstance(arguments.get("input"), fx.Node) or inplace not in (True, False):
            return f"arguments {node.args} {node.kwargs} not understood"
        if kind == "relu":
            return {"inplace": inplace}
        if node.target is F.relu6:
            lo, hi = 0.0, 6.0
        else:
            lo, hi = arguments.get("min_val", -1.0), arguments.get("max_val", 1.0)
        return _bounds(lo, hi) or {"bounds": (lo, hi), "inplace": inplace}
    if kind == "add":
        if arguments.get("alpha", 1) != 1:
            return f"alpha={arguments['alpha']!r} is not supported (1 only)"
        operands = (arguments.get("input"), arguments.get("other"))
        if not any(isinstance(t, fx.Node) for t in operands) or not all(
                isinstance(t, (fx.Node, int, float)) for t in operands):
            return f"operands {operands} not understood (tensors and numbers only)"
        return {"operands": operands}
    if kind == "cat":
        tensors, dim = arguments.get("tensors"), arguments.get("dim", 0)
        if not isinstance(tensors, (tuple, list)) or not tensors or not all(isinstance(t, fx.Node) for t in tensors):
            return f"tensors {tensors} not understood (a sequence of tensors only)"
        if not isinstance(dim, int):
            return f"dim={dim!r} is not supported (an integer only)"
        return {"tensors": list(tensors), "dim": dim}
    raise AssertionError(kind)


def _bounds(lo, hi) -> str | None:
    """Why (lo, hi) are not the bounds of a clamp, or None."""
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (lo, hi)) or lo > hi:
        return f"bounds ({lo!r}, {hi!r}) not understood"
    return None


def _overwrites_nothing_read(node: fx.Node, steps: dict[fx.Node, _Step]) -> bool:
    """Whether an operation in place on ``node``'s value overwrites nothing that anything else reads: that
    value is read by that operation alone, and so is each value it may be a view of (through any "linear"
    node, reshaping, flattening, identity and dropout among them, and other operations in place), up to one
    that is a new tensor (not the model's input). Then the operation done out of place is the same function."""
    while len(node.users) == 1 and node.op != "placeholder":
        step = steps[node]
        if not (step.kind == "linear" or step.params.get("inplace")):  # a new tensor
            return True
        node = step.inputs[0]
    return False
