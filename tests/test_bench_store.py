"""The bench store: runs keyed on their whole configuration, retries, one writer at a time,
duplicates and malformed rows on read, and no command deleting or overwriting what it did not
write. A fake zoo model that fits instantly keeps these tests fast."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from convextx import _store, bench
from convextx.cli import main
from convextx.zoo import base, registry

TINY = {"N_train": 8, "N_test": 4, "n": 2, "d": 2}
TASK_CFG = {"student_teacher": TINY}
CONFIG_FIELDS = {"task", "task_cfg", "model", "model_cfg", "seed", "budget_seconds", "device"}


class Fake(base.Model):
    """Fits nothing, outputs zeros (label 0); ``failing`` makes every fit raise, ``calls`` logs
    fits."""

    calls: list = []
    failing = False

    def __init__(self, *, name="fake", beta=1.0, width=2, seed=0, progress=False):
        super().__init__(name)
        self.beta, self.width, self.seed, self.progress = beta, width, seed, progress

    def validate(self):
        if self.width % 2:
            raise ValueError(f"width must be even; got {self.width}")

    def _fit(self, task, budget_seconds):
        type(self).calls.append((task.name, task.metadata["config"], self.seed, self.beta))
        if type(self).failing:
            raise RuntimeError("boom")

    def decision_function(self, inputs):
        classes = (self.num_classes_,) if self.integer_targets_ else ()
        return np.zeros((len(inputs), *self.target_shape_, *classes))

    def attention_maps(self):
        return {}

    def _summary(self):
        history = {"time": [0.0, 1e-3], "objective": [2.0 * self.beta, self.beta]}
        return {
            "objective": self.beta,
            "objective_terms": base.LOSS_TERMS,
            "parameters": 1,
            "history": history,
        }


@pytest.fixture
def fake(monkeypatch):
    """The zoo with a "fake" entry; returns the list of its fits."""
    calls = []
    monkeypatch.setattr(Fake, "calls", calls)
    monkeypatch.setattr(Fake, "failing", False)
    monkeypatch.setitem(registry._ENTRIES, "fake", (Fake, {}))
    return calls


@pytest.fixture
def no_fit(monkeypatch):
    """Fails the test if any model is fitted."""

    def fit(self, task, budget_seconds=None):
        raise AssertionError(f"{self.name} was fitted")

    monkeypatch.setattr(base.Model, "fit", fit)


def _grid(out, seeds=(0,), **kwargs):
    kwargs.setdefault("task_cfg", TASK_CFG)
    return bench.run(["student_teacher"], ["fake"], list(seeds), out, progress=False, **kwargs)


def _board_lines(out):
    board = (out / bench.LEADERBOARD_FILE).read_text()
    return [line for line in board.splitlines() if line.startswith("| student_teacher ")]


# ---------------------------------------------------------------- keyed on the whole config


def _other_task_settings(monkeypatch):
    return {"task_cfg": {"student_teacher": {**TINY, "noise": 0.1}}}


def _other_model_settings(monkeypatch):
    return {"model_cfg": {"fake": {"beta": 2.0}}}


def _a_budget(monkeypatch):
    return {"budget_seconds": 30}


def _another_version(monkeypatch):
    monkeypatch.setattr(_store, "package_version", lambda: "99.0")
    return {}


@pytest.mark.parametrize(
    "change", [_other_task_settings, _other_model_settings, _a_budget, _another_version]
)
def test_another_configuration_is_computed_and_the_old_one_ignored(
    tmp_path, fake, monkeypatch, change
):
    assert _grid(tmp_path).ran == 1
    kwargs = change(monkeypatch)
    second = _grid(tmp_path, **kwargs)
    assert (second.ran, second.skipped, second.ignored) == (1, 0, 1)
    assert len(fake) == 2
    (row,) = second.rows
    assert row["key"] == _store.config_key(row["config"])
    assert _board_lines(tmp_path) == [_board_lines(tmp_path)[0]]  # the new configuration only
    third = _grid(tmp_path, **kwargs)
    assert (third.ran, third.skipped, third.ignored) == (0, 1, 1) and len(fake) == 2


def test_the_key_covers_the_whole_configuration_but_display_settings(tmp_path, fake):
    (row,) = _grid(tmp_path, model_cfg={"fake": {"progress": True}}).rows
    config = row["config"]
    assert set(config) == CONFIG_FIELDS | {"version"}
    assert config["version"] == _store.package_version() != ""
    assert config["device"] == "cpu" and config["model_cfg"] == {}  # progress shows, no more
    assert _store.config_key({**config, "device": "gpu"}) != row["key"]
    assert _store.config_key(dict(reversed(config.items()))) == row["key"]  # canonical JSON
    assert _grid(tmp_path).ran == 0  # progress off: the same run


def test_the_cli_says_how_many_stored_runs_it_ignored(tmp_path, fake, capsys):
    argv = ["bench", "--tasks", "student_teacher", "--models", "fake", "--out", str(tmp_path)]
    argv += ["--task-cfg", json.dumps(TASK_CFG), "--no-progress"]
    assert main(argv) == 0
    assert main([*argv, "--budget", "30"]) == 0
    text = capsys.readouterr().out
    assert "1 runs computed, 0 found" in text
    assert "1 stored runs of other configurations ignored" in text


# ---------------------------------------------------------------- checked before the grid


@pytest.mark.parametrize(
    ("models", "kwargs", "error", "match"),
    [
        (
            ["fake"],
            {"budget_seconds": -5},
            ValueError,
            "budget_seconds must be a finite number > 0",
        ),
        (["convex-fista"], {"model_cfg": {"convex-fista": {"beta": -1}}}, ValueError, "'beta'"),
        (["simplex-adam"], {"model_cfg": {"simplex-adam": {"steps": -1}}}, ValueError, "'steps'"),
        (
            ["simplex-adam"],
            {"model_cfg": {"simplex-adam": {"learning_rate": 0}}},
            ValueError,
            "'learning_rate' must be a finite number > 0",
        ),
        (
            ["convex-fista"],
            {"model_cfg": {"convex-fista": {"max_iter": 0}}},
            ValueError,
            "'max_iter'",
        ),
        (["convex-fista"], {"model_cfg": {"convex-fista": {"tol": -1e-6}}}, ValueError, "'tol'"),
        (["fake"], {"model_cfg": {"fake": {"width": 3}}}, ValueError, "width must be even"),
        (
            ["fake"],
            {"task_cfg": {"student_teacher": {**TINY, "sise": 3}}},
            TypeError,
            r"task 'student_teacher'.*unknown settings \['sise'\]",
        ),
        (
            ["fake"],
            {"task_cfg": {"student_teacher": {**TINY, "N_train": 0}}},
            ValueError,
            r"N_train must be an integer in \[1, inf\)",
        ),
    ],
)
def test_bad_arguments_fail_before_any_run(tmp_path, fake, no_fit, models, kwargs, error, match):
    # modular comes first in the grid: a late check would have fitted (and stored) it already
    task_cfg = {"modular": {"p": 5}, **kwargs.pop("task_cfg", TASK_CFG)}
    grid = (["modular", "student_teacher"], models, [0, 1], tmp_path)
    with pytest.raises(error, match=match):
        bench.run(*grid, task_cfg=task_cfg, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_refuses_bad_arguments_before_the_grid(tmp_path, no_fit, capsys):
    argv = ["bench", "--tasks", "student_teacher", "--models", "convex-fista"]
    argv += ["--out", str(tmp_path), "--no-progress"]
    assert main([*argv, "--model-cfg", '{"convex-fista": {"beta": -1}}']) == 2
    err = capsys.readouterr().err
    assert err.startswith("convextx bench: error: model 'convex-fista': setting 'beta' must be")
    assert err.count("\n") == 1 and not (tmp_path / bench.RUNS_FILE).exists()


# ---------------------------------------------------------------- retries, fresh, duplicates


def test_a_failed_run_is_retried_and_its_result_replaces_the_failure(tmp_path, fake):
    Fake.failing = True
    (failed,) = _grid(tmp_path).rows
    assert failed["error"] == "RuntimeError: boom"
    Fake.failing = False
    retried = _grid(tmp_path)
    assert (retried.ran, retried.retried, retried.skipped) == (1, 1, 0) and len(fake) == 2
    (row,) = retried.rows
    assert "error" not in row and row["key"] == failed["key"]
    assert "Failed runs" not in (tmp_path / bench.LEADERBOARD_FILE).read_text()
    assert [("error" in r) for r in bench.read_runs(tmp_path / bench.RUNS_FILE)] == [True, False]
    assert _grid(tmp_path).ran == 0 and len(fake) == 2


def test_fresh_recomputes_and_keeps_the_stored_runs(tmp_path, fake):
    _grid(tmp_path)
    runs = tmp_path / bench.RUNS_FILE
    before = runs.read_bytes()
    fresh = _grid(tmp_path, resume=False)
    assert (fresh.ran, fresh.skipped, len(fresh.rows)) == (1, 0, 1) and len(fake) == 2
    assert runs.read_bytes().startswith(before)
    assert len(bench.read_runs(runs)) == 2


def test_a_store_written_twice_counts_each_configuration_once(tmp_path, fake):
    _grid(tmp_path, seeds=[0, 1])
    runs = tmp_path / bench.RUNS_FILE
    runs.write_text(runs.read_text() * 2)  # two processes that both ran the grid
    again = _grid(tmp_path, seeds=[0, 1])
    assert (again.ran, again.skipped, len(again.rows)) == (0, 2, 2)
    (line,) = _board_lines(tmp_path)
    assert line.startswith("| student_teacher | fake | 2 |")


HOLD_LOCK = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write(str(os.getpid())); f.flush()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_bench_on_the_folder_fails_fast_naming_the_lock(tmp_path, fake):
    lock = tmp_path / _store.LOCK_FILE
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_LOCK), str(lock)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(bench.BenchError, match=rf"\.lock is held .*pid {holder.pid}"):
            _grid(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert fake == [] and not (tmp_path / bench.RUNS_FILE).exists()
    assert _grid(tmp_path).ran == 1  # released with its process


# ---------------------------------------------------------------- malformed stored rows


@pytest.mark.parametrize(
    "line",
    [
        "[1, 2]",
        '"a string"',
        '{"task": "x"}',
        '{"task": "student_teacher", "model": "fake", "seed": "0", "error": "e"}',
        '{"task": "student_teacher", "model": "fake", "seed": 0, "key": 5, "error": "e"}',
        '{"task": "student_teacher", "model": "fake", "seed": 0, "metric": "r2"}',
    ],
)
def test_a_stored_line_of_the_wrong_shape_is_skipped_with_a_warning(tmp_path, fake, line):
    _grid(tmp_path)
    runs = tmp_path / bench.RUNS_FILE
    runs.write_text(runs.read_text() + line + "\n")
    with pytest.warns(UserWarning, match=rf"{runs}:2: skipping a malformed run"):
        again = _grid(tmp_path)
    assert (again.ran, again.skipped, again.ignored) == (0, 1, 0)


# ---------------------------------------------------------------- nothing lost


def _bench_store(folder):
    folder.mkdir()
    row = {"task": "digits", "model": "gss", "seed": 0, "error": "E: x", "writer": "bench"}
    (folder / bench.RUNS_FILE).write_text(json.dumps(row) + "\n")


def _lone_leaderboard(folder):
    folder.mkdir()
    (folder / bench.LEADERBOARD_FILE).write_text("my notes\n")


def _lone_plot(folder):
    folder.mkdir()
    (folder / bench.METRIC_PLOT).write_bytes(b"\x89PNG mine")


def _runs_without_writer(folder):
    folder.mkdir()
    row = {"task": "digits", "model": "gss", "seed": 0, "error": "E: x"}  # an earlier convextx
    (folder / bench.RUNS_FILE).write_text(json.dumps(row) + "\n")


@pytest.mark.parametrize(
    "foreign", [_bench_store, _lone_leaderboard, _lone_plot, _runs_without_writer]
)
def test_the_demo_refuses_a_folder_it_did_not_write(tmp_path, no_fit, foreign, capsys):
    folder = tmp_path / "results"
    foreign(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(bench.BenchError, match="`convextx demo` did not write"):
        bench.demo(folder, progress=False)
    assert main(["demo", "--out", str(folder), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convextx demo: error: ") and "--force" in err
    assert err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"} == before


@pytest.fixture
def fake_demo(fake, monkeypatch):
    """The demo with the fake model in place of its three."""
    monkeypatch.setattr(bench, "DEMO_MODELS", ("fake",))
    monkeypatch.setattr(bench, "demo_settings", lambda quick, progress: {"fake": {}})
    return fake


def test_the_demo_reruns_in_its_own_folder_and_force_keeps_foreign_runs(
    tmp_path, fake_demo, capsys
):
    own = tmp_path / "convextx-demo"
    assert main(["demo", "--out", str(own), "--no-progress"]) == 0
    assert main(["demo", "--out", str(own), "--no-progress"]) == 0  # its own files: no --force
    assert len(fake_demo) == 2
    assert [r["writer"] for r in bench.read_runs(own / bench.RUNS_FILE)] == ["demo", "demo"]
    assert capsys.readouterr().out.count("fake ") == 2  # the table, each time

    foreign = tmp_path / "bench"
    _bench_store(foreign)
    before = (foreign / bench.RUNS_FILE).read_bytes()
    result = bench.demo(foreign, progress=False, force=True)
    assert [r["model"] for r in result.rows] == ["fake"]
    assert (foreign / bench.RUNS_FILE).read_bytes().startswith(before)


def test_a_bench_refuses_a_leaderboard_without_runs_unless_forced(tmp_path, fake):
    _lone_leaderboard(tmp_path / "out")
    with pytest.raises(bench.BenchError, match=r"holds \['leaderboard.md'\]"):
        _grid(tmp_path / "out")
    assert (tmp_path / "out" / bench.LEADERBOARD_FILE).read_text() == "my notes\n"
    assert fake == []
    assert _grid(tmp_path / "out", force=True).ran == 1


def test_a_bench_adds_to_the_demo_folder(tmp_path, fake_demo):
    bench.demo(tmp_path, progress=False)
    assert _grid(tmp_path).ran == 1
    writers = [r["writer"] for r in bench.read_runs(tmp_path / bench.RUNS_FILE)]
    assert writers == ["demo", "bench"]


def test_an_out_that_is_a_file_is_refused_before_any_run(tmp_path, no_fit):
    path = tmp_path / "results"
    path.write_text("mine")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        bench.run(["digits"], ["gss"], [0], path / "sub")
    assert path.read_text() == "mine"


def test_files_are_replaced_atomically(tmp_path, fake):
    target = tmp_path / "board.md"
    target.write_text("old")
    with pytest.raises(RuntimeError), _store.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    _store.write_text(target, "new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]

    result = _grid(tmp_path / "out")
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {p.name for p in result.files} | {_store.LOCK_FILE}  # no temporaries left


def test_the_cli_warns_of_a_malformed_stored_line_on_one_line(tmp_path, fake, capsys):
    argv = ["bench", "--tasks", "student_teacher", "--models", "fake", "--out", str(tmp_path)]
    argv += ["--task-cfg", json.dumps(TASK_CFG), "--no-progress"]
    assert main(argv) == 0
    with (tmp_path / bench.RUNS_FILE).open("a") as f:
        f.write('{"task": "x"}\n')
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    prefix = f"convextx bench: warning: {tmp_path / bench.RUNS_FILE}:2: skipping a malformed run"
    assert err.startswith(prefix) and err.count("\n") == 1
