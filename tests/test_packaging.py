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
