"""`jaxbp explain` prints the worked example of seed 001 with the seed's own numbers."""

import re

import numpy as np
from test_seeds import (
    PRINT_ATOL,
    PRINTED_AFTER_SGD,
    PRINTED_COST,
    PRINTED_FORWARD,
    PRINTED_GRADS,
)

from jaxbp.explain import explain

HEADER = re.compile(r"^(\S.*?)  shape \((\d+), (\d+)\)$")
NUMBER = re.compile(r"-?\d+\.\d+")


def blocks(text):
    """[(name, array)] for every printed matrix, in order."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        match = HEADER.match(line)
        if match:
            r, c = int(match[2]), int(match[3])
            numbers = []
            for body in lines[i + 1 : i + 1 + r]:
                numbers += [float(x) for x in NUMBER.findall(body)]
            out.append((match[1], np.array(numbers).reshape(r, c)))
    return out


def test_explain_reproduces_seed_001(capsys):
    text = explain()
    assert capsys.readouterr().out == text
    found = blocks(text)
    by_name = {}
    for name, value in found:
        by_name.setdefault(name.split(" ")[0], []).append(value)
    # The seed prints one example per row; explain prints the engine's columns: transpose.
    # explain prints 4 decimals as the seed does; both round the same exact values, so the
    # printed numbers agree to one unit in the last place at most (1e-4), usually exactly.
    for name, printed in PRINTED_FORWARD.items():
        got = by_name[f"{name[0]}^{name[1]}"][0]
        np.testing.assert_allclose(got, np.array(printed).T, atol=2 * PRINT_ATOL, err_msg=name)
    J = float(re.search(r"^J = (\S+)$", text, re.M)[1])
    np.testing.assert_allclose(J, PRINTED_COST, rtol=3e-7)
    for l, (dW, db) in enumerate(PRINTED_GRADS, start=1):
        np.testing.assert_allclose(by_name[f"dW^{l}"][0], dW, atol=2 * PRINT_ATOL)
        np.testing.assert_allclose(by_name[f"db^{l}"][0], db, atol=2 * PRINT_ATOL)
    for l, (W, b) in enumerate(PRINTED_AFTER_SGD, start=1):
        # W^l is printed twice: the starting weights, then after the step.
        np.testing.assert_allclose(by_name[f"W^{l}"][1], W, atol=2 * PRINT_ATOL)
        np.testing.assert_allclose(by_name[f"b^{l}"][1], b, atol=2 * PRINT_ATOL)
    # Every layer's Δ with its shape (n_l, m).
    assert [v.shape for v in by_name["Δ^3"] + by_name["Δ^2"] + by_name["Δ^1"]] == [
        (1, 2), (2, 2), (3, 2)]
