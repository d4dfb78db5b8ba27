"""One real storage for the dashboard tests: a data-task experiment with repeats and a quadratic one."""

import pytest

from tests.helpers import tuner, write_study


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> str:
    """SQLite URL of a database holding experiments ``tiny`` (softmax, sgd + adam, random + tpe, two
    repeats, re-evaluated) and ``quad`` (quadratic, no validation data), both launched for real."""
    directory = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{directory}/tuner.db"
    studies = [
        write_study(directory, repeats=2),
        write_study(directory, name="quad", task={"name": "quadratic", "options": {"dim": 10}},
                    optimizers=["sgd", "momentum"], space={"schedule": "constant"}, trials=6,
                    budget={"steps": 200, "eval_every": 20}, objective={"name": "final_train_loss"}),
    ]
    for study in studies:
        result = tuner("launch", str(study), "--workers", "2", "--storage", url, cwd=directory)
        assert result.returncode == 0, result.stdout + result.stderr
    return url
