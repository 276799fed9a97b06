"""The independent oracle (tests/oracle.py) checked against mathematics computed here: exact
Fraction arithmetic, SymPy square roots of rationals and 50-digit mpmath derivatives.  Nothing
here imports symbn."""

import random
from fractions import Fraction

import mpmath
import pytest
import sympy as sp
from oracle import Oracle, OracleError, default_f, split_chain

CLOSED_FORM = ("D(f, x[j]) = gamma*(v+eps)**(-1/2)*(dy[j] - Sum(dy[i],(i,1,N))/N"
               " - (x[j]-mu)*(v+eps)**(-1)*Sum((x[i]-mu)*dy[i],(i,1,N))/N)")


def stats(point, n):
    """mean, biased variance and sqrt(v + eps) of a point, computed here."""
    xs = [Fraction(point[f"x[{r}]"]) for r in range(1, n + 1)]
    mu = sum(xs) / n
    v = sum((x - mu) ** 2 for x in xs) / n
    sigma = sp.sqrt(sp.Rational(v + Fraction(point["eps"])))
    return xs, mu, v, sigma


def q(value) -> sp.Rational:
    value = Fraction(value)
    return sp.Rational(value.numerator, value.denominator)


def points(oracle, count, seed=7):
    rng = random.Random(seed)
    return [oracle.random_point(rng) for _ in range(count)]


def same(oracle, a, b) -> bool:
    return not oracle.differ(sp.sympify(a), sp.sympify(b))


# -- the model's nodes --------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_nodes_match_their_definitions(n):
    o = Oracle(n)
    for point in points(o, 4, seed=n):
        xs, mu, v, sigma = stats(point, n)
        assert o.value("mu", point) == q(mu)
        assert o.value("v", point) == q(v)
        assert same(o, o.value("sigma", point), sigma)
        gamma, beta = q(point["gamma"]), q(point["beta"])
        for r in range(1, n + 1):
            xhat = q(xs[r - 1] - mu) / sigma
            assert same(o, o.value("xhat[i]", point, {"i": r}), xhat)
            assert same(o, o.value(f"y[{r}]", point), gamma * xhat + beta)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_centred_values_and_normalised_values_sum_to_zero(n):
    o = Oracle(n)
    for point in points(o, 6, seed=10 + n):
        assert o.sides("Sum(xhat[i], (i, 1, N)) = 0 = Sum(x[i] - mu, (i, 1, N))", point) == \
            [0, 0, 0]
    assert o.search("Sum(xhat[i], (i, 1, N)) = 0", tries=20) is None
    assert o.search("Sum(xhat[i]**2, (i, 1, N)) = N*v/(v + eps)", tries=20) is None


def test_f_and_dy_are_the_default_function_and_its_gradient():
    n = 3
    o = Oracle(n)
    point = {"x[1]": 1, "x[2]": Fraction(-1, 2), "x[3]": 4, "gamma": 2, "beta": -1,
             "eps": Fraction(1, 3)}
    xs, mu, _, sigma = stats(point, n)
    ys = [2 * q(x - mu) / sigma - 1 for x in xs]
    big_f = sum(r * y + y ** 2 / 2 for r, y in enumerate(ys, 1)) + ys[0] * ys[1] \
        + ys[0] ** 3 / 3
    assert same(o, o.value("f", point), big_f)
    dy = [r + y for r, y in enumerate(ys, 1)]
    dy[0] += ys[1] + ys[0] ** 2
    dy[1] += ys[0]
    for r in range(1, n + 1):
        assert same(o, o.value(f"dy[{r}]", point), dy[r - 1])
        assert same(o, o.value(f"D(f, y[{r}])", point), dy[r - 1])


# -- derivatives ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_derivatives_of_mean_and_variance(n):
    o = Oracle(n)
    for point in points(o, 3, seed=20 + n):
        xs, mu, _, _ = stats(point, n)
        for j in range(1, n + 1):
            assert o.value("D(mu, x[j])", point, {"j": j}) == sp.Rational(1, n)
            assert o.value("D(v, x[j])", point, {"j": j}) == q(2 * (xs[j - 1] - mu) / n)
            assert o.value("D(x[i], x[j])", point, {"i": 1, "j": j}) == int(j == 1)
    assert o.search("D(v, x[j]) = 2*(x[j] - mu)/N", {"j": n}, tries=10) is None
    assert o.search("D(x[i], x[j]) = KroneckerDelta(i, j)", {"i": 1, "j": n}, tries=5) is None


@pytest.mark.parametrize("n", [2, 3])
def test_batchnorm_closed_form_holds_and_the_dropped_one_over_n_is_found(n):
    o = Oracle(n)
    for j in range(1, n + 1):
        assert o.search(CLOSED_FORM, {"j": j}, tries=50, seed=j) is None
    wrong = CLOSED_FORM.replace("Sum(dy[i],(i,1,N))/N", "Sum(dy[i],(i,1,N))")
    assert wrong != CLOSED_FORM
    found = o.search(wrong, {"j": 1})
    assert found is not None and o.differ(*found["values"])
    assert o.sides(wrong, found["point"], {"j": 1}) == found["values"]


def _numeric_f(xs, gamma, beta, eps):
    n = len(xs)
    mu = sum(xs) / n
    v = sum((x - mu) ** 2 for x in xs) / n
    ys = [gamma * (x - mu) / mpmath.sqrt(v + eps) + beta for x in xs]
    total = sum(r * y + y ** 2 / 2 for r, y in enumerate(ys, 1)) + ys[0] ** 3 / 3
    return total + (ys[0] * ys[1] if n >= 2 else 0)


def test_derivatives_agree_with_numerical_differentiation():
    """D(f, x[j]), D(f, eps), D(f, gamma) against mpmath.diff of F(y(x)) written here."""
    n = 3
    o = Oracle(n)
    point = {"x[1]": Fraction(1, 3), "x[2]": -2, "x[3]": Fraction(5, 2), "gamma": Fraction(-3, 2),
             "beta": Fraction(1, 2), "eps": Fraction(1, 7)}
    with mpmath.workdps(50):
        args = [mpmath.mpf(Fraction(point[k]).numerator) / Fraction(point[k]).denominator
                for k in ("x[1]", "x[2]", "x[3]", "gamma", "beta", "eps")]

        def at(*a):
            return _numeric_f(list(a[:3]), a[3], a[4], a[5])

        for pos, text in enumerate(["D(f, x[1])", "D(f, x[2])", "D(f, x[3])", "D(f, gamma)",
                                    "D(f, beta)", "D(f, eps)"]):
            order = [0] * 6
            order[pos] = 1
            numeric = mpmath.diff(at, args, tuple(order))
            exact = o.value(text, point)
            assert abs(mpmath.mpf(sp.N(exact, 50)) - numeric) < mpmath.mpf(10) ** -30, text
        second = mpmath.diff(at, args, (1, 1, 0, 0, 0, 0))
        exact = o.value("D(D(f, x[1]), x[2])", point)
        assert abs(mpmath.mpf(sp.N(exact, 50)) - second) < mpmath.mpf(10) ** -25


def test_facts_about_the_default_nonlinear_f():
    o = Oracle(3)
    assert o.search("D(dy[1], x[1]) = 0") is not None
    assert o.search("D(D(f, beta), beta) = 0") is not None
    assert o.search("D(dy[1], y[2]) = 1", tries=10) is None
    assert o.expr("D(dy[1], y[2])") == 1 and o.expr("D(dy[2], y[1])") == 1
    assert o.expr("D(dy[2], y[3])") == 0
    # d^2F/dy_1^2 = 1 + 2 y_1: depends on the point
    assert o.search("D(dy[1], y[1]) = 1 + 2*y[1]", tries=10) is None
    assert o.search("D(dy[1], y[1]) = 1") is not None
    # one row: F = y + y^2/2 + y^3/3, and y = beta, so D(f, beta) = 1 + beta + beta^2
    one = Oracle(1)
    assert one.search("D(f, beta) = 1 + beta + beta**2", tries=10) is None
    assert one.search("D(f, x[1]) = 0", tries=10) is None


def test_a_caller_supplied_f():
    o = Oracle(2, f=lambda ys: ys[0] * ys[1] ** 2)
    assert o.search("D(f, y[1]) = y[2]**2 = dy[1]", tries=10) is None
    assert o.search("D(dy[2], y[2]) = 2*y[1]", tries=10) is None
    assert o.search("D(f, beta) = y[2]**2 + 2*y[1]*y[2]", tries=10) is None
    with pytest.raises(OracleError):
        Oracle(2, f=lambda ys: ys[0] * sp.Symbol("z"))
    assert default_f(sp.symbols("a b")) == sp.sympify(
        "a + a**2/2 + 2*b + b**2/2 + a*b + a**3/3")


# -- square roots and undefined sides --------------------------------------------------------

def test_square_roots_are_principal():
    o = Oracle(2)
    found = o.search("sqrt((2*eps - 1)**2) = 2*eps - 1")
    assert found is not None and found["point"]["eps"] < Fraction(1, 2)
    assert found["values"][0] == -found["values"][1] > 0
    found = o.search("sqrt(xhat[1]**2) = xhat[1]")
    assert found is not None and found["point"]["x[1]"] < found["point"]["x[2]"]
    assert o.search("sqrt((v + eps)**2) = v + eps") is None
    assert o.search("sqrt(xhat[1]**2) = sqrt((x[1] - mu)**2)/sigma", tries=30) is None
    assert o.value("sqrt(9/4)", {}) == sp.Rational(3, 2)
    assert o.value("sqrt(v + eps)", {"x[1]": 0, "x[2]": 0, "eps": Fraction(4, 9)}) == \
        sp.Rational(2, 3)
    assert o.value("(v + eps)**(-3/2)", {"x[1]": 0, "x[2]": 0, "eps": 4}) == \
        sp.Rational(1, 8)


def test_sampled_eps_covers_both_small_and_large_values():
    o = Oracle(2)
    eps = {p["eps"] for p in points(o, 200)}
    assert any(0 < e < Fraction(1, 2) for e in eps) and any(e >= 2 for e in eps)
    assert all(e > 0 for e in eps)


def test_undefined_sides():
    assert Oracle(1).value("v/v", {"x[1]": 3}) is None
    o = Oracle(3)
    assert o.value("1/Sum(x[i] - mu, (i, 1, N))", {}) is None
    # SymPy cancels v/v to 1 while building it; the division written in the claim still counts
    two = Oracle(2)
    assert two.expr("v/v") == 1
    assert two.value("v/v", {"x[1]": 2, "x[2]": 2}) is None
    assert two.value("v/v", {"x[1]": 2, "x[2]": 3}) == 1
    assert two.value("sqrt(x[1] - x[2])", {"x[1]": 1, "x[2]": 2}) is None
    assert two.value("sqrt(x[1] - x[2])**2", {"x[1]": 1, "x[2]": 2}) is None
    assert two.value("sqrt(x[1] - x[2])**2", {"x[1]": 3, "x[2]": 2}) == 1
    assert two.value("(x[1] - x[2])**(-1/2)", {"x[1]": 2, "x[2]": 2}) is None
    assert two.value("(x[1] - x[2])**(-1/2)", {"x[1]": 6, "x[2]": 2}) == sp.Rational(1, 2)
    assert two.value("1/(xhat[1] + xhat[2])", {}) is None
    assert two.sides("1/(x[1] - x[2]) = 0", {"x[1]": 1, "x[2]": 1}) == [None, 0]
    # the derivative of sqrt at 0 is undefined
    assert two.value("D(sqrt(x[1] - x[2]), x[1])", {"x[1]": 2, "x[2]": 2}) is None
    # undefined points are skipped by search; an always-undefined side finds nothing
    assert Oracle(1).search("v/v = 2", tries=5) is None
    with pytest.raises(OracleError):
        o.differ(None, 1)


# -- sums and indices -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3])
def test_nested_sums_and_shadowing(n):
    o = Oracle(n)
    assert o.search("Sum(Sum(x[i]*x[k], (k, 1, N)), (i, 1, N)) = N**2*mu**2", tries=10) is None
    assert o.search("Sum(Sum(KroneckerDelta(i, k), (k, 1, N)), (i, 1, N)) = N", tries=2) is None
    x1 = sp.Symbol("x1")
    assert o.expr("D(Sum(x[j]**2, (j, 1, N)), x[j])", {"j": 1}) == 2 * x1
    # the inner sum rebinds i, the outer i is untouched afterwards
    point = {"x[1]": 5}
    assert o.value("x[i] + Sum(Sum(x[i], (i, 1, N)), (i, 1, N))", point, {"i": 1}) == \
        5 + n * o.value("Sum(x[i], (i, 1, N))", point)
    assert o.expr("Sum(KroneckerDelta(i, j)*x[i], (i, 1, N))", {"j": n}) == sp.Symbol(f"x{n}")


def test_free_indices_and_rows_are_checked():
    o = Oracle(3)
    with pytest.raises(OracleError, match="free"):
        o.expr("x[i]")
    with pytest.raises(OracleError, match="free"):
        o.expr("Sum(x[i]*x[j], (i, 1, N))", {"i": 1})
    for bad in ({"i": 0}, {"i": 4}, {"q": 1}, {"i": Fraction(3, 2)}, {"i": True}):
        with pytest.raises(OracleError):
            o.expr("x[i]", bad)
    with pytest.raises(OracleError):
        o.expr("x[4]")
    assert o.expr("x[i]", {"i": 3, "j": 1}) == sp.Symbol("x3")


def test_points():
    o = Oracle(2)
    assert o.value("x[1] + x[2]", {"x[1]": "-3/7", "x[2]": sp.Rational(1, 7)}) == \
        sp.Rational(-2, 7)
    assert o.value("eps", {}) == q(o.default_point()["eps"])
    for bad in ({"dy[1]": 1}, {"x[3]": 1}, {"eps": 0}, {"eps": -1}, {"x[1]": 0.5},
                {"mu": 1}):
        with pytest.raises(OracleError):
            o.value("x[1]", bad)


# -- local partials ---------------------------------------------------------------------------

def test_local_partials_follow_the_table():
    n = 3
    o = Oracle(n)
    for point in points(o, 3, seed=30):
        xs, mu, v, sigma = stats(point, n)
        w = sp.Rational(v + Fraction(point["eps"]))
        gamma = q(point["gamma"])
        i = 2
        xi = q(xs[i - 1] - mu)
        expected = {
            "P(mu, x[1])": sp.Rational(1, n),
            "P(v, x[2])": 2 * xi / n,
            "P(v, mu)": 0,
            "P(xhat[i], x[i])": 1 / sigma,
            "P(xhat[i], mu)": -1 / sigma,
            "P(xhat[i], v)": -xi / 2 * w ** sp.Rational(-3, 2),
            "P(y[i], xhat[i])": gamma,
            "P(y[i], gamma)": xi / sigma,
            "P(y[i], beta)": 1,
            "P(f, y[i])": o.value("dy[2]", point),
        }
        for text, value in expected.items():
            assert same(o, o.value(text, point, {"i": i}), value), text
    # P(v, mu) is -(2/N) Sum(x_r - mu), zero in value
    assert o.search("P(v, mu) = -2/N*Sum(x[i] - mu, (i, 1, N)) = 0", tries=5) is None
    assert o.search("P(v, x[j]) = D(v, x[j])", {"j": 1}, tries=5) is None


@pytest.mark.parametrize("text", [
    "P(v, xhat[1])", "P(xhat[1], x[2])", "P(xhat[1], eps)", "P(x[1], x[1])", "P(y[1], xhat[2])",
    "P(f, x[1])", "P(sigma, v)", "P(mu, mu)", "P(v, v)", "P(y[1], y[1])",
    "D(y[1], y[1])", "D(xhat[1], y[1])", "D(D(f, y[1]), y[2])", "D(f, mu)", "D(f, xhat[1])",
    "D(f, sigma)", "D(f, 2)",
])
def test_meaningless_partials_and_derivatives_are_refused(text):
    with pytest.raises(OracleError):
        Oracle(2).expr(text)


# -- the parser -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "__import__('os')", "__import__('os').getpid()", "x.real", "gamma.__class__",
    "lambda: 1", "[x[1]]", "(x[1], x[2])", "{1: 2}", "x[1] if 1 else 2", "x[1] == 2",
    "not x[1]", "x[1] // 2", "x[1] % 2", "x[1] @ x[2]", "~x[1]", "1.5", "True", "'s'",
    "None", "x[i+1]", "x[1:2]", "x", "i", "i*dy[1]", "sqrt(x[1], 2)", "sqrt(x=1)",
    "Sum(x[i], (i, 0, N))", "Sum(x[i], (i, 1, 3))", "Sum(x[i], (q, 1, N))", "Sum(x[i])",
    "Sum(x[i], [i, 1, N])", "exp(x[1])", "open('f')", "x[1]**x[2]", "x[1]**(1/3)",
    "x[1]**100", "(lambda: 1)()", "[k for k in x]", "sigma[1]", "foo", "f(1)",
    "x[1] = 2", "", "x[1] +", "D(*x)", "eval('1')", "globals()", "y[1].real",
])
def test_the_parser_refuses_everything_outside_the_language(text):
    with pytest.raises(OracleError):
        Oracle(2).expr(text)


def test_the_parser_reads_the_language():
    o = Oracle(2)
    x1, x2 = sp.symbols("x1 x2")
    assert o.expr("1/2") == sp.Rational(1, 2)
    assert o.expr("-x[1] + +x[2]") == x2 - x1
    assert o.expr("x[1]**(-3/2)") == x1 ** sp.Rational(-3, 2)
    assert o.expr("x[1]**((-3)/2)") == x1 ** sp.Rational(-3, 2)
    assert o.expr("x[1]**-1") == 1 / x1
    assert o.expr("N*x[2]") == 2 * x2
    assert o.expr("KroneckerDelta(1, 2) + KroneckerDelta(2, 2)") == 1
    assert o.expr("""Sum(x[i],
                        (i, 1, N))""") == x1 + x2
    assert split_chain("a = b == c = d <= e") == ["a ", " b == c ", " d <= e"]
    assert split_chain("f(a=1) = b") == ["f(a=1) ", " b"]
    with pytest.raises(OracleError, match="="):
        o.expr("x[1] = x[1]")
    assert o.sides("x[1] = x[1] = 2*x[1] - x[1]", {"x[1]": 3}) == [3, 3, 3]
    assert o.leaves == [x1, x2, sp.Symbol("gamma"), sp.Symbol("beta"), sp.Symbol("eps")]


# -- exact comparison and the two evaluation tiers --------------------------------------------

def test_differ_is_exact():
    o = Oracle(1)
    r2, r3 = sp.sqrt(2), sp.sqrt(3)
    assert not o.differ(sp.Rational(1, 3), Fraction(1, 3))
    assert o.differ(sp.Rational(1, 3), sp.Rational(1, 3) + sp.Rational(1, 10 ** 80))
    assert not o.differ(sp.sqrt(8), 2 * r2)
    assert not o.differ(r2 + r3, sp.sqrt(5 + 2 * sp.sqrt(6)))
    assert o.differ(r2, sp.Rational(14142135623730951, 10 ** 16))
    assert o.differ(r2 + r3, sp.sqrt(10))


@pytest.mark.parametrize("text", [
    "D(f, x[1])", "D(D(f, x[1]), eps)", "sqrt(xhat[1]**2)", "sqrt(x[1]**2 + 2) + sigma",
    "sqrt(sigma)", "1/(dy[1] - 3)", "sqrt(x[1] - x[2])**2", "v/v", "xhat[1]/xhat[2]",
    "(x[1] - mu)**(-1/2)", "D(D(f, beta), beta)", "D(sqrt(sigma)*x[1], x[2])",
])
def test_fast_and_general_evaluation_agree(text):
    fast, general = Oracle(2), Oracle(2, fast=False)
    for point in points(fast, 6, seed=3):
        a, b = fast.value(text, point), general.value(text, point)
        assert (a is None) == (b is None)
        if a is not None:
            assert not fast.differ(a, b)


# -- the row models: LayerNorm, RMSNorm, BatchNorm with the unbiased variance -----------------

LN_DX = ("D(f, x[j]) = (v + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N"
         " - (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))/N)")
RMS_DX = ("D(f, x[j]) = (ms + eps)**(-1/2)*(gamma[j]*dy[j] - x[j]*(ms + eps)**(-1)"
          "*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/N)")
UNB_DX = ("D(f, x[j]) = gamma*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N - (x[j] - mu)"
          "*(v + eps)**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/(N - 1))")
ROW_RESULTS = {
    "layernorm": [LN_DX, "D(f, gamma[j]) = dy[j]*xhat[j]", "D(f, beta[j]) = dy[j]",
                  "D(f, eps) = -1/2*(v + eps)**(-3/2)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))"],
    "rmsnorm": [RMS_DX, "D(f, gamma[j]) = dy[j]*xhat[j]",
                "D(f, eps) = -1/2*(ms + eps)**(-3/2)*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))"],
    "batchnorm-unbiased": [
        UNB_DX, "D(f, gamma) = Sum(dy[k]*xhat[k], (k, 1, N))", "D(f, beta) = Sum(dy[k], (k, 1, N))",
        "D(f, eps) = -1/2*gamma*(v + eps)**(-3/2)*Sum((x[k] - mu)*dy[k], (k, 1, N))"],
}
ROW_WRONG = [
    # LayerNorm with gamma treated as one scalar: gamma[j] pulled out of the sums
    ("layernorm", ("D(f, x[j]) = gamma[j]*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N"
                   " - (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/N)")),
    ("layernorm", LN_DX.replace("Sum(gamma[k]*dy[k], (k, 1, N))/N - ", "")),
    ("layernorm", "D(f, gamma[j]) = Sum(dy[k]*xhat[k], (k, 1, N))"),
    ("rmsnorm", RMS_DX.replace("gamma[j]*dy[j] -", "gamma[j]*dy[j] - Sum(gamma[k]*dy[k], "
                                                   "(k, 1, N))/N -")),
    ("rmsnorm", "D(f, gamma[j]) = dy[j]*x[j]"),
    ("batchnorm-unbiased", UNB_DX.replace("/(N - 1))", "/N)")),
    ("batchnorm", UNB_DX),
]


def row_stats(point, n, model):
    """(xs, gammas, betas, center, radicand) of a row-model point, computed here."""
    xs = [Fraction(point[f"x[{r}]"]) for r in range(1, n + 1)]
    eps = Fraction(point["eps"])
    if model == "rmsnorm":
        gammas = [Fraction(point[f"gamma[{r}]"]) for r in range(1, n + 1)]
        return xs, gammas, [Fraction(0)] * n, Fraction(0), sum(x * x for x in xs) / n + eps
    mu = sum(xs) / n
    div = n - 1 if model == "batchnorm-unbiased" else n
    if model == "layernorm":
        gammas = [Fraction(point[f"gamma[{r}]"]) for r in range(1, n + 1)]
        betas = [Fraction(point[f"beta[{r}]"]) for r in range(1, n + 1)]
    else:
        gammas, betas = [Fraction(point["gamma"])] * n, [Fraction(point["beta"])] * n
    return xs, gammas, betas, mu, sum((x - mu) ** 2 for x in xs) / div + eps


@pytest.mark.parametrize("model, n", [("layernorm", 1), ("layernorm", 3), ("rmsnorm", 1),
                                      ("rmsnorm", 3), ("batchnorm-unbiased", 2),
                                      ("batchnorm-unbiased", 4)])
def test_row_model_nodes_match_their_definitions(model, n):
    o = Oracle(n, model=model)
    for point in points(o, 4, seed=40 + n):
        xs, gammas, betas, center, w = row_stats(point, n, model)
        sigma = sp.sqrt(q(w))
        assert o.value("sigma**2", point) == q(w)
        if model == "rmsnorm":
            assert o.value("ms", point) == q(w - Fraction(point["eps"]))
        else:
            assert o.value("mu", point) == q(center)
            assert o.value("v", point) == q(w - Fraction(point["eps"]))
        for r in range(1, n + 1):
            xhat = q(xs[r - 1] - center) / sigma
            assert same(o, o.value("xhat[i]", point, {"i": r}), xhat)
            assert same(o, o.value(f"y[{r}]", point), q(gammas[r - 1]) * xhat + q(betas[r - 1]))


@pytest.mark.parametrize("model", list(ROW_RESULTS))
def test_row_model_closed_forms_equal_the_oracles_derivatives(model):
    for n in (2, 3):
        o = Oracle(n, model=model)
        for claim in ROW_RESULTS[model]:
            for j in range(1, n + 1):
                assert o.search(claim, {"j": j}, tries=12, seed=j) is None, (n, claim)


@pytest.mark.parametrize("model, claim", ROW_WRONG)
def test_row_model_wrong_closed_forms_are_refuted(model, claim):
    o = Oracle(3, model=model)
    found = o.search(claim, {"j": 2}, tries=50)
    assert found is not None and o.differ(*found["values"])
    assert o.sides(claim, found["point"], {"j": 2}) == found["values"]


def _numeric_row_f(model, xs, gammas, betas, eps):
    n = len(xs)
    if model == "rmsnorm":
        s = mpmath.sqrt(sum(x * x for x in xs) / n + eps)
        ys = [g * x / s for g, x in zip(gammas, xs, strict=True)]
    else:
        mu = sum(xs) / n
        s = mpmath.sqrt(sum((x - mu) ** 2 for x in xs) / n + eps)
        ys = [g * (x - mu) / s + b for g, x, b in zip(gammas, xs, betas, strict=True)]
    total = sum(r * y + y ** 2 / 2 for r, y in enumerate(ys, 1)) + ys[0] ** 3 / 3
    return total + ys[0] * ys[1]


@pytest.mark.parametrize("model", ["layernorm", "rmsnorm"])
def test_row_model_derivatives_agree_with_numerical_differentiation(model):
    """Every D(f, leaf) against mpmath.diff of F(y(x, gamma, beta, eps)) written here."""
    n = 2
    o = Oracle(n, model=model)
    point = o.random_point(random.Random(3))
    names = list(point)
    with mpmath.workdps(50):
        args = [mpmath.mpf(Fraction(point[k]).numerator) / Fraction(point[k]).denominator
                for k in names]

        def at(*a):
            got = dict(zip(names, a, strict=True))
            rows = range(1, n + 1)
            betas = [got.get(f"beta[{r}]", 0) for r in rows]
            return _numeric_row_f(model, [got[f"x[{r}]"] for r in rows],
                                  [got[f"gamma[{r}]"] for r in rows], betas, got["eps"])

        for pos, name in enumerate(names):
            order = [0] * len(names)
            order[pos] = 1
            numeric = mpmath.diff(at, args, tuple(order))
            exact = o.value(f"D(f, {name})", point)
            assert abs(mpmath.mpf(sp.N(exact, 50)) - numeric) < mpmath.mpf(10) ** -30, name


def test_row_model_leaves_points_and_names():
    ln, rms = Oracle(2, model="layernorm"), Oracle(2, model="rmsnorm")
    g1, g2, b1, b2 = sp.symbols("gamma1 gamma2 beta1 beta2")
    x1, x2, eps = sp.symbols("x1 x2 eps")
    assert ln.leaves == [x1, x2, g1, g2, b1, b2, eps]
    assert rms.leaves == [x1, x2, g1, g2, eps]
    assert set(ln.random_point(random.Random(1))) == {"x[1]", "x[2]", "gamma[1]", "gamma[2]",
                                                      "beta[1]", "beta[2]", "eps"}
    assert ln.value("gamma[2] - beta[1]", {"gamma[2]": 5, "beta[1]": 2}) == 3
    assert ln.expr("D(y[i], gamma[j])", {"i": 1, "j": 2}) == 0
    assert ln.search("D(y[i], gamma[j]) = KroneckerDelta(i, j)*xhat[i]", {"i": 2, "j": 2},
                     tries=5) is None
    # per-position gammas differ: LayerNorm's gamma is not one scalar
    assert ln.search("gamma[1] = gamma[2]", tries=5) is not None
    assert rms.search("Sum(x[k]**2, (k, 1, N)) = N*ms = N*(sigma**2 - eps)", tries=5) is None
    for model, text in [("layernorm", "gamma"), ("layernorm", "beta*x[1]"), ("layernorm", "ms"),
                        ("rmsnorm", "mu"), ("rmsnorm", "v"), ("rmsnorm", "beta[1]"),
                        ("rmsnorm", "gamma"), ("batchnorm", "gamma[1]"), ("batchnorm", "ms"),
                        ("batchnorm-unbiased", "gamma[1]"), ("layernorm", "D(f, gamma)"),
                        ("layernorm", "P(y[1], gamma[2])"), ("rmsnorm", "P(y[1], beta[1])"),
                        ("rmsnorm", "P(xhat[1], mu)"), ("rmsnorm", "P(sigma, ms)"),
                        ("layernorm", "P(gamma[1], x[1])")]:
        with pytest.raises(OracleError):
            Oracle(2, model=model).expr(text)
    for bad in ({"gamma": 1}, {"gamma[3]": 1}, {"beta[1]": 1, "x[1]": 0.5}):
        with pytest.raises(OracleError):
            ln.value("x[1]", bad)
    with pytest.raises(OracleError):
        rms.value("x[1]", {"beta[1]": 1})


def test_the_unbiased_model_needs_two_rows_and_divides_by_n_minus_1():
    with pytest.raises(OracleError, match="N >= 2"):
        Oracle(1, model="batchnorm-unbiased")
    with pytest.raises(OracleError, match="unknown model"):
        Oracle(2, model="groupnorm")
    o = Oracle(2, model="batchnorm-unbiased")
    assert o.value("v", {"x[1]": 1, "x[2]": 4}) == sp.Rational(9, 2)
    assert Oracle(2).value("v", {"x[1]": 1, "x[2]": 4}) == sp.Rational(9, 4)
    assert o.search("Sum((x[k] - mu)**2, (k, 1, N)) = (N - 1)*v", tries=5) is None
    assert o.search("Sum(xhat[k]**2, (k, 1, N)) = (N - 1)*v/(v + eps)", tries=5) is None
    assert o.search("Sum(xhat[k]**2, (k, 1, N)) = N*v/(v + eps)", tries=5) is not None


@pytest.mark.parametrize("model", ["layernorm", "rmsnorm", "batchnorm-unbiased"])
def test_row_model_local_partials(model):
    n = 3
    o = Oracle(n, model=model)
    for point in points(o, 3, seed=50):
        xs, gammas, _, center, w = row_stats(point, n, model)
        i = 2
        xi, wq = q(xs[i - 1] - center), q(w)
        sigma = sp.sqrt(wq)
        div = n - 1 if model == "batchnorm-unbiased" else n
        gi = "gamma" if model == "batchnorm-unbiased" else "gamma[i]"
        expected = {
            f"P(y[i], {gi})": xi / sigma,
            "P(y[i], xhat[i])": q(gammas[i - 1]),
            "P(xhat[i], x[i])": 1 / sigma,
            "P(f, y[i])": o.value("dy[2]", point),
        }
        if model == "rmsnorm":
            expected.update({"P(ms, x[i])": 2 * xi / n, "P(xhat[i], ms)": -xi / 2 / wq / sigma,
                             "P(xhat[i], eps)": -xi / 2 / wq / sigma})
        else:
            expected.update({"P(mu, x[1])": sp.Rational(1, n), "P(v, x[i])": 2 * xi / div,
                             "P(xhat[i], mu)": -1 / sigma, "P(xhat[i], v)": -xi / 2 / wq / sigma,
                             "P(xhat[i], eps)": -xi / 2 / wq / sigma, "P(v, mu)": 0})
        for text, value in expected.items():
            assert same(o, o.value(text, point, {"i": i}), value), text


@pytest.mark.parametrize("model", ["layernorm", "rmsnorm", "batchnorm-unbiased"])
def test_row_model_fast_and_general_evaluation_agree(model):
    texts = ["D(f, x[1])", "D(D(f, x[1]), eps)", "sqrt(xhat[1]**2)", "sqrt(sigma)", "sigma**3"]
    fast, general = Oracle(2, model=model), Oracle(2, model=model, fast=False)
    for point in points(fast, 4, seed=5):
        for text in texts:
            a, b = fast.value(text, point), general.value(text, point)
            assert (a is None) == (b is None)
            if a is not None:
                assert not fast.differ(a, b), text


@pytest.mark.parametrize("text", [
    "sqrt((x[1] - x[2])**(-2))", "sqrt(sigma**4)", "(xhat[1]**2)**(-1/2)",
    "sqrt((xhat[1] - xhat[2])**2)", "sqrt((sigma - 2)**2)**3", "sqrt((sigma - 2)**2)**(-1)",
    "sqrt(D(f, x[1])**2)", "sqrt((x[1] - mu)**4)",
])
def test_square_roots_of_even_powers_agree_in_both_tiers(text):
    """sqrt(b**(2m)) = |b|**m in the fast tier, also for b in Q(sqrt(v + eps))."""
    fast, general = Oracle(2), Oracle(2, fast=False)
    for point in [*points(fast, 5, seed=8), {"x[1]": 1, "x[2]": 1, "eps": 3}]:
        a, b = fast.value(text, point), general.value(text, point)
        assert (a is None) == (b is None), (text, point)
        if a is not None:
            assert not fast.differ(a, b)
            assert sp.N(a) >= 0


def test_a_root_of_a_large_square_is_built_quickly():
    """SymPy's own evaluation of sqrt(big**2) queries the sign of big (minutes at N = 4)."""
    o = Oracle(4, model="batchnorm-unbiased")
    claim = ("sqrt(Sum(D(f, x[k])*xhat[k], (k, 1, N))**2) = "
             "-(gamma*eps*Sum(dy[k]*xhat[k], (k, 1, N))/sigma**3)")
    assert o.search(claim, tries=40) is not None
