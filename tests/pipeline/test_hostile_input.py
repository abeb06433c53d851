"""Bad raw input never disappears silently: it fails with a clear error or is quarantined."""

from __future__ import annotations

import json

import pytest

from lakehouse.catalog import LakeError
from tests.conftest import generate_raw
from tests.pipeline.oracle import HEADER, evaluate, trip_key
from tests.pipeline.outputs import current_build, read_mart, read_staged

pytestmark = pytest.mark.slow


@pytest.fixture
def small_raw(dbt_project):
    generate_raw(dbt_project.raw, rows=3_000, months="2016-01:2016-02")
    return dbt_project


def _rejected(project) -> dict[str, str]:
    return {
        row["raw_line"]: row["rejection_reason"]
        for row in read_mart(project.lake, "trips_rejected")
    }


def test_empty_raw_folder_says_how_to_get_data(dbt_project):
    result = dbt_project.dbt("build")
    assert result.returncode != 0
    assert "no raw files matching" in result.output
    assert "python -m scripts.generate_raw" in result.output
    assert "Traceback" not in result.output


def test_lines_with_too_few_or_too_many_fields_are_quarantined(small_raw):
    path = small_raw.raw / "taxi_2016_01.txt"
    good = path.read_text().splitlines()[1]
    short = "|".join(good.split("|")[:26])
    long = good + "|extra|fields"
    with path.open("a") as f:
        f.write(f"{short}\n{long}\n\n")
    small_raw.build()
    rejected = _rejected(small_raw)
    assert rejected[short] == "malformed_line"
    assert rejected[long] == "malformed_line"
    assert rejected[""] == "malformed_line"
    raw_rows = len(evaluate(small_raw.raw))
    features = read_mart(small_raw.lake, "trip_features")
    assert len(features) + len(read_mart(small_raw.lake, "trips_rejected")) == raw_rows


def test_quoted_fields_are_not_unquoted(small_raw):
    path = small_raw.raw / "taxi_2016_01.txt"
    good = path.read_text().splitlines()[1].split("|")
    good[2] = '"Yellow | Cab"'
    quoted = "|".join(good)
    with path.open("a") as f:
        f.write(quoted + "\n")
    small_raw.build()
    assert _rejected(small_raw)[quoted] == "malformed_line"


def test_wrong_header_fails_the_build_by_name(small_raw):
    path = small_raw.raw / "taxi_2016_02.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[0] = HEADER.lower() + "\n"
    path.write_text("".join(lines))
    result = small_raw.dbt("build")
    assert result.returncode != 0
    assert "raw_files_have_the_contract_header" in result.output
    assert "Traceback" not in result.output


def test_non_utf8_bytes_are_quarantined_and_the_file_loads(small_raw):
    path = small_raw.raw / "taxi_2016_02.txt"
    with path.open("ab") as f:
        f.write(b"caf\xe9|broken\n")
    small_raw.build()
    assert _rejected(small_raw)["caf\ufffd|broken"] == "malformed_line"
    raw_rows = len(evaluate(small_raw.raw))
    features = read_mart(small_raw.lake, "trip_features")
    assert len(features) + len(read_mart(small_raw.lake, "trips_rejected")) == raw_rows


def test_crlf_line_endings_give_the_same_keys_and_outcomes(small_raw, tmp_path):
    small_raw.build()
    lf_features = {r["trip_key"]: r["split"] for r in read_mart(small_raw.lake, "trip_features")}
    lf_rejected = {
        (r["trip_key"], r["rejection_reason"]) for r in read_mart(small_raw.lake, "trips_rejected")
    }
    for path in small_raw.raw.glob("taxi_*.txt"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    small_raw.build()
    crlf_features = {r["trip_key"]: r["split"] for r in read_mart(small_raw.lake, "trip_features")}
    crlf_rejected = {
        (r["trip_key"], r["rejection_reason"]) for r in read_mart(small_raw.lake, "trips_rejected")
    }
    assert crlf_features == lf_features
    assert crlf_rejected == lf_rejected
    assert all("\r" not in row["raw_line"] for row in read_mart(small_raw.lake, "trips_rejected"))


def test_pickup_dates_outside_the_window_are_quarantined(small_raw):
    path = small_raw.raw / "taxi_2016_01.txt"
    accepted = next(o for o in evaluate(small_raw.raw) if o.reason is None)
    fields = accepted.raw_line.split("|")
    fields[0] = "999999001"
    fields[25] = "12/31/2014 23:00"
    too_early = "|".join(fields)
    fields[0] = "999999002"
    fields[25] = "01/01/2020 00:00"
    too_late = "|".join(fields)
    with path.open("a") as f:
        f.write(f"{too_early}\n{too_late}\n")
    small_raw.build()
    rejected = _rejected(small_raw)
    assert rejected[too_early] == "pickup_time_out_of_range"
    assert rejected[too_late] == "pickup_time_out_of_range"
    assert trip_key(too_early) not in {
        r["trip_key"] for r in read_mart(small_raw.lake, "trip_features")
    }


def test_rerun_on_less_data_leaves_no_stale_rows(small_raw):
    small_raw.build()
    (small_raw.raw / "taxi_2016_02.txt").unlink()
    small_raw.build()
    features = read_mart(small_raw.lake, "trip_features")
    expected = {o.trip_key for o in evaluate(small_raw.raw) if o.reason is None}
    assert {row["trip_key"] for row in features} == expected


def test_all_rows_rejected_writes_no_null_rows(small_raw):
    for path in small_raw.raw.glob("taxi_*.txt"):
        lines = path.read_text().splitlines()
        broken = [lines[0]] + [line.replace("|", ";", 1) for line in lines[1:]]
        path.write_text("\n".join(broken) + "\n")
    result = small_raw.dbt("run")
    assert result.returncode == 0, result.output[-3000:]
    # `dbt run` stages the marts but publishes nothing: it ran no test.
    assert "lake: NOT published" in result.output
    with pytest.raises(LakeError, match="has no published build yet"):
        current_build(small_raw.lake)
    invocation = json.loads((small_raw.root / "dbt_target" / "run_results.json").read_text())[
        "metadata"
    ]["invocation_id"]
    assert read_staged(small_raw.lake, invocation, "trip_features") == []
    stats = read_staged(small_raw.lake, invocation, "feature_stats")
    assert stats and all(row["row_count"] == 0 for row in stats)
    rejected = read_staged(small_raw.lake, invocation, "trips_rejected")
    assert rejected and {row["rejection_reason"] for row in rejected} == {"malformed_line"}
    # `dbt build` refuses the result: no month file contributes a single accepted trip.
    build = small_raw.dbt("build")
    assert build.returncode != 0
    assert "assert_every_month_file_contributes_rows" in build.output
    with pytest.raises(LakeError, match="has no published build yet"):
        current_build(small_raw.lake)
