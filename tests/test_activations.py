"""register_activation: the rule that admits a user's (g, g′) pair, pinned point by point.

The pair is checked once, in float64, against central differences of g at 201 points of
[−4, 4] (or the caller's points), skipping kinks. Each test below fixes one part of that rule
(written from its docstring, not from its code): what is refused and with which message, where
it looks, how tight it is, what counts as a kink, and which point an error names. Every name
registered here is removed again (registration is global).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import activations


@pytest.fixture
def register():
    """register_activation under test-private names, unregistered afterwards."""
    names = []

    def call(g, g_prime, **kwargs):
        name = f"user_test_{len(names)}"
        names.append(name)
        jaxbp.register_activation(name, g, g_prime, **kwargs)
        return name

    yield call
    for name in names:
        activations.ACTIVATIONS.pop(name, None)
        activations.DERIVATIVES.pop(name, None)


def identity(z):
    return z


def one(z):
    return jnp.ones_like(z)


def near(z, point):
    return jnp.abs(z - point) < 1e-9


@pytest.mark.parametrize("name", [3, "two words", ""])
def test_a_name_must_be_an_identifier(name):
    with pytest.raises(ValueError, match=f"name: expected an identifier-like string, got {name!r}"):
        jaxbp.register_activation(name, identity, one)


def test_both_functions_must_be_callable():
    with pytest.raises(TypeError, match="g, g_prime: expected callables, got function and float"):
        jaxbp.register_activation("user_bad", identity, 1.0)
    with pytest.raises(TypeError, match="expected callables, got NoneType and function"):
        jaxbp.register_activation("user_bad", None, one)
    assert "user_bad" not in activations.ACTIVATIONS


def test_a_function_that_fails_on_float64_is_named():
    def broken(z):
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match=r"g, g_prime: could not evaluate them on float64 "
                                         r"arrays \(boom\)"):
        jaxbp.register_activation("user_bad", identity, broken)


def test_both_functions_must_be_elementwise():
    """The message also says how many default points there are: 201."""
    with pytest.raises(ValueError, match=r"g, g_prime: expected elementwise functions "
                                         r"\(shape \(201,\) in, same out\), got \(201,\) and \(\)"):
        jaxbp.register_activation("user_bad", identity, jnp.sum)
    with pytest.raises(ValueError, match=r"got \(\) and \(201,\)"):
        jaxbp.register_activation("user_bad", jnp.sum, one)


def test_the_default_points_reach_both_ends_of_minus_4_to_4_and_no_further(register):
    # g′ wrong only at the ends: found, and the error names the end.
    for end in (-4.0, 4.0):
        with pytest.raises(ValueError, match=f"at z = {end:g}: got 2, central differences "
                                             "give 1"):
            register(identity, lambda z, end=end: jnp.where(near(z, end), 2.0, 1.0))
    # g′ wrong only beyond ±4.2: not looked at.
    register(identity, lambda z: jnp.where(jnp.abs(z) > 4.2, 2.0, 1.0))


def test_the_callers_points_replace_the_default(register):
    wrong_at_6 = lambda z: jnp.where(z > 5.5, 2.0, 1.0)  # noqa: E731
    register(identity, wrong_at_6)  # the default points stop at 4
    with pytest.raises(ValueError, match="at z = 6: got 2"):
        register(identity, wrong_at_6, check_points=[0.5, 6.0])
    register(identity, wrong_at_6, check_points=np.array([-6.0, 5.0]))


def test_the_tolerance_is_atol_plus_rtol_times_the_derivative(register):
    """|g′ − central difference| ≤ atol + rtol·|central difference| (+ 1e-4·h = 1e-9 for the
    differences' own truncation). A linear g has exact differences up to rounding (~1e-11)."""
    half = lambda z: 0.5 * z  # noqa: E731
    register(half, lambda z: jnp.full_like(z, 0.5 + 1.0e-8), rtol=0.0, atol=1e-8)
    with pytest.raises(ValueError, match="does not match"):
        register(half, lambda z: jnp.full_like(z, 0.5 + 1.2e-8), rtol=0.0, atol=1e-8)
    double = lambda z: 2.0 * z  # noqa: E731
    register(double, lambda z: jnp.full_like(z, 2.0 + 1.5e-6), rtol=1e-6, atol=0.0)
    with pytest.raises(ValueError, match="does not match"):
        register(double, lambda z: jnp.full_like(z, 2.0 + 2.5e-6), rtol=1e-6, atol=0.0)


def test_a_wrong_derivative_is_refused_whatever_its_slope_or_curvature(register):
    """Smooth points are checked, steep or curved: slope 2 (past 1), a parabola of curvature
    100, and tanh wrong only in its steep middle (|z| < 2, where tanh′ > 0.07)."""
    cases = [
        (lambda z: 2.0 * z, lambda z: jnp.full_like(z, 2.5)),
        (lambda z: 50.0 * z * z, lambda z: 100.0 * z + 1.0),
        (jnp.tanh, lambda z: (1 - jnp.tanh(z) ** 2) * jnp.where(jnp.abs(z) < 2, 2.0, 1.0)),
    ]
    for g, g_prime in cases:
        with pytest.raises(ValueError, match="does not match the derivative of g"):
            register(g, g_prime)


def test_kinks_are_skipped(register):
    """A point where the one-sided quotients differ by more than 1e-3·(1 + |right quotient|)
    is a kink: g′ is not checked there. leaky ReLU's kink at 0 (quotients 1 and 0.01), and a
    parabola's vertex where the quotients differ by 150·h = 1.5e-3 > 1e-3·(1 + 7.5e-4)."""
    leaky = lambda z: jnp.where(z > 0, z, 0.01 * z)  # noqa: E731
    register(leaky, lambda z: jnp.where(z > 0, 1.0, 0.01))
    register(lambda z: 75.0 * z * z, lambda z: 150.0 * z + jnp.where(near(z, 0.0), 1.0, 0.0))


def test_the_error_names_the_worst_smooth_point(register):
    """A kink (skipped) and a wrong g′ at z = 0.04 only: the error names 0.04, not the kink."""
    leaky = lambda z: jnp.where(z > 0, z, 0.01 * z)  # noqa: E731
    with pytest.raises(ValueError, match=r"at z = 0\.04: got 1\.5, central differences give 1"):
        register(leaky, lambda z: jnp.where(z > 0, 1.0, 0.01) + jnp.where(near(z, 0.04), 0.5, 0))


def test_a_derivative_that_is_not_finite_is_refused(register):
    with pytest.raises(ValueError, match=r"derivative of g at z = 3\.04: got nan"):
        register(identity, lambda z: jnp.where(z > 3.0, jnp.nan, 1.0))
