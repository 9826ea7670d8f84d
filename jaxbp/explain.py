"""`explain`: print every forward and backward quantity of a small network, as the seeds do.

By default it walks through the worked example of seed 001 (2-3-2-1, relu, relu, sigmoid,
binary cross-entropy, two examples): Z^l and A^l per layer, the cost, Δ^l, dW^l and db^l, and
the parameters after one SGD step. Matrices are column-major, one example per column, as the
engine holds them (the seed's PyTorch prints show their transposes, one example per row).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import validate
from jaxbp.backprop import backward, forward
from jaxbp.model import MLP

WORKED_EXAMPLE = {
    "net": MLP((2, 3, 2, 1), hidden="relu", output="sigmoid"),
    "params": (
        ([[-1.0, 2.0], [3.0, 0.5], [-0.1, -4.0]], [[1.0], [-2.0], [0.3]]),
        ([[0.5, 1.0, -2.0], [0.7, 0.1, 0.3]], [[-4.0], [5.0]]),
        ([[0.5, -0.3]], [[0.1]]),
    ),
    "X": [[1.0, 3.0], [2.0, 4.0]],  # examples (1, 2) and (3, 4), one per column
    "Y": [[0.0, 1.0]],
    "lr": 0.01,
}


def _matrix(name, value, decimals):
    value = np.asarray(value, np.float64)
    with np.printoptions(precision=decimals, suppress=True, floatmode="fixed", linewidth=100):
        body = np.array2string(value, prefix="    ")
    return f"{name}  shape {value.shape}\n    {body}"


def explain(net=None, params=None, X=None, Y=None, lr=None, decimals=4, file=None):
    """Print the forward pass, the cost, the backward pass and one SGD step.

    With no arguments, the worked example of seed 001 (lr 0.01). Returns the printed text.
    """
    ex = WORKED_EXAMPLE
    if net is None:
        net, params, X, Y = ex["net"], ex["params"], ex["X"], ex["Y"]
        lr = ex["lr"] if lr is None else lr
    lr = 0.01 if lr is None else lr
    dtype = jnp.zeros(()).dtype
    params = tuple((jnp.asarray(W, dtype), jnp.asarray(b, dtype)) for W, b in params)
    params = validate.params(net, params)
    X = validate.inputs(net, params, jnp.asarray(X, dtype))
    Y = validate.targets(net, params, jnp.asarray(Y, dtype), m=X.shape[1])
    m, L = X.shape[1], net.L

    _, cache = jax.jit(forward, static_argnums=0)(net, params, X)
    J, grads, deltas = jax.jit(backward, static_argnums=0)(net, params, cache, Y)
    out = []
    p = out.append
    p(f"network {net.sizes}: {net.hidden} hidden, {net.output} output, loss {net.loss}; "
      f"m = {m} examples, one per column; {jnp.dtype(dtype).name}")
    p("\n== forward: Z^l = W^l A^(l-1) + b^l, A^l = g(Z^l)")
    p(_matrix("A^0 = X", X, decimals))
    for l in range(1, L + 1):
        g = net.output if l == L else net.hidden
        p(_matrix(f"W^{l}", params[l - 1][0], decimals))
        p(_matrix(f"b^{l}", params[l - 1][1], decimals))
        p(_matrix(f"Z^{l}", cache.Z[l], decimals))
        p(_matrix(f"A^{l} = {g}(Z^{l})", cache.A[l], decimals))
    p(f"\n== cost ({net.loss}, mean over the m = {m} examples)\nJ = {float(J):.17g}")
    natural = "A^L − Y" if net.natural else "∂J/∂A^L ⊙ g′(Z^L)"
    p(f"\n== backward: Δ^L = ({natural})/m, Δ^l = W^(l+1)ᵀ Δ^(l+1) ⊙ g′(Z^l); "
      f"dW^l = Δ^l A^(l-1)ᵀ, db^l = Δ^l 1  (the 1/m of the mean is folded into Δ)")
    for l in range(L, 0, -1):
        p(_matrix(f"Δ^{l}", deltas[l], decimals))
        p(_matrix(f"dW^{l}", grads[l - 1][0], decimals))
        p(_matrix(f"db^{l}", grads[l - 1][1], decimals))
    p(f"\n== one SGD step, lr = {lr}: W^l ← W^l − lr dW^l, b^l ← b^l − lr db^l")
    for l in range(1, L + 1):
        (W, b), (dW, db) = params[l - 1], grads[l - 1]
        p(_matrix(f"W^{l}", W - lr * dW, decimals))
        p(_matrix(f"b^{l}", b - lr * db, decimals))
    text = "\n".join(out) + "\n"
    (file or sys.stdout).write(text)
    return text
