"""solvers.sharding and ``devices=``: the samples split over forced host devices give the same
certified optimum as one device, through solvers.solve and through ConvexAttention; bad input."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import convextx as cx
import solvers
from solvers import sharding

FOUR_DEVICES = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import convextx as cx, solvers
    from solvers import sharding
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5, 3)); y = rng.integers(0, 3, 64)
    program = cx.convex_program(X, y, kind="vector", beta=0.5, loss="cross_entropy")
    single = program.solve(tol=1e-10)
    spread = sharding.shard_samples(program.problem, 4)
    assert len(sharding.devices_of(spread)) == 4
    for method in ("fista", "working_set"):
        result = program.solve(method=method, tol=1e-10, devices=4)
        assert result.status == "optimal", result
        rel = abs(result.objective - single.objective) / single.objective
        assert rel < 1e-9, (method, rel)
    try:
        cx.convex_program(X[:62], y[:62], kind="vector", beta=0.5).solve(devices=4)
    except ValueError as err:
        assert "62 samples cannot be split evenly over 4 devices" in str(err), err
    else:
        raise AssertionError("62 samples over 4 devices must be refused")
    fitted = cx.ConvexAttention(beta=0.5, devices="all").fit(X, y)
    alone = cx.ConvexAttention(beta=0.5).fit(X, y)
    assert abs(fitted.objective_ - alone.objective_) <= 1e-8 * alone.objective_
    assert (fitted.predict(X) == alone.predict(X)).all()
    print("SHARDING_OK")
    """
)


# arrays a user placed on a mesh by hand: the solver runs on them as they are
PLACED_BY_HAND = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jax.tree_util import Partial
    import solvers
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6, 3)); y = rng.integers(0, 3, 64)
    def predict(X, Z):
        return jnp.einsum("ikq,lkq->il", X, Z)
    def problem(X, y):
        return solvers.Problem(Partial(predict, X), (3, 6, 3), solvers.SoftmaxCrossEntropy(y),
                               solvers.GroupL2(0.5))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    Xs = jax.device_put(X, NamedSharding(mesh, P("data")))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))
    assert len(Xs.sharding.device_set) == 4
    single = solvers.solve(problem(X, y), tol=1e-10)
    sharded = solvers.solve(problem(Xs, ys), tol=1e-10)
    assert single.status == sharded.status == "optimal"
    rel = abs(single.objective - sharded.objective) / single.objective
    assert rel < 1e-9, rel
    print("SHARDED_OK", rel)
    """
)


def _on_four_host_devices(script: str) -> str:
    """The stdout of ``script`` run in a process with 4 forced host devices (asserted to pass)."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_four_host_devices_give_the_single_device_optimum():
    assert "SHARDING_OK" in _on_four_host_devices(FOUR_DEVICES)


def test_arrays_sharded_by_hand_give_the_single_device_optimum():
    assert "SHARDED_OK" in _on_four_host_devices(PLACED_BY_HAND)


def test_one_device_by_count_or_all_is_the_plain_solve():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((30, 4, 2)), rng.standard_normal(30)
    program = cx.convex_program(X, y, kind="scalar", beta=0.3)
    plain = program.solve(tol=1e-10)
    for devices in (1, "all", jax.devices()):
        result = program.solve(tol=1e-10, devices=devices)
        assert result.objective == pytest.approx(plain.objective, rel=1e-12)


@pytest.mark.parametrize(
    ("devices", "error", "message"),
    [
        ("some", ValueError, "devices must be 'all'"),
        (0, ValueError, r"devices must be a count in \[1, "),
        (len(jax.devices()) + 1, ValueError, "the devices present"),
        ([], TypeError, "non-empty list"),
        (["cpu"], TypeError, "jax.Device"),
        (True, TypeError, "devices must be"),
        (2 * jax.devices()[:1], ValueError, "distinct"),
    ],
)
def test_bad_devices_are_refused_by_name(devices, error, message):
    with pytest.raises(error, match=message):
        sharding.resolve_devices(devices)


def test_devices_need_a_jax_method_and_the_estimator_takes_a_count_or_all():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((20, 3, 2)), rng.standard_normal(20)
    problem = cx.convex_program(X, y, kind="scalar", beta=0.3).problem
    with pytest.raises(ValueError, match="devices: method 'cvxpy' runs on the host"):
        solvers.solve(problem, method="cvxpy", devices=1)
    with pytest.raises(ValueError, match="devices must be None, 'all' or a count"):
        cx.ConvexAttention(kind="scalar", solver="cvxpy", devices=1).fit(X, y)
    with pytest.raises(ValueError, match="devices must be None, 'all' or a count"):
        cx.ConvexAttention(kind="scalar", devices=jax.devices()).fit(X, y)
    with pytest.raises(ValueError, match="devices must be a count"):
        cx.ConvexAttention(kind="scalar", devices=0).fit(X, y)
