"""No password in any store: tune on PostgreSQL storage and an MLflow store on PostgreSQL with
the password in the URLs, then search every table of both databases, the artifacts, the
captured logs and the tuning report for it."""

from __future__ import annotations

import pytest

from reports import tuning as tuning_report
from scripts import postgres_server
from tests.scaleout.test_parallel_tuning import tune_argv
from training import tune

pytestmark = pytest.mark.slow


def database_text(server, database: str) -> str:
    """Every text value of every table of `database`, as one string."""
    chunks = []
    with postgres_server.connect(server, database) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            rows = connection.execute(f'select * from "{schema}"."{table}"').fetchall()
            chunks += [str(value) for row in rows for value in row]
    return "\n".join(chunks)


def test_a_password_in_the_urls_is_in_no_store_log_or_report(
    postgres, small_lake, tmp_path, capfd, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # MLflow's client-side artifact root (./mlruns) lands here
    password = postgres.password()
    assert len(password) >= 16  # a sentinel nothing else contains
    for database in ("optuna_secret", "mlflow_secret"):
        postgres_server.create_database(postgres, database)
    storage = postgres.url("optuna_secret", password=password)
    tracking = postgres.url("mlflow_secret", password=password)
    assert password in storage and password in tracking

    argv = tune_argv(
        small_lake, tmp_path, storage, "secret",
        "--tracking-uri", tracking, "--n-trials", "2", "--no-progress",
    )  # fmt: skip
    assert tune.main(argv) == 0
    page = tuning_report.write_report(storage, "secret", tmp_path / "tuning.html", tracking)

    captured = capfd.readouterr()
    places = {
        "optuna database": database_text(postgres, "optuna_secret"),
        "mlflow database": database_text(postgres, "mlflow_secret"),
        "stdout and stderr": captured.out + captured.err,
        "tuning report": page.read_text(),
    }
    artifacts = [p for p in tmp_path.rglob("*") if p.is_file()]  # mlruns/, checkpoints, ...
    assert any("mlruns" in p.parts for p in artifacts)
    places |= {str(p): p.read_bytes().decode(errors="replace") for p in artifacts}
    assert "postgresql+psycopg://dc_taxi:***@" in places["mlflow database"]  # masked, not gone
    leaks = [where for where, text in places.items() if password in text]
    assert not leaks, leaks
