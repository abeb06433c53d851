"""Whatever the bytes of a raw file, every line is accounted for, and no month goes missing.

Each hostile pattern goes through the real `dbt build` on DuckDB: the odd line is quarantined
as `malformed_line` (or read normally, for a CRLF line), every other line of its file loads,
and raw data lines = accepted + rejected exactly.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.conftest import DbtProject, generate_raw
from tests.pipeline.oracle import evaluate, trip_key
from tests.pipeline.outputs import read_mart

pytestmark = pytest.mark.slow


def _good_line(path, index: int = 1) -> str:
    return path.read_bytes().split(b"\n")[index].decode().removesuffix("\r")


def _with_id(line: str, objectid: str) -> str:
    return "|".join([objectid, *line.split("|")[1:]])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, request):
    """One build over two months whose files hold every hostile byte pattern at once."""
    project = DbtProject(
        tmp_path_factory.mktemp("raw_bytes"), request.config.getoption("--dbt-target")
    )
    project.raw.mkdir()
    generate_raw(project.raw, rows=2_000, months="2016-01:2016-02")
    lf = project.raw / "taxi_2016_01.txt"
    crlf = project.raw / "taxi_2016_02.txt"
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    good = _good_line(lf)
    lines = {
        # A CRLF line in an LF file, and an LF line in a CRLF file: read like any other.
        "crlf_in_lf": _with_id(good, "900000001"),
        "lf_in_crlf": _with_id(good, "900000002"),
        # Quarantined: a bare CR inside a field, a NUL, bytes that are not UTF-8, 10 MB.
        "bare_cr": _with_id(good, "900000003").replace("|", "|x\ry", 1),
        "nul": _with_id(good, "900000004").replace("|", "|x\x00y", 1),
        "long": "x" * 10_000_000,
    }
    not_utf8 = _with_id(good, "900000005").encode().replace(b"|", b"|caf\xe9", 1)
    with lf.open("ab") as f:
        f.write(lines["crlf_in_lf"].encode() + b"\r\n")
        for name in ("bare_cr", "nul", "long"):
            f.write(lines[name].encode() + b"\n")
        f.write(not_utf8 + b"\n")
    with crlf.open("ab") as f:
        f.write(lines["lf_in_crlf"].encode() + b"\n")
        # Blank CRLF lines at the end of the file.
        f.write(b"\r\n\r\n")
    lines["not_utf8"] = not_utf8.decode("utf-8", errors="replace")
    project.build()
    return project, lines, evaluate(project.raw)


def _rejected(project) -> dict[str, str]:
    return {
        row["trip_key"]: row["rejection_reason"]
        for row in read_mart(project.lake, "trips_rejected")
    }


def test_every_line_of_a_hostile_file_reconciles_with_the_oracle(hostile):
    project, _, oracle = hostile
    features = {row["trip_key"] for row in read_mart(project.lake, "trip_features")}
    rejected = read_mart(project.lake, "trips_rejected")
    assert len(features) + len(rejected) == len(oracle)
    assert features == {o.trip_key for o in oracle if o.reason is None}
    assert sorted((r["trip_key"], r["rejection_reason"]) for r in rejected) == sorted(
        (o.trip_key, o.reason) for o in oracle if o.reason
    )
    # Both files still contribute their accepted trips.
    assert {o.source_file for o in oracle if o.reason is None} == {
        "taxi_2016_01.txt",
        "taxi_2016_02.txt",
    }


@pytest.mark.parametrize("name", ["crlf_in_lf", "lf_in_crlf"])
def test_a_line_with_the_other_line_ending_reads_like_any_other(hostile, name):
    project, lines, _ = hostile
    key = trip_key(lines[name])
    features = {row["trip_key"] for row in read_mart(project.lake, "trip_features")}
    assert key in features or _rejected(project)[key] != "malformed_line"


@pytest.mark.parametrize("name", ["bare_cr", "nul", "long"])
def test_a_line_with_unreadable_bytes_is_quarantined(hostile, name):
    project, lines, _ = hostile
    rejected = {row["raw_line"]: row for row in read_mart(project.lake, "trips_rejected")}
    assert rejected[lines[name]]["rejection_reason"] == "malformed_line"
    assert rejected[lines[name]]["source_file"] == "taxi_2016_01.txt"


def test_a_line_that_is_not_utf8_is_quarantined_with_its_bad_bytes_as_u_fffd(hostile):
    project, lines, _ = hostile
    rejected = {
        row["raw_line"]: row["rejection_reason"]
        for row in read_mart(project.lake, "trips_rejected")
    }
    assert "caf\ufffd" in lines["not_utf8"]
    assert rejected[lines["not_utf8"]] == "malformed_line"


def test_blank_crlf_lines_at_the_end_are_quarantined_as_empty_lines(hostile):
    project, _, _ = hostile
    rejected = [
        row
        for row in read_mart(project.lake, "trips_rejected")
        if row["source_file"] == "taxi_2016_02.txt"
    ]
    assert [row["rejection_reason"] for row in rejected if row["raw_line"] == ""] == [
        "malformed_line"
    ] * 2
    assert all("\r" not in row["raw_line"] for row in rejected)


@pytest.fixture
def small_raw(dbt_project):
    generate_raw(dbt_project.raw, rows=500, months="2016-01:2016-02")
    return dbt_project


def _fails_with(project, *phrases: str) -> str:
    result = project.dbt("build")
    assert result.returncode != 0
    for phrase in phrases:
        assert phrase in result.output, result.output[-3000:]
    assert "Traceback" not in result.output
    return result.output


def test_an_empty_month_file_fails_the_build_by_name(small_raw):
    (small_raw.raw / "taxi_2016_02.txt").write_bytes(b"")
    _fails_with(small_raw, "raw file 'taxi_2016_02.txt' is empty (0 bytes)", "data loss")


@pytest.mark.parametrize("kind", ["dangling_symlink", "folder"])
def test_a_month_file_duckdb_cannot_see_fails_the_build_by_name(small_raw, kind):
    path = small_raw.raw / "taxi_2016_02.txt"
    path.unlink()
    if kind == "dangling_symlink":
        path.symlink_to(small_raw.root / "unmounted" / "taxi_2016_02.txt")
    else:
        path.mkdir()
    _fails_with(small_raw, "taxi_2016_02.txt")


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a chmod 000 file, so it cannot be made unreadable"
)
def test_an_unreadable_month_file_fails_the_build_by_name(small_raw):
    path = small_raw.raw / "taxi_2016_02.txt"
    path.chmod(0)
    try:
        _fails_with(small_raw, "taxi_2016_02.txt")
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("name", ["taxi_2016_13.txt", "taxi_old.txt"])
def test_a_file_not_named_by_a_real_month_fails_the_build_by_name(small_raw, name):
    (small_raw.raw / "taxi_2016_02.txt").rename(small_raw.raw / name)
    _fails_with(small_raw, f"raw file '{name}' is not named taxi_YYYY_MM.txt with a real month")


def test_a_split_the_fractions_promise_but_without_rows_fails_the_build(dbt_project):
    generate_raw(dbt_project.raw, rows=8, months="2016-01:2016-01")
    _fails_with(dbt_project, "every_split_has_rows__add_data_or_set_its_fraction_var_to_0")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_s3_endpoint_is_named(dbt_project, monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unused-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unused-secret")
    dbt_project.target = "s3"
    result = dbt_project.dbt("build", raw="s3://dc-taxi/raw")
    assert result.returncode != 0
    assert f"the S3 endpoint {endpoint} (AWS_ENDPOINT_URL) is unreachable" in result.output
    # (DuckDB's fsspec bridge prints the plugin's Python traceback above that line.)
    assert "no raw files" not in result.output
