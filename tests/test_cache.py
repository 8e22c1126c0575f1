"""solvers.cache: JAX's persistent compilation cache is on by default, in a private folder, and
the environment switch turns it off."""

import os
import stat
import subprocess
import sys

SOLVE = """
import jax, numpy as np, solvers
jax.config.update("jax_enable_x64", True)
X = jax.numpy.asarray(np.random.default_rng(0).standard_normal((30, 3, 2)))
y = jax.numpy.asarray(np.random.default_rng(1).standard_normal(30))
prob = solvers.Problem(lambda z: jax.numpy.einsum("ikq,kq->i", X, z), (3, 2),
                       solvers.SquaredLoss(y), solvers.GroupL2(1.0))
print(solvers.solve(prob, tol=1e-8).status, jax.config.jax_enable_compilation_cache)
"""


def run(tmp_path, **env):
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env}
    if not env:
        environment.pop("CONVEXTX_COMPILATION_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", SOLVE], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_cache_is_on_by_default_in_a_private_folder(tmp_path):
    assert run(tmp_path) == ["optimal", "True"]
    folder = tmp_path / "xdg" / "convextx" / "jax"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert any(folder.iterdir())  # the compiled solver loop was written


def test_the_environment_chooses_the_folder_or_turns_it_off(tmp_path):
    assert run(tmp_path, CONVEXTX_COMPILATION_CACHE=str(tmp_path / "mine")) == ["optimal", "True"]
    assert any((tmp_path / "mine").iterdir()) and not (tmp_path / "xdg").exists()
    assert run(tmp_path, CONVEXTX_COMPILATION_CACHE="0") == ["optimal", "False"]
    assert not (tmp_path / "xdg").exists()


def test_compilation_cache_none_turns_it_off():
    import jax

    import solvers

    folder = jax.config.jax_compilation_cache_dir
    try:
        assert solvers.compilation_cache(None) is None
        assert not jax.config.jax_enable_compilation_cache
    finally:
        if folder:
            solvers.compilation_cache(folder)
