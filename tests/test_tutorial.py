"""experiments/tutorial.py runs end to end as written (CI executes it)."""

import re

from experiments import tutorial


def test_the_tutorial_runs_and_its_claims_hold(tmp_path, capsys):
    tutorial.main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "1. status optimal" in printed
    network, convex = map(
        float, re.search(r"network objective (\S+) vs convex (\S+)", printed).groups()
    )
    assert abs(network - convex) <= 1e-6 * convex
    assert re.search(r"cross-validated beta \S+ \(mean CV accuracy 0\.9", printed)
    excess = float(re.search(r"certified excess <= (\S+)", printed).group(1))
    assert excess >= 0
    for name in (
        "runs.jsonl",
        "leaderboard.md",
        "objective_digits.png",
        "suboptimality_digits.png",
    ):
        assert (tmp_path / name).is_file()
