"""experiments.linear_recall runs end to end (quick size) and reports every cell."""

import pytest

from experiments import _common, linear_recall


def test_quick_run_writes_every_cell_and_a_table(tmp_path, capsys):
    out = tmp_path / "recall.json"
    linear_recall.main(["--quick", "--out", str(out)])
    cells = _common.read_json(out)["cells"]
    assert [(c["task"], c["model"]) for c in cells] == [
        ("needle", "convex-linear"),
        ("needle", "linear-adam"),
    ]
    convex = next(c for c in cells if c["task"] == "needle" and c["model"] == "convex-linear")
    assert convex["status"] == "optimal" and convex["relative_gap"] <= 1e-6
    assert all(c.get("error") is None for c in cells)
    assert "| needle | 4 |" in capsys.readouterr().out


def test_a_program_over_the_size_limit_is_reported_not_built(tmp_path):
    out = tmp_path / "recall.json"
    linear_recall.main(["--quick", "--out", str(out), "--max-entries", "10"])
    cells = _common.read_json(out)["cells"]
    assert {c["status"] for c in cells if c["model"] == "convex-linear"} == {"too large"}


def test_the_twin_over_its_activation_limit_is_reported_not_trained(tmp_path):
    out = tmp_path / "recall.json"
    linear_recall.main(["--quick", "--out", str(out), "--max-twin-entries", "10"])
    status = {c["model"]: c["status"] for c in _common.read_json(out)["cells"]}
    assert status == {"convex-linear": "optimal", "linear-adam": "too large"}


def test_cells_and_models_select_part_of_the_grid(tmp_path):
    out = tmp_path / "some.json"
    linear_recall.main(
        ["--quick", "--out", str(out), "--cells", "needle:5", "--models", "convex-linear"]
    )
    cells = _common.read_json(out)["cells"]
    assert [(c["task"], c["size"], c["model"]) for c in cells] == [("needle", 5, "convex-linear")]


def test_a_bad_cell_is_refused():
    with pytest.raises(SystemExit):
        linear_recall.main(["--quick", "--cells", "needle:0"])
