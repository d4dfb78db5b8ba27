"""Scale-out under faults on real servers (PostgreSQL and MariaDB): many workers, a killed worker,
a restarted server, two launches at once, hostile names. Each test makes its own database."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from tests.conftest import server_to_itself
from tests.helpers import REPO, check_consistent, run_rows, tuner, write_study
from tuner.storage.engine import reader_engine

pytestmark = pytest.mark.e2e

FAST_HEARTBEAT = {"TUNER_HEARTBEAT_INTERVAL": "1", "TUNER_GRACE_PERIOD": "3"}
SLOW_TRIALS = {  # ~0.7 s a trial, none diverging: long enough to be caught in flight
    "task": {"name": "mlp", "options": {"hidden_sizes": [256]}}, "budget": {"epochs": 25},
    "optimizers": [{"name": "sgd", "space": {"batch_size": 8, "lr": 0.01}},
                   {"name": "adam", "space": {"batch_size": 8, "lr": 0.001}}],
}


def start_worker(url: str, name: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **FAST_HEARTBEAT, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tuner", "worker", "--experiment", name, "--storage", url],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def create(url: str, tmp_path: Path, **study) -> str:
    path = write_study(tmp_path, **study)
    result = tuner("launch", str(path), "--workers", "0", "--storage", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return study["name"]


def finish(workers: list[subprocess.Popen], timeout: float = 300) -> None:
    for w in workers:
        out, err = w.communicate(timeout=timeout)
        assert w.returncode == 0, "\n".join(err.splitlines()[-12:])


def summary(counts: dict) -> dict[str, int]:
    """Optuna states summed over the studies."""
    return dict(sum(counts.values(), Counter()))


def running_trials(url: str) -> list[int]:
    engine = reader_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT trial_id FROM trials WHERE state = 'RUNNING'")).scalars().all()
    engine.dispose()
    return ids


def worker_in_a_trial(url: str, name: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """A worker started on the experiment, once it runs a trial; and that trial's id."""
    worker = start_worker(url, name, cwd)
    deadline = time.monotonic() + 60
    while not (running := running_trials(url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running, "no trial started"
    return worker, running[0]


def test_four_workers_complete_an_experiment(server_url, tmp_path) -> None:
    name = create(server_url, tmp_path, name="four", trials=6)
    finish([start_worker(server_url, name, tmp_path) for _ in range(4)])
    counts = check_consistent(reader_engine(server_url), name, workers=4)
    assert len(counts) == 4 and all(c["COMPLETE"] + c["PRUNED"] >= 6 for c in counts.values())
    print(f"four workers: per study {[c['COMPLETE'] + c['PRUNED'] for c in counts.values()]}, states {summary(counts)}")


def test_a_killed_worker_s_trial_is_failed_and_retried(server_url, tmp_path) -> None:
    name = create(server_url, tmp_path, name="killed", trials=4, samplers=["random"], **SLOW_TRIALS)
    victim, killed = worker_in_a_trial(server_url, name, tmp_path)
    before = len(run_rows(reader_engine(server_url), name))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish([start_worker(server_url, name, tmp_path) for _ in range(2)])
    engine = reader_engine(server_url)
    counts = check_consistent(engine, name, workers=2)
    params = "SELECT param_name, param_value FROM trial_params WHERE trial_id = :id"
    with engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM trials WHERE trial_id = :id"), {"id": killed}).scalar()
        retry_id, retry_state = conn.execute(text(  # Optuna's retry names the failed trial by its number
            "SELECT t.trial_id, t.state FROM trials t JOIN trial_system_attributes a ON a.trial_id = t.trial_id "
            "JOIN trials k ON k.study_id = t.study_id AND a.value_json = CAST(k.number AS CHAR(12)) "
            "WHERE a.key = 'failed_trial' AND k.trial_id = :id"), {"id": killed}).one()
        assert dict(conn.execute(text(params), {"id": retry_id}).all()) == dict(
            conn.execute(text(params), {"id": killed}).all())  # the same configuration, run again
    retry_state = str(retry_state).rsplit(".", 1)[-1]
    assert str(state).endswith("FAIL") and retry_state in ("COMPLETE", "PRUNED")  # finished (PRUNED: diverged)
    print(f"killed: trial {killed} FAIL, retried as {retry_id} {retry_state}; runs {before} before the kill, "
          f"{len(run_rows(engine, name))} after; Optuna states {summary(counts)}")


def test_a_killed_worker_s_population_is_failed_and_retried(server_url, tmp_path) -> None:
    """Every trial of the population a killed worker trained is failed once its heartbeats stop,
    and each is retried with its configuration; a live population outlasting the grace period
    (3 s here) keeps beating and is not failed."""
    name = create(server_url, tmp_path, name="killed-population", trials=3, samplers=["random"],
                  population=3, **{**SLOW_TRIALS, "budget": {"epochs": 60}})  # ~5 s a population
    victim = start_worker(server_url, name, tmp_path)

    def population() -> list[int]:
        deadline = time.monotonic() + 60
        while len(running := running_trials(server_url)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(running) == 3, running
        return running

    first = population()
    time.sleep(4.0)  # past the grace period: the population's own heartbeats keep it alive
    with reader_engine(server_url).connect() as conn:
        states = conn.execute(text("SELECT state FROM trials WHERE trial_id IN :ids").bindparams(
            bindparam("ids", expanding=True)), {"ids": first}).scalars().all()
    assert not [s for s in states if str(s).endswith("FAIL")], f"a live population was failed: {states}"
    running = population()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish([start_worker(server_url, name, tmp_path) for _ in range(2)])
    engine = reader_engine(server_url)
    # Optuna fails the stale trials, then queues their retries: a worker reserving in between sees the
    # budget free and takes a population of new trials (a lone trial's race overshoots by one)
    check_consistent(engine, name, workers=2, overshoot=3)
    params = "SELECT param_name, param_value FROM trial_params WHERE trial_id = :id"
    with engine.connect() as conn:
        for killed in running:
            state = conn.execute(text("SELECT state FROM trials WHERE trial_id = :id"), {"id": killed}).scalar()
            assert str(state).endswith("FAIL"), (killed, state)
            retry_id = conn.execute(text(
                "SELECT t.trial_id FROM trials t JOIN trial_system_attributes a ON a.trial_id = t.trial_id "
                "JOIN trials k ON k.study_id = t.study_id AND a.value_json = CAST(k.number AS CHAR(12)) "
                "WHERE a.key = 'failed_trial' AND k.trial_id = :id"), {"id": killed}).scalar_one()
            assert dict(conn.execute(text(params), {"id": retry_id}).all()) == dict(
                conn.execute(text(params), {"id": killed}).all())


def restart_command(server: str) -> Callable[[], None]:
    """How to restart this machine's local server of that kind, as an operator would; skip without one."""
    if os.geteuid() != 0:
        pytest.skip("restarting a database server needs root")
    if server == "postgres" and Path("/etc/postgresql").exists():
        cluster = os.listdir("/etc/postgresql")[0]
        return lambda: subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                                      check=True, capture_output=True)
    if server == "mariadb" and Path("/usr/sbin/mariadbd").exists():
        return restart_mariadb
    pytest.skip(f"no local {server} server to restart")


def restart_mariadb() -> None:
    admin = ["mysqladmin", "-h", "127.0.0.1", "-u", "root"]
    subprocess.run([*admin, "shutdown"], check=True, capture_output=True)
    while subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode == 0:
        time.sleep(0.1)
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
                   check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while subprocess.run([*admin, "status"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "MariaDB did not come back"
        time.sleep(0.2)


def test_workers_carry_on_when_the_server_restarts(server_url, request, tmp_path) -> None:
    restart = restart_command(request.node.callspec.params["server_url"])
    name = create(server_url, tmp_path, name="restart", trials=5, samplers=["random"], **SLOW_TRIALS)
    workers = [start_worker(server_url, name, tmp_path) for _ in range(2)]
    deadline = time.monotonic() + 90
    while len(run_rows(reader_engine(server_url), name)) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    before = {r["id"] for r in run_rows(reader_engine(server_url), name)}
    with server_to_itself(request.node.callspec.params["server_url"]):  # no other test loses its connection
        restart()
    finish(workers)
    engine = reader_engine(server_url)
    counts = check_consistent(engine, name, workers=2)
    after = {r["id"] for r in run_rows(engine, name)}
    assert before <= after, "a finished trial was lost"
    print(f"restart: {len(before)} runs before, {len(after)} after; Optuna states {summary(counts)}")


def test_two_launches_of_the_same_file_at_once_make_one_experiment(server_url, tmp_path) -> None:
    path = write_study(tmp_path, name="twice")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launches = [subprocess.Popen([sys.executable, "-m", "tuner", "launch", str(path), "--workers", "0", "--storage",
                                  server_url], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    for launch in launches:
        out, err = launch.communicate(timeout=120)
        assert launch.returncode == 0, "\n".join(err.splitlines()[-6:])
    engine = reader_engine(server_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM tuner_experiments")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM tuner_studies")).scalar() == 4
        assert conn.execute(text("SELECT COUNT(*) FROM studies")).scalar() == 4


def test_sigterm_abandons_the_trial_cleanly_and_the_worker_exits(server_url, tmp_path) -> None:
    name = create(server_url, tmp_path, name="terminated", trials=3, samplers=["random"], **SLOW_TRIALS)
    worker, abandoned = worker_in_a_trial(server_url, name, tmp_path)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 143 and "Traceback" not in err, err
    assert out.startswith("worker stopped by SIGTERM after 0 trial(s)"), out
    engine = reader_engine(server_url)
    with engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM trials WHERE trial_id = :id"), {"id": abandoned}).scalar()
        runs = conn.execute(text("SELECT COUNT(*) FROM tuner_runs WHERE optuna_trial_id = :id"),
                            {"id": abandoned}).scalar()
    assert str(state).endswith("FAIL") and runs == 0 and not running_trials(server_url)
    finish([start_worker(server_url, name, tmp_path)])  # the experiment then completes without it
    check_consistent(engine, name)
