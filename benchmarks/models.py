"""The contenders, built on identical networks, initial weights, data, batch size and optimizer.

- jaxbp: `train_step` (hand-written backward), as a Python loop or a whole-epoch `lax.scan`.
- autodiff: the identical step with `jax.grad` of the identical cost (the rival to beat; only
  benchmarks and tests may use autodiff).
- numpy: the same column-major equations in plain NumPy.
- torch: `nn.Sequential` with the same weights, eager or `torch.compile`d.
- sklearn: `MLPClassifier` with the same architecture, batch size and optimizer.
- scipy_lbfgs: jaxbp's compiled J and ∇J driven by SciPy's L-BFGS-B from the host, as
  scikit-learn drives its own: the alternative to `jaxbp.lbfgs`'s on-device loop.
"""

import contextlib
import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from benchmarks.harness import Prepared, compile_timed
from jaxbp.backprop import forward
from jaxbp.losses import cost, example_scale
from jaxbp.step import train_step_jit

NETS = {
    # name: (sizes, hidden, output)
    "seed": ((3, 4, 2, 1), "relu", "sigmoid"),  # seed 000's 3-4-2-1 network
    "small": ((30, 64, 32, 1), "relu", "sigmoid"),  # ≈ 4.1k parameters
    "medium": ((784, 256, 256, 10), "relu", "softmax"),  # ≈ 270k parameters
    "wide": ((784, 2048, 2048, 10), "relu", "softmax"),  # ≈ 5.8M parameters
}


def make_net(name, matmul_dtype=None):
    sizes, hidden, output = NETS[name]
    return jaxbp.MLP(sizes, hidden=hidden, output=output, matmul_dtype=matmul_dtype)


def weight_counts(net):
    """(P, P_1): weights of all layers and of the first layer (biases excluded)."""
    P = sum(a * b for a, b in zip(net.sizes[:-1], net.sizes[1:], strict=True))
    return P, net.sizes[0] * net.sizes[1]


def step_flops(net, m):
    """Exact matmul FLOPs of one training step: forward 2Pm, dW 2Pm, Δ 2Pm − 2P₁m (no Δ^0)."""
    P, P1 = weight_counts(net)
    return 6 * P * m - 2 * P1 * m


def data(net, M, seed=0, dtype=np.float32):
    """Row-major X (M, n_0) ~ N(0, 1) and labels from a random linear teacher; also returned
    column-major (n_0, M) with one-hot / {0, 1} targets (n_L, M), as jaxbp takes them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(M, net.sizes[0])).astype(dtype)
    n_L = net.sizes[-1]
    teacher = rng.normal(size=(net.sizes[0], max(n_L, 2)))
    labels = np.argmax(X @ teacher, axis=1)
    Y = (labels[None, :].astype(dtype) if n_L == 1 else np.eye(n_L, dtype=dtype)[:, labels])
    return X, labels, np.ascontiguousarray(X.T), Y


def init_params(net, seed=0, dtype="float32"):
    return jaxbp.init(net, jax.random.key(seed), scheme="torch", dtype=dtype)


def copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)


def jax_runs_on():
    """Where a jaxbp contender runs: JAX's backend, and its device kind if that says more."""
    backend, kind = jax.default_backend(), jax.devices()[0].device_kind
    return backend if kind == backend else f"{backend}: {kind}"


CPU_ONLY = "cpu"  # NumPy and scikit-learn


# --- jaxbp and its autodiff twin -------------------------------------------------------------
def _cost_of(params, net, X, Y):
    A_L, cache = forward(net, params, X)
    return cost(net.output, net.loss, cache.Z[net.L], A_L, Y, example_scale(X.shape[1]))


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def autodiff_step(net, opt, params, state, X, Y):
    """The same step as `train_step_jit`, with the gradients from `jax.grad` of the same cost."""
    J, grads = jax.value_and_grad(_cost_of)(params, net, X, Y)
    params, state = opt.update(grads, state, params)
    return params, state, J


# The network as a JAX user writes it: jax.nn's activations and its log-sum-exp losses,
# `value_and_grad`, the same optimizer, jit and donation. (`autodiff_step` differentiates
# jaxbp's own building blocks instead: relu as jnp.maximum, softplus and log-softmax by hand.)
_JAX_NN = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
           "identity": lambda Z: Z, "softplus": jax.nn.softplus, "gelu": jax.nn.gelu,
           "leaky_relu": jax.nn.leaky_relu}


def _idiomatic_cost(params, net, X, Y):
    """Mean cost over the m columns of X (n_0, m), targets Y (n_L, m): softmax cross-entropy
    by jax.nn.log_softmax, sigmoid BCE by softplus(z) − y z, squared error ½‖z − y‖²."""
    from jaxbp.backends import matmul  # the net's matmul policy (precision, bfloat16)

    A = X
    for l, (W, b) in enumerate(params, start=1):
        Z = matmul(net, W, A) + b
        A = _JAX_NN[net.hidden](Z) if l < net.L else Z
    if net.output == "softmax":
        per_example = -jnp.sum(Y * jax.nn.log_softmax(Z, axis=0), axis=0)
    elif net.output == "sigmoid":
        per_example = jnp.sum(jax.nn.softplus(Z) - Y * Z, axis=0)
    else:
        per_example = 0.5 * jnp.sum((Z - Y) ** 2, axis=0)
    return jnp.mean(per_example)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def idiomatic_autodiff_step(net, opt, params, state, X, Y):
    """The same step written as a JAX user would: `jax.value_and_grad` of `_idiomatic_cost`."""
    J, grads = jax.value_and_grad(_idiomatic_cost)(params, net, X, Y)
    params, state = opt.update(grads, state, params)
    return params, state, J


# jaxbp's step traced without its CPU workarounds (backends.plain): JAX caches traces by the
# function, so this one is a function of its own.
def _plain_step(net, opt, params, state, X, Y):
    return jaxbp.step.step(net, opt, params, state, X, Y)


plain_step = jax.jit(_plain_step, static_argnums=(0, 1), donate_argnums=(2, 3))
STEPS = {"jaxbp": train_step_jit, "jaxbp, workarounds off": plain_step,
         "autodiff": autodiff_step, "jax.nn autodiff": idiomatic_autodiff_step}


def prepare_step(kind, net, opt, params, X, Y, units=None):
    """One jitted step (kind "jaxbp" or "autodiff") compiled ahead of time, carrying its own
    params and state from call to call (they are donated). The batch is put on the device once,
    here: a NumPy batch would be copied in on every call (~1–2 ms for 784 × 4096 floats on
    the CPU backend), which is not part of the step."""
    X, Y = jax.device_put(X), jax.device_put(Y)
    params = copy_tree(params)
    state = opt.init(params)
    with jaxbp.backends.plain() if kind == "jaxbp, workarounds off" else contextlib.nullcontext():
        compiled, compile_s = compile_timed(STEPS[kind], net, opt, params, state, X, Y)
    carry = {"p": params, "s": state}

    def once():
        carry["p"], carry["s"], J = compiled(carry["p"], carry["s"], X, Y)
        return J

    return Prepared(once, compile_s, units=X.shape[1] if units is None else units,
                    info={"compiled": compiled})


def batches(X, Y, b):
    """Column-major data (n, M) -> stacks (M // b, n, b) of consecutive batches."""
    nb = X.shape[1] // b
    split = lambda A: jnp.asarray(A[:, : nb * b]).reshape(A.shape[0], nb, b).transpose(1, 0, 2)  # noqa: E731
    return split(X), split(Y)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def epoch_scan(net, opt, params, state, Xb, Yb):
    """One epoch of mini-batch steps as a single `lax.scan` over the batches."""
    def body(carry, xy):
        params, state, J = train_step_jit(net, opt, *carry, *xy)
        return (params, state), J

    (params, state), costs = jax.lax.scan(body, (params, state), (Xb, Yb))
    return params, state, costs


def prepare_epoch(kind, net, opt, params, X, Y, b):
    """A whole epoch of jaxbp mini-batch steps: kind "scan" (one call) or "loop" (Python)."""
    Xb, Yb = batches(X, Y, b)
    params = copy_tree(params)
    state = opt.init(params)
    carry = {"p": params, "s": state}
    if kind == "scan":
        compiled, compile_s = compile_timed(epoch_scan, net, opt, params, state, Xb, Yb)

        def once():
            carry["p"], carry["s"], costs = compiled(carry["p"], carry["s"], Xb, Yb)
            return costs
    else:
        compiled, compile_s = compile_timed(train_step_jit, net, opt, params, state, Xb[0], Yb[0])
        pairs = [(Xb[i], Yb[i]) for i in range(Xb.shape[0])]

        def once():
            J = None
            for x, y in pairs:
                carry["p"], carry["s"], J = compiled(carry["p"], carry["s"], x, y)
            return J

    return Prepared(once, compile_s, units=Xb.shape[0] * b, info={"runs_on": jax_runs_on()})


# --- plain NumPy, the same equations -----------------------------------------------------------
class NumpyMLP:
    """The column-major batch equations and Adam in NumPy (relu hidden; sigmoid or softmax)."""

    def __init__(self, net, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.net = net
        self.params = [(np.array(W), np.array(b)) for W, b in params]
        self.m = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]
        self.v = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]
        self.t, self.lr, self.b1, self.b2, self.eps = 0, lr, b1, b2, eps

    def step(self, X, Y):
        L, m = self.net.L, X.shape[1]
        A, Z = [X], [None]
        for l, (W, b) in enumerate(self.params, start=1):
            Z.append(W @ A[-1] + b)
            if l < L:
                A.append(np.maximum(Z[-1], 0))
            elif self.net.output == "sigmoid":
                A.append(1 / (1 + np.exp(-Z[-1])))
            else:
                E = np.exp(Z[-1] - Z[-1].max(axis=0, keepdims=True))
                A.append(E / E.sum(axis=0, keepdims=True))
        delta = (A[L] - Y) / m
        grads = [None] * L
        for l in range(L, 0, -1):
            W = self.params[l - 1][0]
            grads[l - 1] = (delta @ A[l - 1].T, delta.sum(axis=1, keepdims=True))
            if l > 1:
                delta = (W.T @ delta) * (Z[l - 1] > 0)
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for l in range(L):
            for i in range(2):
                g, m_, v_ = grads[l][i], self.m[l][i], self.v[l][i]
                m_ += (1 - self.b1) * (g - m_)
                v_ *= self.b2
                v_ += (1 - self.b2) * g * g
                self.params[l][i][...] -= (self.lr / c1) * m_ / (np.sqrt(v_ / c2) + self.eps)

    def epoch(self, X, Y, b):
        for i in range(X.shape[1] // b):
            self.step(X[:, i * b : (i + 1) * b], Y[:, i * b : (i + 1) * b])


def prepare_numpy(net, params, X, Y, b, lr):
    model = NumpyMLP(net, params, lr=lr)
    return Prepared(lambda: model.epoch(X, Y, b), 0.0, units=(X.shape[1] // b) * b,
                    info={"runs_on": CPU_ONLY})


# --- PyTorch -----------------------------------------------------------------------------------
def torch_model(net, params):
    import torch

    layers = []
    for l, (W, b) in enumerate(params, start=1):
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(W)))
            lin.bias.copy_(torch.from_numpy(np.array(b)[:, 0]))
        layers.append(lin)
        if l < net.L:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_device():
    """torch follows JAX: CUDA when JAX runs on a GPU and torch sees one, else the CPU (so a
    CPU-only JAX is never compared against a GPU torch, nor the other way round)."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


# torch.optim.Adam's implementations: its CPU default is the per-tensor Python loop (neither
# foreach nor fused); "foreach" batches the tensors, "fused" runs one kernel for all of them.
TORCH_ADAMS = {"for-loop": dict(foreach=False, fused=False), "foreach": dict(foreach=True),
               "fused": dict(fused=True)}


def prepare_torch(net, params, X_rows, labels, b, lr, compile_mode=None, adam="fused",
                  threads=None):
    """An epoch of torch mini-batch Adam steps on row-major data, eager or torch.compile'd
    (the whole step: forward, backward and the optimizer), on `torch_device()`, with Adam's
    `adam` implementation (`TORCH_ADAMS`), on `threads` CPU threads (default: every core, as
    XLA uses them; set again at each timed call, since torch's setting is per process); on
    CUDA the clock stops after `torch.cuda.synchronize()`."""
    import torch

    device = torch_device()
    threads = len(os.sched_getaffinity(0)) if threads is None else threads
    torch.set_num_threads(threads)
    model = torch_model(net, params).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, **TORCH_ADAMS[adam])
    X = torch.from_numpy(X_rows).to(device)
    if net.output == "sigmoid":
        y = torch.from_numpy(labels.astype(np.float32))[:, None].to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        y = torch.from_numpy(labels.astype(np.int64)).to(device)
        loss_fn = torch.nn.CrossEntropyLoss()
    nb = X.shape[0] // b
    xs = [X[i * b : (i + 1) * b] for i in range(nb)]
    ys = [y[i * b : (i + 1) * b] for i in range(nb)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    compile_s = 0.0
    if compile_mode is not None:
        step = torch.compile(step, mode=compile_mode)
        t0 = time.perf_counter()
        step(xs[0], ys[0])  # the compile happens on the first call (one step of work included)
        step(xs[1 % nb], ys[1 % nb])
        sync()
        compile_s = time.perf_counter() - t0

    def once():
        torch.set_num_threads(threads)
        loss = None
        for x, t in zip(xs, ys, strict=True):
            loss = step(x, t)
        sync()
        return loss.item()

    where = (f"cuda: {torch.cuda.get_device_name()}" if device == "cuda"
             else f"cpu ({threads} thread{'s' if threads > 1 else ''})")
    # "highest" (torch's default): float32 matmuls in true float32, as jaxbp's default.
    info = {"runs_on": where, "torch_float32_matmul": torch.get_float32_matmul_precision(),
            "torch_adam": adam, "torch_compile_mode": compile_mode}
    return Prepared(once, compile_s, units=nb * b, info=info)


# --- scikit-learn ------------------------------------------------------------------------------
def prepare_sklearn(net, X_rows, labels, b, lr, epochs=3):
    """Wall time of `MLPClassifier.fit` divided by its epochs (same architecture, batch, Adam)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def once():
        clf = MLPClassifier(hidden_layer_sizes=net.sizes[1:-1], activation="relu", solver="adam",
                            alpha=0.0, batch_size=b, learning_rate_init=lr, max_iter=epochs,
                            shuffle=False, tol=0.0, n_iter_no_change=10**9, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_rows[: (len(X_rows) // b) * b], labels[: (len(X_rows) // b) * b])
        return clf.n_iter_

    return Prepared(once, 0.0, units=epochs * (len(X_rows) // b) * b, info={"runs_on": CPU_ONLY})


def log2_range(lo, hi):
    return [2**k for k in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]


def scipy_lbfgs(net, params, X, Y, w, alpha, *, max_iter, max_fun=15000, tol=1e-4):
    """L-BFGS as scikit-learn runs it, on jaxbp's objective: `scipy.optimize.minimize(...,
    method="L-BFGS-B", jac=True)` with maxiter, maxfun, gtol, calling jaxbp's compiled J and
    ∇J (`jaxbp.lbfgs._value_and_gradient`) once per evaluation: a host round trip each. X
    (n_0, m), Y (n_L, m), w (1, m) device arrays. Returns (params, SciPy's OptimizeResult)."""
    import scipy.optimize

    from jaxbp.backends import flat
    from jaxbp.lbfgs import _unravel, _value_and_gradient

    dtype = params[0][0].dtype
    alpha = jnp.asarray(alpha, dtype)

    def fun(theta):
        J, g = _value_and_gradient(net, jnp.asarray(theta.astype(dtype)), X, Y, w, alpha)
        return float(J), np.asarray(g, np.float64)

    theta0 = np.asarray(flat(params), np.float64)
    res = scipy.optimize.minimize(fun, theta0, method="L-BFGS-B", jac=True,
                                  options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    return _unravel(net, jnp.asarray(res.x, dtype)), res
