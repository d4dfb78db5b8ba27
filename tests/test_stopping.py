"""How ``tuner launch`` stops: SIGTERM as Ctrl-C, a killed launcher's workers, workers stopped
behind its back, a Ctrl-C while the workers import, and a SQLite file deleted under it."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers import REPO, run_rows, write_study
from tuner.storage.engine import reader_engine

pytestmark = pytest.mark.e2e

SLOW = {"task": {"name": "mlp", "options": {"hidden_sizes": [64]}}, "trials": 20, "budget": {"epochs": 8}}
"""Trials of a few hundred ms each: a launch that runs long enough to be stopped on purpose."""


def start(study: Path, cwd: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tuner", "launch", str(study), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, **kwargs)


def children(pid: int) -> list[int]:
    """The worker processes of launcher ``pid`` (not multiprocessing's resource tracker)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits to be read


def wait_for_runs(url: str, name: str, at_least: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.3)
        try:
            engine = reader_engine(url)
            try:
                finished = len(run_rows(engine, name))
            finally:
                engine.dispose()
        except Exception:  # the database or its tables may not exist yet
            continue
        if finished >= at_least:
            return finished
    raise AssertionError(f"the launch made no progress: {process.poll()}")


def running_launch(tmp_path: Path, name: str, runs: int, **changes) -> tuple[subprocess.Popen, str, list[int]]:
    """A two-worker launch of the SLOW study ``name`` once ``runs`` runs are stored: the launcher, its
    database URL and its workers."""
    study = write_study(tmp_path, name=name, **{**SLOW, **changes})
    url = f"sqlite:///{tmp_path}/tuner.db"
    process = start(study, tmp_path, "--workers", "2")
    wait_for_runs(url, name, runs, process)
    return process, url, children(process.pid)


def trial_states(url: str) -> list[str]:
    engine = reader_engine(url)
    try:
        with engine.connect() as conn:
            return [str(s) for s in conn.execute(text("SELECT state FROM trials")).scalars()]
    finally:
        engine.dispose()


def test_sigterm_stops_the_launch_as_ctrl_c_does(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "termed", 3)
    assert len(workers) >= 2, workers
    process.terminate()  # kill PID, timeout, docker stop
    out, err = process.communicate(timeout=90)
    assert process.returncode == 143, out + err
    assert "stopped. Finished trials are kept; run the same command again to resume." in out
    assert "Traceback" not in err, err
    assert not [pid for pid in workers if alive(pid)], "workers outlived the launcher"
    assert "RUNNING" not in trial_states(url)
    assert all(row["kind"] == "trial" for row in run_rows(reader_engine(url), "termed")), "re-evaluated early"


def test_workers_of_a_killed_launcher_stop_by_themselves(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "orphaned", 2)
    process.kill()
    process.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while [pid for pid in workers if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)], "the workers of a killed launcher run on"
    assert "RUNNING" not in trial_states(url), "an orphaned worker left its trial RUNNING"


def test_workers_stopped_behind_the_launchers_back_do_not_count_as_done(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "short", 2)
    for pid in workers:
        os.kill(pid, signal.SIGTERM)  # a worker stopped alone exits 0, as when it is done
    out, err = process.communicate(timeout=90)
    assert process.returncode == 1, out + err
    assert "nothing is re-evaluated yet: run the same command again to resume" in out
    assert "best configuration" not in out and "Traceback" not in err, out + err
    assert all(row["kind"] == "trial" for row in run_rows(reader_engine(url), "short"))


def test_ctrl_c_while_the_workers_start_prints_no_traceback(tmp_path: Path) -> None:
    study = write_study(tmp_path, name="early", **SLOW)
    process = start(study, tmp_path, "--workers", "2")
    deadline = time.monotonic() + 60
    while not (tmp_path / "tuner.db").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    while len(children(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_a_database_file_deleted_under_the_launch_stops_it(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "deleted", 2)
    for path in tmp_path.glob("tuner.db*"):
        path.unlink()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert re.search(r"the database file was (deleted|replaced) while tuner used it; results written since went "
                     "into the old file; tuner stopped", out) and "Traceback" not in err, out + err
    assert not [pid for pid in workers if alive(pid)]


def test_a_database_file_replaced_under_the_launch_keeps_what_was_moved_in(tmp_path: Path) -> None:
    """``mv other.db tuner.db``: the old file's journal must not be replayed into the new one."""
    other = tmp_path / "other.db"
    assert subprocess.run([sys.executable, "-m", "tuner", "launch", str(write_study(tmp_path, name="kept")),
                           "--workers", "0", "--storage", f"sqlite:///{other}"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True).returncode == 0
    process, url, _ = running_launch(tmp_path, "replaced", 2)
    os.replace(other, tmp_path / "tuner.db")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "the database file was replaced while tuner used it" in out, out + err
    assert "Traceback" not in err and (tmp_path / "tuner.db-wal.stale").exists(), out + err
    engine = reader_engine(url)
    try:
        assert [row["kind"] for row in run_rows(engine, "kept")] == [] and not run_rows(engine, "replaced")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM tuner_experiments")).scalars().all() == ["kept"]
    finally:
        engine.dispose()


def test_a_worker_whose_database_file_is_deleted_stops_and_says_so(tmp_path: Path) -> None:
    study = write_study(tmp_path, name="gone", **SLOW)
    url = f"sqlite:///{tmp_path}/tuner.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-m", "tuner", "launch", str(study), "--workers", "0"], cwd=tmp_path,
                          env=env, capture_output=True).returncode == 0
    worker = subprocess.Popen([sys.executable, "-m", "tuner", "worker", "--experiment", "gone"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_runs(url, "gone", 2, worker)
    for path in tmp_path.glob("tuner.db*"):
        path.unlink()
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 2 and "the database file was deleted while tuner used it" in err, out + err
    assert "worker done" not in out and "Traceback" not in err


def test_sighup_stops_the_launch_as_sigterm_does(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "hungup", 2)
    os.killpg(process.pid, signal.SIGHUP)  # the terminal closed: its whole process group
    out, err = process.communicate(timeout=90)
    assert process.returncode == 129 and "stopped. Finished trials are kept" in out, out + err
    assert "Traceback" not in err and not [pid for pid in workers if alive(pid)]
    assert "RUNNING" not in trial_states(url)


def test_a_launch_whose_work_is_done_despite_a_killed_worker_is_done(tmp_path: Path) -> None:
    process, url, workers = running_launch(tmp_path, "survived", 2, trials=6)
    os.kill(workers[0], signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err
    assert "1 worker(s) exited with an error (exit codes [-9])" in out and "the budget is met and every" in out
    assert "best configuration per optimizer" in out
