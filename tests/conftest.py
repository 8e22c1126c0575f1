"""Test-wide settings: float64, so optima can be compared to 1e-6 relative."""

import jax

jax.config.update("jax_enable_x64", True)
