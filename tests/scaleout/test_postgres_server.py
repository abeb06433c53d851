"""scripts/postgres_server.py against the real PostgreSQL programs."""

from __future__ import annotations

import os

import psycopg
import pytest

from scripts import postgres_server


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
