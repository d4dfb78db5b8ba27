"""docker-compose.yml is valid and the image it names builds from files in this repository."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import REPO


def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose must be installed under CI (.ci/run installs it)")
        pytest.skip("docker-compose is not installed")
    return found


def test_compose_file_validates_with_the_example_env(tmp_path) -> None:
    for name in ("docker-compose.yml", "Dockerfile", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run([compose_binary(), "config"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"db", "launch", "worker", "dashboard"}
    assert services["db"]["image"].startswith("postgres:16") and "healthcheck" in services["db"]
    assert services["worker"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["worker"]["environment"]["TUNER_STORAGE"].startswith("postgresql+psycopg://tuner:change-me@db:5432/")
    assert "pgdata" in config["volumes"]
    (published,) = services["dashboard"]["ports"]
    if isinstance(published, dict):  # compose v2's long form
        published = f"{published['host_ip']}:{published['published']}:{published['target']}"
    assert published.removesuffix("/tcp") == "127.0.0.1:8501:8501", "the dashboard is published on the host's loopback only"
    assert services["dashboard"]["command"][0] == "dashboard"
    (mount,) = services["launch"]["volumes"]
    if isinstance(mount, str):  # docker-compose v1's short form: SOURCE:TARGET:MODE
        source, target, mode = mount.rsplit(":", 2)
        mount = {"source": source, "target": target, "read_only": mode == "ro"}
    assert (mount["source"], mount["target"], mount["read_only"]) == (str(tmp_path / "studies"), "/app/studies", True)
    assert services["worker"]["command"][0] == "worker", "workers tune, then re-evaluate the winners"


def test_compose_refuses_to_start_without_a_password(tmp_path) -> None:
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    result = subprocess.run([compose_binary(), "config"], cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("POSTGRES")})
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_dockerfile_copies_only_what_exists() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for s in line.split()[:-1]]
    assert sources and all((REPO / s).exists() for s in sources), sources
    assert ".env" in (REPO / ".gitignore").read_text()


def test_the_example_password_is_refused_by_every_worker_and_launcher() -> None:
    """docker compose fills TUNER_STORAGE from .env; the example's placeholder must not reach a database."""
    from tuner.errors import ConfigError
    from tuner.urls import EXAMPLE_PASSWORD, check_url

    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["POSTGRES_PASSWORD"] == EXAMPLE_PASSWORD
    with pytest.raises(ConfigError, match=r"its password is the example's placeholder 'change-me'; set a password"):
        check_url(f"postgresql+psycopg://tuner:{EXAMPLE_PASSWORD}@db:5432/tuner")
    with pytest.raises(ConfigError, match=r"its password is the example's placeholder"):
        check_url(f"postgresql+psycopg://tuner@db:5432/tuner?password={EXAMPLE_PASSWORD}")
