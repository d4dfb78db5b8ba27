"""A database password is never printed: not by a command's output, nor by its errors."""

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.helpers import TINY, tuner
from tuner.errors import ConfigError
from tuner.urls import check_url, shown

SECRET = "S3cr3t-pw"


@pytest.mark.parametrize("url", [f"redis://user:{SECRET}@host/0", f"postgres ql://user:{SECRET}@host/db",
                                 f"sqlite://user:{SECRET}@/:memory:"])
def test_url_errors_mask_the_password(url) -> None:
    with pytest.raises(ConfigError) as refused:
        check_url(url)
    assert SECRET not in str(refused.value) and "***" in str(refused.value)


def test_shown_masks_only_the_password() -> None:
    assert shown(f"postgresql+psycopg://tuner:{SECRET}@db:5432/tuner") == "postgresql+psycopg://tuner:***@db:5432/tuner"
    assert shown("sqlite:///tuner.db") == "sqlite:///tuner.db"


def test_launch_never_prints_the_password(postgres_url, tmp_path) -> None:
    """The server trusts local connections, so any password connects; it must not be shown."""
    url = make_url(postgres_url).set(password=SECRET).render_as_string(hide_password=False)
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({**TINY, "name": "secret"}))
    result = tuner("launch", str(study), "--workers", "0", "--storage", url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr and "***" in result.stdout
    for command in (["status", "secret"], ["best", "nope"], ["list"]):
        result = tuner(*command, "--storage", url, cwd=tmp_path)
        assert SECRET not in result.stdout + result.stderr, command
