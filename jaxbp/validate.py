"""Checks at the public boundary: outside `jit`, or while a checked step is traced.

Every error names the argument, what was expected and what arrived, so that bad input never
reaches XLA as a shape error. Value checks (finite X, {0, 1} or one-hot Y, weights ≥ 0) run on
concrete arrays only; a JAX array that passed once is remembered (JAX arrays are immutable), so
a Python loop that feeds the same device batch pays for the check once.

Reading a device array's check back to the host waits for the array, and for everything
queued before it on the device. `train_step` therefore defers them: its compiled program
computes the flags itself (`value_flags`), and `raise_failed` reads them once they are ready,
never waiting, at the start of a later call (or waits for them: `jaxbp.check_pending`).
"""

import collections
import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.losses import TARGETS
from jaxbp.model import MLP, Cache, check_key

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# id(array) -> (weak reference, kinds of value check it passed)
_PASSED: dict[int, tuple[weakref.ref, set]] = {}
# Deferred checks not read yet, oldest first: (flags (k, 2) on the device, net, weighted, where).
_PENDING: collections.deque = collections.deque()


# --- scalars, keys and rows: the arguments of every public function ---------------------------
def positive_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")
    return int(v)


def seed(v, name="seed"):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
    return int(v)


def fraction(name, v, high=1.0):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < high:
        raise ValueError(f"{name}: expected a number in [0, {high}), got {v!r}")
    return float(v)


def non_negative(name, v):
    """A real number >= 0 (ints and floats; not bool, not NaN) as a float."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or \
            not v >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {v!r}")
    return float(v)


def prng_key(key):
    """An int seed or a JAX PRNG key (typed, or legacy uint32 (2,); `model.check_key`) as a
    typed key."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if not isinstance(key, jax.Array):
        raise TypeError(f"key: expected an int seed or a JAX PRNG key, got {key!r:.60}")
    check_key(key)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def rows(name, X, n_0):
    """Row-major user data X (m, n_0), m >= 1 (a NumPy array, or a JAX array as it is)."""
    X = np.asarray(X) if not isinstance(X, jax.Array) else X
    if X.ndim != 2 or X.shape[1] != n_0 or X.shape[0] < 1:
        hint = "; column-major (n_0, m) data needs X.T here" if (
            X.ndim == 2 and X.shape[0] == n_0) else ""
        raise ValueError(f"{name}: expected row-major shape (m, n_0) = (m, {n_0}) with m >= 1, "
                         f"one example per row, got {tuple(X.shape)}{hint}")
    return X



def targets_from_labels(net, y, name="y"):
    """Row-major labels -> column-major targets Y (n_L, m), checked for the net's loss.

    softmax: class ids (m,) in 0..n_L−1, or one-hot rows (m, n_L). sigmoid: {0, 1} of shape (m,)
    when n_L = 1, or (m, n_L) for several independent labels. identity: (m,) when n_L = 1, or
    (m, n_L)."""
    y = np.asarray(y)
    n_L = net.sizes[-1]
    if y.size == 0:
        raise ValueError(f"{name}: expected labels, got an empty array of shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric labels (encode strings first, or use "
                        f"jaxbp.sklearn's estimators), got dtype {y.dtype}")
    if TARGETS[net.loss] == "one_hot" and y.ndim == 1:  # class ids -> one-hot columns
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or y.min() < 0 or \
                y.max() >= n_L:
            raise ValueError(f"{name}: expected class ids in 0..{n_L - 1} for {n_L} softmax "
                             f"outputs, got values from {y.min()} to {y.max()}")
        return np.eye(n_L)[y.astype(int)].T
    if y.ndim == 1 and n_L == 1:
        return y[None, :].astype(np.float64)
    if y.ndim == 2 and y.shape[1] == n_L:
        return y.T.astype(np.float64)
    raise ValueError(f"{name}: expected shape (m,) or (m, {n_L}) for n_L = {n_L} outputs, "
                     f"got {y.shape}")

def short(values, n=6):
    """values for an error message: the first n of them, then '...'."""
    return repr(values) if len(values) <= n else f"[{', '.join(map(repr, values[:n]))}, ...]"


# --- arrays ---------------------------------------------------------------------------------------
def mlp(net):
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")


def _shape_dtype(name, x):
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    return tuple(x.shape), np.dtype(x.dtype)


def params(net, params):
    """Check that params fit `net`: L pairs (W^l (n_l, n_{l-1}), b^l (n_l, 1)), one float dtype."""
    mlp(net)
    if not isinstance(params, (tuple, list)):
        raise TypeError(
            f"params: expected a tuple of (W, b) pairs as from jaxbp.init, "
            f"got {type(params).__name__}"
        )
    if len(params) != net.L:
        raise ValueError(
            f"params: expected {net.L} (W, b) pairs for sizes {net.sizes}, got {len(params)}"
        )
    dtype = None
    for l, (pair, shapes) in enumerate(zip(params, net.param_shapes(), strict=True), start=1):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"params[{l - 1}]: expected a (W^{l}, b^{l}) pair, got {pair!r:.80}")
        for i, (x, expected) in enumerate(zip(pair, shapes, strict=True)):
            name = f"params[{l - 1}][{i}] ({'Wb'[i]}^{l})"
            shape, dt = _shape_dtype(name, x)
            if shape != expected:
                hint = ""
                if i == 1 and shape == expected[:1]:
                    hint = "; biases are column vectors: use b.reshape(-1, 1)"
                raise ValueError(
                    f"{name}: expected shape {expected} for sizes {net.sizes}, got {shape}{hint}"
                )
            if dt not in _FLOATS:
                raise TypeError(f"{name}: expected dtype float32 or float64, got {dt}")
            if dtype is not None and dt != dtype:
                raise TypeError(f"{name}: expected dtype {dtype} like params[0][0], got {dt}")
            dtype = dt
    return params


def param_dtype(params):
    return np.dtype(params[0][0].dtype)


def numeric_array(name, x):
    """x as an array (a NumPy or JAX array as it is) of a real numeric dtype."""
    if isinstance(x, (jax.Array, np.ndarray)):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from e
    kind = np.dtype(arr.dtype).kind
    if kind not in "biuf" and np.dtype(arr.dtype) != jnp.bfloat16:
        got = f"dtype {arr.dtype}" + ("" if arr is x else f" (a {type(x).__name__})")
        raise TypeError(f"{name}: expected a real numeric array, got {got}")
    return arr


def _flags(xp, x, kind):
    """[all finite, values valid for `kind`] using numpy or jax.numpy as `xp`."""
    finite = xp.all(xp.isfinite(x))
    if kind == "finite":
        return finite, finite
    if kind == "weights":
        return finite, xp.all(x >= 0) & xp.any(x > 0)
    binary = xp.all((x == 0) | (x == 1))
    if kind == "binary":
        return finite, binary
    return finite, binary & xp.all(xp.sum(x, axis=0) == 1)  # one_hot


@functools.partial(jax.jit, static_argnums=1)
def _device_flags(x, kind):
    return jnp.stack(_flags(jnp, x, kind))


def _passed(x, kind):
    entry = _PASSED.get(id(x))
    return entry is not None and entry[0]() is x and kind in entry[1]


def _remember(x, kind):
    key = id(x)
    entry = _PASSED.get(key)
    if entry is None or entry[0]() is not x:
        entry = (weakref.ref(x, lambda _, key=key: _PASSED.pop(key, None)), set())
        _PASSED[key] = entry
    entry[1].add(kind)


def _check_values(name, x, kind, what):
    """Raise unless x's values are valid for `kind`; a device array not seen before is read
    back (which waits for it)."""
    if isinstance(x, jax.core.Tracer):
        return  # inside a jit or vmap: values are not known yet
    if isinstance(x, jax.Array):
        if _passed(x, kind):
            return
        flags = np.asarray(_device_flags(x, kind))
    else:
        flags = _flags(np, np.asarray(x), kind)
    _raise_for(name, what, *(bool(v) for v in flags))
    if isinstance(x, jax.Array):
        _remember(x, kind)


def _raise_for(name, what, finite, valid, where=""):
    if not finite:
        raise ValueError(f"{name}: expected finite values, got NaN or inf{where}")
    if not valid:
        raise ValueError(f"{name}: expected {what}, got other values{where}")


@functools.cache
def value_checks(net, weighted):
    """(name, kind, what) of the value checks of X, Y and, if `weighted`, the weights."""
    kind, what = _target_check(net)
    checks = (("X", "finite", "finite values"), ("Y", kind, what))
    return checks + ((("sample_weight", "weights", _WEIGHTS),) if weighted else ())


def value_flags(net, X, Y, weights):
    """Inside jit: [finite, valid] for each of `value_checks`, shape (k, 2)."""
    arrays = (X, Y) if weights is None else (X, Y, weights)
    checks = value_checks(net, weights is not None)
    return jnp.stack([jnp.stack(_flags(jnp, x, kind))
                      for x, (_, kind, _) in zip(arrays, checks, strict=True)])


def defer(flags, net, weighted, where):
    """Keep the flags of `value_checks(net, weighted)` that a compiled call computed, to be
    read when ready; `where` names the call in the error message."""
    _PENDING.append((flags, net, weighted, where))


PENDING_MAX = 1024  # deferred checks kept unread; past this the oldest is waited for


def raise_failed(wait=False):
    """Read the deferred checks whose flags are ready (all of them if `wait`), oldest first,
    and raise ValueError for the first that failed. Waits only if `wait`, or for the oldest
    when more than PENDING_MAX are unread (the host that far ahead of the device)."""
    while _PENDING and (wait or len(_PENDING) > PENDING_MAX or _PENDING[0][0].is_ready()):
        flags, net, weighted, where = _PENDING.popleft()
        ok = np.asarray(flags)
        if ok.all():
            continue
        for (name, _, what), (finite, valid) in zip(value_checks(net, weighted), ok,
                                                    strict=True):
            _raise_for(name, what, bool(finite), bool(valid), where=f" (in {where})")


def _cast(x, dtype):
    if isinstance(x, jax.Array) and x.dtype == dtype:
        return x
    return jnp.asarray(x, dtype)


def inputs(net, params, X, name="X"):
    """X of shape (n_0, m) with m ≥ 1, finite, returned in the parameters' dtype."""
    X = numeric_array(name, X)
    n_0 = net.sizes[0]
    if X.ndim != 2 or X.shape[0] != n_0 or X.shape[1] < 1:
        raise ValueError(
            f"{name}: expected shape (n_0, m) = ({n_0}, m) with m >= 1, one example per column, "
            f"got {tuple(X.shape)}"
            + (
                "; row-major data of shape (m, n_0) needs X.T"
                if X.ndim == 2 and X.shape[1] == n_0
                else ""
            )
        )
    _check_values(name, X, "finite", "finite values")
    return _cast(X, param_dtype(params))


_WEIGHTS = "weights >= 0 with a positive sum"
# The kind of targets a loss takes (losses.TARGETS) -> what the error message expects.
_TARGET_WHAT = {"binary": "values in {{0, 1}} for loss {loss!r}",
                "one_hot": "one-hot columns (each column one 1, the rest 0) for loss {loss!r}",
                "finite": "finite values"}


def _target_check(net):
    """(kind, what) of the value check of the targets of `net`'s loss."""
    kind = TARGETS[net.loss]
    return kind, _TARGET_WHAT[kind].format(loss=net.loss)


def targets(net, params, Y, m, name="Y"):
    """Y of shape (n_L, m), with values that the loss accepts, in the parameters' dtype."""
    Y = numeric_array(name, Y)
    n_L = net.sizes[-1]
    if tuple(Y.shape) != (n_L, m):
        raise ValueError(
            f"{name}: expected shape (n_L, m) = ({n_L}, {m}), one target column per example, "
            f"got {tuple(Y.shape)}"
        )
    kind, what = _target_check(net)
    _check_values(name, Y, kind, what)
    return _cast(Y, param_dtype(params))


def sample_weight(params, w, m, name="sample_weight"):
    """None, or weights of shape (m,) (or (1, m)), finite, ≥ 0, not all 0: returned (1, m)."""
    if w is None:
        return None
    w = numeric_array(name, w)
    if tuple(w.shape) not in ((m,), (1, m)):
        raise ValueError(f"{name}: expected shape ({m},), one weight per example, "
                         f"got {tuple(w.shape)}")
    _check_values(name, w, "weights", _WEIGHTS)
    return _cast(w, param_dtype(params)).reshape(1, m)


def cache(net, cache):
    """A `Cache` from `forward` for this net: A^0..A^L and Z^1..Z^L of shape (n_l, m)."""
    if not isinstance(cache, Cache):
        raise TypeError(
            f"cache: expected the Cache returned by jaxbp.forward, got {type(cache).__name__}"
        )
    L = net.L
    if len(cache.A) != L + 1 or len(cache.Z) != L + 1:
        raise ValueError(
            f"cache: expected A^0..A^{L} and Z^1..Z^{L} for sizes {net.sizes}, "
            f"got {len(cache.A)} A's and {len(cache.Z) - 1} Z's"
        )
    m = _shape_dtype("cache.A[0]", cache.A[0])[0][-1]
    for l, n in enumerate(net.sizes):
        for label, x in (("A", cache.A[l]), ("Z", cache.Z[l])):
            if label == "Z" and l == 0:
                continue
            shape, _ = _shape_dtype(f"cache.{label}[{l}]", x)
            if shape != (n, m):
                raise ValueError(
                    f"cache.{label}[{l}] ({label}^{l}): expected shape ({n}, {m}), got {shape}"
                )
    return cache
