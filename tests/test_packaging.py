"""Packaging: the installed versions meet the declared minimums, and the extras stay lean."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


@pytest.mark.parametrize("line", PROJECT["dependencies"])
def test_installed_versions_meet_the_declared_minimums(line):
    requirement = Requirement(line)
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (line, installed)


def test_what_the_minimums_promise_exists():
    import jax

    with jax.enable_x64(True):  # the reason for jax >= 0.10
        assert jax.numpy.zeros(1).dtype == jax.numpy.float64


def test_the_test_extra_brings_no_torch_and_no_linter():
    extras = PROJECT["optional-dependencies"]
    names = {Requirement(line).name for line in extras["test"]}
    assert names.isdisjoint({"torch", "transformers", "ruff", "convextx"})
    assert {Requirement(line).name for line in extras["bert"]} == {"torch", "transformers"}
    assert "ruff" in {Requirement(line).name for line in extras["dev"]}


def test_a_convex_solve_imports_no_trainer():
    """``convextx.programs`` reaches the models it needs (``baselines.heads``) without the
    baselines' trainer, optax or the transformer: a cold solve pays only for what it uses."""
    import subprocess
    import sys

    code = (
        "import sys, convextx.programs\n"
        "print(sorted({'optax', 'baselines.train', 'baselines.transformer'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


COLD_SOLVE = """
import sys, jax
jax.config.update("jax_enable_x64", True)
import numpy as np, convextx as cx
rng = np.random.default_rng(0)
X, y = rng.standard_normal((40, 1, 5)), rng.standard_normal(40)
program = cx.convex_program(X, y, kind="gated", beta=0.5, gates=8, dtype="float64")
assert program.solve(method=sys.argv[1], tol=1e-6).status == "optimal"
print(sorted(m for m in ("tqdm", "optax", "cvxpy") if m in sys.modules))
"""
NAMED_SOLVE_FUNCTIONS = {"_draw", "_patterns", "_init_jit", "_advance_jit", "compiled"}


@pytest.mark.parametrize("method", ["fista", "working_set"])
def test_a_cold_solve_compiles_only_named_functions(method):
    """In a new process every compilation costs a trace, a lowering and a cache load (5-90 ms on
    2 CPU cores), so a solve runs no eager device op (each would be one more compilation): a
    FISTA solve of the gated family compiles exactly the gate draw, the patterns, the start and
    the loop, and imports neither tqdm (no progress bar is shown) nor optax nor cvxpy; working
    sets add only certificates ("compiled"): on the CPU they index in numpy."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "JAX_LOG_COMPILES": "1"}
    out = subprocess.run(
        [sys.executable, "-c", COLD_SOLVE, method], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    compiled = re.findall(r"^Compiling jit\((\w+)\)", out.stderr, flags=re.MULTILINE)
    if method == "fista":
        assert compiled == ["_draw", "_patterns", "_init_jit", "_advance_jit"]
    assert set(compiled) <= NAMED_SOLVE_FUNCTIONS, compiled


def test_every_lazy_baselines_name_resolves():
    import baselines

    assert baselines.__all__ == sorted(baselines.__all__)
    for name in baselines.__all__:
        assert getattr(baselines, name) is not None, name
    assert set(baselines.__all__) <= set(dir(baselines))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        baselines.nothing  # noqa: B018
