"""Train the worked-example network of seed 001 and print its cost falling.

The network is 2-3-2-1 (relu, relu, sigmoid, binary cross-entropy) with the seed's starting
weights, on its two examples x = (1, 2) -> 0 and x = (3, 4) -> 1, one example per column.
Step 0 prints the seed's cost, 0.19522886 (0.19522889 in float32, the default); with
--lr 0.01 the first step gives the seed's updated parameters. Plain SGD then drives the cost
toward 0.

    python scripts/train_worked_example.py [--steps 300] [--lr 0.1] [--every 30]
"""

import jax.numpy as jnp
from absl import app, flags

import jaxbp

_STEPS = flags.DEFINE_integer("steps", 300, "SGD steps to take.", lower_bound=1)
_LR = flags.DEFINE_float("lr", 0.1, "Learning rate of plain SGD.", lower_bound=0.0)
_EVERY = flags.DEFINE_integer("every", 30, "Print the cost every this many steps.", lower_bound=1)

NET = jaxbp.MLP((2, 3, 2, 1), hidden="relu", output="sigmoid")  # n_0 = 2, ..., n_L = 1
PARAMS = (
    (jnp.array([[-1.0, 2.0], [3.0, 0.5], [-0.1, -4.0]]), jnp.array([[1.0], [-2.0], [0.3]])),
    (jnp.array([[0.5, 1.0, -2.0], [0.7, 0.1, 0.3]]), jnp.array([[-4.0], [5.0]])),
    (jnp.array([[0.5, -0.3]]), jnp.array([[0.1]])),
)
X = jnp.array([[1.0, 3.0], [2.0, 4.0]])  # (n_0, m) = (2, 2): columns are the two examples
Y = jnp.array([[0.0, 1.0]])  # (n_L, m) = (1, 2)


def main(argv):
    del argv
    if _LR.value <= 0:
        raise app.UsageError(f"--lr: expected a number > 0, got {_LR.value}")
    opt = jaxbp.optim.sgd(_LR.value)
    params, state = PARAMS, opt.init(PARAMS)
    print(f"network {NET.sizes}, {NET.hidden} hidden, {NET.output} output, loss {NET.loss}; "
          f"SGD lr {_LR.value}, {_STEPS.value} steps")
    for step in range(_STEPS.value):
        params, state, J = jaxbp.train_step(NET, opt, params, state, X, Y)
        if step % _EVERY.value == 0:
            print(f"step {step:5d}  cost {float(J):.8f}")
    A_L, cache = jaxbp.forward(NET, params, X)
    J, _ = jaxbp.backward(NET, params, cache, Y)
    outputs = ", ".join(f"{a:.4f}" for a in A_L.ravel().tolist())
    print(f"final      cost {float(J):.8f}  outputs A^L = [{outputs}] for targets Y = [0, 1]")


if __name__ == "__main__":
    app.run(main)
