"""The container image (Containerfile, scripts/container_image.py), built offline as CI builds
it (a base made by debootstrap from Debian's packages, the wheels the host's pip resolves), and
the README's stages run inside it: generate, `dbt build`, train, every console script."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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


def compose_file(variables: dict[str, str] | None = None) -> dict:
    """compose.yaml as compose reads it: `${NAME:-default}` / `${NAME:?why}` from `variables`
    (left as written without them), `$$` for a literal `$`."""
    import yaml  # dbt's dependency

    text = (REPO_ROOT / "compose.yaml").read_text()
    if variables is not None:

        def value(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name, kind, default = match.group(1), match.group(2), match.group(3)
            if name in variables:
                return variables[name]
            assert kind == "-", f"compose.yaml needs {name}: {default}"
            return default

        text = re.sub(r"\$\$|\$\{([A-Z_]+)(?::([-?])([^}]*))?\}", value, text)
    return yaml.safe_load(text)


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


def test_the_compose_stack_runs_service_by_service(engine, image, tmp_path, monkeypatch):
    """`compose up` cannot start here: the stack's postgres and seaweedfs images come from a
    registry this machine cannot reach. So the same programs run on the host instead
    (scripts.postgres_server, scripts.s3_server: PostgreSQL and SeaweedFS on 127.0.0.1), and
    every service of the project's image runs as compose.yaml says (its command and
    environment, interpolated as compose does), one `podman run` each, with the service names
    compose's network would resolve mapped to those servers: buckets, mlflow, build, then two
    tune-workers sharing one study."""
    from psycopg import connect

    from scripts import postgres_server, s3_server
    from scripts._server import free_port
    from tests.scaleout.conftest import pg_data_dir, require_postgres

    require_postgres()

    secrets_env = {
        "PGPASSWORD": secrets.token_hex(16),
        "AWS_ACCESS_KEY_ID": "dc-taxi-compose",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
    }
    for name, value in secrets_env.items():
        monkeypatch.setenv(name, value)
    variables = {**secrets_env, "ROWS": "20000", "MAX_TRIALS": "2", "STUDY": "compose-test"}
    services = compose_file(variables)["services"]
    pg_dir = pg_data_dir()
    pg = postgres_server.start(pg_dir, port=0, databases=("optuna", "mlflow", "lake"))
    s3 = s3_server.start(tmp_path / "s3", port=0, identities=[s3_server.identity_from_env()])
    mlflow_port = free_port()
    address = {  # what compose's network resolves, and where this test's servers listen
        "postgres:5432": f"127.0.0.1:{pg.port}",
        "s3:8333": s3.endpoint.removeprefix("http://"),
        "mlflow:5000": f"127.0.0.1:{mlflow_port}",
        "--port=5000": f"--port={mlflow_port}",
        "--host=0.0.0.0": "--host=127.0.0.1",  # the host's network here, not compose's
    }

    def mapped(text: str) -> str:
        for compose_address, here in address.items():
            text = text.replace(compose_address, here)
        return text

    def container(name: str, detach_as: str | None = None) -> subprocess.CompletedProcess:
        service = services[name]
        env = {key: mapped(str(value)) for key, value in service["environment"].items()}
        argv = [mapped(part) for part in service["command"]]
        command = container_image.run_command(engine, image, argv, env=env, detach_as=detach_as)
        return subprocess.run(command, env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=900, check=False)  # fmt: skip

    mlflow_name = f"dc-taxi-mlflow-{secrets.token_hex(4)}"
    try:
        buckets = container("buckets")
        assert buckets.returncode == 0, buckets.stdout[-3000:] + buckets.stderr[-3000:]
        started = container("mlflow", detach_as=mlflow_name)
        assert started.returncode == 0, started.stderr[-3000:]
        wait_for_http(f"http://127.0.0.1:{mlflow_port}/health", timeout=120)
        built = container("build")
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        assert "Completed successfully" in built.stdout + built.stderr
        with ThreadPoolExecutor(2) as pool:
            workers = list(pool.map(lambda _: container("tune-worker"), range(2)))
        for worker in workers:
            assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        url = f"host=127.0.0.1 port={pg.port} user={pg.user}"
        with connect(f"{url} dbname=optuna") as db:
            states = dict(
                db.execute(
                    "select state, count(*) from trials join studies using (study_id) "
                    "where study_name = 'compose-test' group by state"
                ).fetchall()
            )
        with connect(f"{url} dbname=mlflow") as db:
            runs = db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]
        with connect(f"{url} dbname=lake") as db:
            tables = {row[0] for row in db.execute("select table_name from iceberg_tables")}
        # MAX_TRIALS (2) caps the study: a worker stops once 2 trials are done, and a trial
        # another worker already started still finishes, so two workers end with 2 or 3.
        done = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
        assert 2 <= done <= 3, states
        assert states.get("COMPLETE", 0) >= 1, states
        assert set(states) <= {"COMPLETE", "PRUNED"}, states
        assert runs >= 2
        assert "trip_features" in tables
    finally:
        subprocess.run([*container_image.engine_command(engine), "rm", "-f", mlflow_name],
                       capture_output=True, check=False)  # fmt: skip
        s3_server.stop(tmp_path / "s3", timeout=2)
        postgres_server.stop(pg_dir, mode="immediate")
        shutil.rmtree(pg_dir, ignore_errors=True)


def wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
