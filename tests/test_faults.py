"""Scale-out under faults on a real PostgreSQL server: many workers, a killed worker, a restarted
server, two launches at once. Each test makes its own database."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers import REPO, check_consistent, run_rows, tuner, write_study
from tuner.storage.engine import reader_engine

FAST_HEARTBEAT = {"TUNER_HEARTBEAT_INTERVAL": "1", "TUNER_GRACE_PERIOD": "3"}
SLOW_TRIALS = {"task": {"name": "mlp", "options": {"hidden_sizes": [128]}}, "budget": {"epochs": 25},
               "optimizers": [{"name": "sgd", "space": {"batch_size": 16}}, {"name": "adam", "space": {"batch_size": 16}}]}


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


def running_trials(url: str) -> list[int]:
    engine = reader_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT trial_id FROM trials WHERE state = 'RUNNING'")).scalars().all()
    engine.dispose()
    return ids


def test_four_workers_complete_an_experiment(postgres_url, tmp_path) -> None:
    name = create(postgres_url, tmp_path, name="four", trials=6)
    finish([start_worker(postgres_url, name, tmp_path) for _ in range(4)])
    counts = check_consistent(reader_engine(postgres_url), name, workers=4)
    assert sorted(sum(c.values()) for c in counts.values()) >= [6, 6, 6, 6]


def test_a_killed_worker_s_trial_is_failed_and_retried(postgres_url, tmp_path) -> None:
    name = create(postgres_url, tmp_path, name="killed", trials=4, samplers=["random"], **SLOW_TRIALS)
    victim = start_worker(postgres_url, name, tmp_path)
    deadline = time.monotonic() + 60
    while not running_trials(postgres_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = running_trials(postgres_url)
    assert killed, "no trial started"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish([start_worker(postgres_url, name, tmp_path) for _ in range(2)])
    engine = reader_engine(postgres_url)
    check_consistent(engine, name, workers=2)
    with engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM trials WHERE trial_id = :id"), {"id": killed[0]}).scalar()
        retried = conn.execute(text(
            "SELECT COUNT(*) FROM trial_system_attributes WHERE key = 'failed_trial'")).scalar()
    assert str(state) == "FAIL" and retried >= 1


def test_workers_carry_on_when_postgres_restarts(postgres_url, tmp_path) -> None:
    if os.geteuid() != 0 or not Path("/etc/postgresql").exists():
        pytest.skip("needs root and a local PostgreSQL cluster to restart")
    name = create(postgres_url, tmp_path, name="restart", trials=5, samplers=["random"], **SLOW_TRIALS)
    workers = [start_worker(postgres_url, name, tmp_path) for _ in range(2)]
    deadline = time.monotonic() + 90
    while len(run_rows(reader_engine(postgres_url), name)) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    before = {r["id"] for r in run_rows(reader_engine(postgres_url), name)}
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    finish(workers)
    engine = reader_engine(postgres_url)
    check_consistent(engine, name, workers=2)
    assert before <= {r["id"] for r in run_rows(engine, name)}, "a finished trial was lost"


def test_two_launches_of_the_same_file_at_once_make_one_experiment(postgres_url, tmp_path) -> None:
    path = write_study(tmp_path, name="twice")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launches = [subprocess.Popen([sys.executable, "-m", "tuner", "launch", str(path), "--workers", "0", "--storage",
                                  postgres_url], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    for launch in launches:
        out, err = launch.communicate(timeout=120)
        assert launch.returncode == 0, "\n".join(err.splitlines()[-6:])
    engine = reader_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM tuner_experiments")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM tuner_studies")).scalar() == 4
        assert conn.execute(text("SELECT COUNT(*) FROM studies")).scalar() == 4
