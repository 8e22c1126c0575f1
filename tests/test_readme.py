"""The README's Python examples run as written and print what the README says they print."""

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run(source: str) -> tuple[dict, str]:
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(README), "exec"), namespace)  # noqa: S102 - our own README
    return namespace, out.getvalue()


def block(marker: str) -> str:
    (source,) = [b for b in BLOCKS if marker in b]
    return source


def test_the_solvers_example_runs_and_matches_cvxpy():
    namespace, printed = run(block("import solvers"))
    res, prob, solvers = namespace["res"], namespace["prob"], namespace["solvers"]
    assert printed.split()[0] == "optimal" and res.status == "optimal"
    exact = solvers.solve(prob, method="cvxpy", tol=1e-8)
    assert res.objective == pytest.approx(exact.objective, rel=1e-7)
    assert repr(res.objective).startswith("25.9398665944")  # the value the README quotes


def test_the_api_example_runs_and_its_network_matches_the_optimum():
    namespace, printed = run(block("import convextx as cx"))
    est = namespace["est"]
    lines = printed.splitlines()
    assert lines[0].startswith("optimal") and est.status_ == "optimal"
    assert float(lines[-1]) == pytest.approx(est.objective_, rel=1e-6)
