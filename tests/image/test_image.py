"""The container image (Containerfile, scripts/container_image.py), built offline as CI builds
it (a base made by debootstrap from Debian's packages, the wheels the host's pip resolves), and
the README's stages run inside it: generate, `dbt build`, train, every console script."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scripts import container_image
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

IMAGE = "localhost/dc-taxi-lakehouse:test"
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def engine() -> str:
    """docker or podman; under CI a missing engine fails the test, naming the installer."""
    try:
        return container_image.find_engine(None)
    except SystemExit as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error} (.ci/run installs it: scripts/install_podman.sh)")
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def image(engine: str) -> str:
    """`make image BASE=debootstrap` (`python -m scripts.container_image build --base …`)."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("debootstrap needs root")
    result = subprocess.run(
        [sys.executable, "-m", "scripts.container_image", "build", "--base", "debootstrap",
         "--image", IMAGE, "--engine", engine, "--python", sys.executable],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = result.stdout.strip().splitlines()[-1]
    assert built.startswith(f"image: built {IMAGE} from {container_image.OFFLINE_BASE}"), built
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "image_size.txt").write_text(built + "\n")
    print(built)
    return IMAGE


def in_image(engine: str, image: str, script: str, data: Path | None = None) -> str:
    """Run a shell script in the image as its user; returns what it printed."""
    volumes = [f"{data}:/app/data"] if data else []
    command = container_image.run_command(engine, image, ["sh", "-c", script], volumes)
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def console_scripts() -> list[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return sorted(pyproject["project"]["scripts"])


def test_the_pipeline_runs_in_the_image(engine, image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image's user (uid 10001) writes the lake and the MLflow store here
    helps = "; ".join(f"{script} --help > /dev/null" for script in console_scripts())
    output = in_image(
        engine,
        image,
        "set -e; echo uid=$(id -u) cwd=$(pwd); "
        "python -m scripts.generate_raw --rows 20000 --months 2015-01:2015-12 --out data/raw; "
        "dbt build; python -m training.train --max-epochs 1; "
        f"{helps}; dbt --version > /dev/null; echo every console script answered",
        data,
    )
    assert "uid=10001 cwd=/app" in output
    assert "Completed successfully" in output
    assert "every console script answered" in output
    assert (data / "lake").is_dir()
    # The run's lineage names the commit the image was built from (there is no git inside).
    with sqlite3.connect(data / "mlflow.db") as db:
        commits = db.execute(
            "select value from tags where key = 'mlflow.source.git.commit'"
        ).fetchall()
        finished = db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()
    assert commits == [(container_image.git_commit(),)]
    assert finished[0] >= 1


def test_the_image_runs_as_a_user_with_no_secrets_and_only_the_project(engine, image):
    inspected = subprocess.run(
        [*container_image.engine_command(engine), "image", "inspect", image],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    config = json.loads(inspected.stdout)[0]["Config"]
    assert config["User"] == "app"
    assert config["WorkingDir"] == "/app"
    names = {entry.split("=", 1)[0] for entry in config["Env"]}
    secret_like = {name for name in names if any(
        word in name for word in ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "PGPASS")
    )}  # fmt: skip
    assert not secret_like, secret_like
    assert {"DBT_PROJECT_DIR", "DBT_PROFILES_DIR", "DC_TAXI_GIT_COMMIT"} <= names
    listing = in_image(engine, image, "ls -A /app; python -c 'import torch; print(torch.__file__)'")
    first = listing.split()
    assert sorted(first[:4]) == ["LICENSE", "data", "dbt_project", "profiles.yml"]
    # The tests, benchmarks, git history and dev tools are not in the image.
    absent = in_image(
        engine, image,
        "for p in /app/tests /app/.git /app/.venv /opt/venv/bin/pytest /opt/venv/bin/ruff; "
        "do test -e $p && echo present: $p; done; echo checked",
    )  # fmt: skip
    assert "present:" not in absent


def compose_file() -> dict:
    import yaml  # dbt's dependency

    return yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())


def test_the_compose_stack_keeps_secrets_in_the_environment_and_ports_on_loopback():
    compose = compose_file()
    services = compose["services"]
    assert {"postgres", "s3", "mlflow", "buckets", "build", "tune-worker"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY")):
                # `${NAME:?why}`: compose takes it from the environment or refuses to start
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key, value)
    project = [name for name, s in services.items() if "dc-taxi-lakehouse" in s.get("image", "")]
    assert set(project) == {"mlflow", "buckets", "build", "tune-worker"}
    assert "${WORKERS:-2}" in str(services["tune-worker"]["deploy"]["replicas"])


def test_the_compose_services_of_the_image_find_their_programs(engine, image):
    """Every command compose.yaml runs in the project's image starts there (`--help`). The
    whole stack needs the public postgres and seaweedfs images, which no registry here serves:
    `docker compose up` is shown in the README and not started by this test."""
    services = compose_file()["services"]
    checks = []
    for name in ("mlflow", "build", "tune-worker"):
        command = services[name]["command"]
        if command[0] == "sh":  # the build's steps: python -m scripts.…, dbt
            modules = [part.split()[0] for part in command[2].split("python -m ")[1:]]
            checks += [f"python -m {module} --help" for module in modules] + ["dbt build --help"]
        elif command[:2] == ["python", "-m"]:
            checks.append(f"python -m {command[2]} --help")
        else:
            checks.append(f"{command[0]} {command[1]} --help")
    # The buckets service's one-liner names functions of scripts.s3_server: they must exist.
    assert "from scripts import s3_server as s;" in services["buckets"]["command"][2]
    checks.append(
        "python -c 'from scripts import s3_server as s; s.create_bucket; s.identity_from_env'"
    )
    output = in_image(engine, image, " > /dev/null && ".join(checks) + " > /dev/null; echo ok")
    assert output.strip().endswith("ok"), output
    assert len(checks) == 6, checks
