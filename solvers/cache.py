"""JAX's persistent compilation cache, on by default, so a new process does not recompile.

A solve's first call in a fresh process is mostly XLA compilation (measured: 1.8 s of a 2.3 s
cold FISTA solve on P2 digits, 2 CPU cores); with the cache, a later process loads the compiled
loop from disk (that solve: 0.57 s cold). ``import solvers`` turns the cache on in a per-user
folder, unless

- the environment variable ``CONVEXTX_COMPILATION_CACHE`` is ``0``, ``off`` or ``false``
  (off) or a folder (used instead of the default), or
- JAX already has a cache folder (``jax_compilation_cache_dir`` set by the user: kept).

The default folder is ``$XDG_CACHE_HOME/convextx/jax`` (``~/.cache/convextx/jax``), created
readable by the user alone: JAX trusts what its cache holds, so it must not be writable by
others. ``compilation_cache(None)`` turns it off for the rest of the process.

Note that the setting is JAX's, process-wide: other JAX code in the process is cached there too.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENVIRONMENT = "CONVEXTX_COMPILATION_CACHE"
OFF = ("0", "off", "false", "no")
# Every compilation is cached, the small ones too: JAX's default (1 s) and a 0.1 s floor left
# the dozens of small functions of a working-set solve (20-40 ms each) compiling in every new
# process (measured: 0.86 s of a 1.7 s cold solve, 1e4 variables; 0.74-0.86 s in all with
# every one cached, for 36 entries and 348 KB on disk).
MIN_COMPILE_SECONDS = 0.0


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/convextx/jax``, or ``~/.cache/convextx/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convextx" / "jax"


def compilation_cache(folder: str | os.PathLike | None) -> Path | None:
    """Cache JAX compilations in ``folder`` (created, mode 0o700), or turn the cache off with
    None. Returns the folder in use."""
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(folder).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path


def configure_from_environment() -> Path | None:
    """The import-time default (module docstring)."""
    setting = os.environ.get(ENVIRONMENT, "").strip()
    if setting.lower() in OFF:
        return compilation_cache(None)
    if jax.config.jax_compilation_cache_dir and not setting:
        return Path(jax.config.jax_compilation_cache_dir)
    try:
        return compilation_cache(setting or default_folder())
    except OSError:  # a read-only home: run without the cache rather than fail to import
        return None
