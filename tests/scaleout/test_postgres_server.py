"""scripts/postgres_server.py against the real PostgreSQL programs."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from scripts import postgres_server
from tests.scaleout.conftest import pg_data_dir, require_postgres


def test_the_cluster_answers_on_127_0_0_1_with_the_password_only(postgres):
    with postgres_server.connect(postgres) as connection:
        (address,) = connection.execute("select inet_server_addr()::text").fetchone()
        (listen,) = connection.execute("show listen_addresses").fetchone()
    assert address.split("/")[0] == "127.0.0.1" and listen == "127.0.0.1"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres_server.connect(postgres, password="not-the-password").close()


def test_databases_are_created_once_and_urls_name_the_driver(postgres):
    postgres_server.create_database(postgres, "twice")
    postgres_server.create_database(postgres, "twice")  # no error the second time
    with postgres_server.connect(postgres, "twice") as connection:
        assert connection.execute("select current_database()").fetchone() == ("twice",)
    url = postgres.url("twice", password="s3cret/:@")
    assert url.startswith("postgresql+psycopg://dc_taxi:s3cret%2F%3A%40@127.0.0.1:")
    assert postgres.url("twice", password="") == (
        f"postgresql+psycopg://dc_taxi@127.0.0.1:{postgres.port}/twice"
    )


def test_status_and_a_second_start_say_what_is_running(postgres, capsys):
    data_dir = postgres.data_dir
    assert postgres_server.main(["status", "--data-dir", data_dir]) == 0
    assert f"127.0.0.1:{postgres.port}" in capsys.readouterr().out
    assert postgres_server.main(["start", "--data-dir", data_dir]) == 1
    assert "already running" in capsys.readouterr().err


def test_a_data_dir_the_server_user_cannot_reach_is_refused_with_the_fix(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to the `postgres` OS user")
    hidden = tmp_path / "private"  # pytest's tmp dirs are root-only
    with pytest.raises(postgres_server.PostgresError, match="pass a --data-dir elsewhere"):
        postgres_server.start(hidden / "pg", port=0)


def test_the_application_role_is_no_superuser_and_cannot_run_programs(postgres):
    postgres_server.create_database(postgres, "apps")
    marker = Path(postgres.data_dir) / "copy-to-program-ran"
    with postgres_server.connect(postgres, "apps") as connection:
        (superuser,) = connection.execute(
            "select rolsuper from pg_roles where rolname = current_user"
        ).fetchone()
        (owner,) = connection.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = 'apps'"
        ).fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(f"copy (select 1) to program 'id > {marker}'")
    assert superuser is False
    assert owner == postgres.user  # what Optuna and MLflow log in as owns their database
    assert not marker.exists()


def test_without_pgpassword_a_random_password_is_made_kept_0600_and_printed_once(
    monkeypatch, capsys
):
    require_postgres()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    data_dir = pg_data_dir()
    cli = ["--data-dir", str(data_dir)]
    try:
        assert postgres_server.main(["start", *cli, "--port", "0", "--database", "optuna"]) == 0
        first = capsys.readouterr().out
        password_file = data_dir / postgres_server.PASSWORD_FILE
        password = password_file.read_text().strip()
        for secret in (password_file, data_dir / postgres_server.ADMIN_PASSWORD_FILE):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(password) >= 20 and password != "dc-taxi-dev"
        assert f"export PGPASSWORD={password}" in first
        (url,) = [line.split(": ", 1)[1] for line in first.splitlines() if "optuna: " in line]
        assert "%24" not in url and password not in url

        # The printed URL, pasted as it is, connects with the password in PGPASSWORD.
        monkeypatch.setenv("PGPASSWORD", password)
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as connection:
                assert connection.execute(sqlalchemy.text("select 1")).scalar() == 1
        finally:
            engine.dispose()

        monkeypatch.delenv("PGPASSWORD")
        assert postgres_server.main(["stop", *cli]) == 0
        assert postgres_server.main(["start", *cli, "--port", "0"]) == 0
        again = capsys.readouterr().out
        assert password not in again  # printed once, on the first start
        assert f"cat {password_file}" in again
        assert password_file.read_text().strip() == password  # kept across restarts
    finally:
        postgres_server.stop(data_dir, mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)
