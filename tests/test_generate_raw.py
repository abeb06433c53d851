"""Tests of the synthetic raw data generator: format, determinism, dirt rates, noise floor."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from scripts.fare_model import FEATURE_NAMES, expected_fare, trip_profile
from scripts.generate_raw import main
from scripts.raw_generator import COORD_GARBAGE, FARE_GARBAGE, HEADER, GeneratorParams

# The contract, written out here rather than imported, so that the tests check the generator.
HEADER_LINE = (
    "OBJECTID|TRIPTYPE|PROVIDERNAME|FAREAMOUNT|GRATUITYAMOUNT|SURCHARGEAMOUNT|EXTRAFAREAMOUNT|"
    "TOLLAMOUNT|TOTALAMOUNT|PAYMENTTYPE|ORIGINCITY|ORIGINSTATE|ORIGINZIP|DESTINATIONCITY|"
    "DESTINATIONSTATE|DESTINATIONZIP|MILEAGE|DURATION|ORIGIN_BLOCK_LATITUDE|"
    "ORIGIN_BLOCK_LONGITUDE|ORIGIN_BLOCKNAME|DESTINATION_BLOCK_LATITUDE|"
    "DESTINATION_BLOCK_LONGITUDE|DESTINATION_BLOCKNAME|AIRPORT|ORIGINDATETIME_TR|"
    "DESTINATIONDATETIME_TR"
)
LAT_RANGE = (38.81138, 38.994909)
LON_RANGE = (-77.113633, -76.910012)
FARE_RANGE = (3.25, 179.75)
TIME_RE = re.compile(r"(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2})")
MISSING = ("", "NULL")
COL = {name: i for i, name in enumerate(HEADER_LINE.split("|"))}
AMOUNTS = ("FAREAMOUNT", "GRATUITYAMOUNT", "SURCHARGEAMOUNT", "EXTRAFAREAMOUNT", "TOLLAMOUNT")
COORDS = (
    "ORIGIN_BLOCK_LATITUDE",
    "ORIGIN_BLOCK_LONGITUDE",
    "DESTINATION_BLOCK_LATITUDE",
    "DESTINATION_BLOCK_LONGITUDE",
)
MONTHS = ("2015_01", "2015_02", "2015_03")


def _generate(out: Path, *args: str) -> Path:
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    return out


def _number(text: str) -> float | None:
    """The value of a field that parses as a number, else None."""
    try:
        return float(text)
    except ValueError:
        return None


def _lines(out: Path) -> dict[str, list[str]]:
    """Data lines (without header and LF) of every month file, by file name."""
    result = {}
    for path in sorted(out.glob("taxi_*.txt")):
        text = path.read_bytes().decode("ascii")
        header, *lines = text.split("\n")
        assert header == HEADER_LINE
        assert lines[-1] == "", "the file must end with a LF"
        result[path.name] = lines[:-1]
    return result


def _inside(lat: float, lon: float) -> bool:
    return LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict[str, list[str]], list[list[str]]]:
    """About 100k rows over three months, generated in-process."""
    out = _generate(
        tmp_path_factory.mktemp("raw"),
        *("--rows-per-month", "33000", "--months", "2015-01:2015-03", "--seed", "7"),
        *("--workers", "1"),
    )
    lines = _lines(out)
    rows = [line.split("|") for file_lines in lines.values() for line in file_lines]
    return out, lines, rows


@pytest.fixture(scope="module")
def sidecar(dataset) -> dict:
    return json.loads((dataset[0] / "_generator.json").read_text())


def test_files_header_and_fields(dataset):
    out, lines, rows = dataset
    assert sorted(p.name for p in out.iterdir()) == [
        "_generator.json",
        *(f"taxi_{m}.txt" for m in MONTHS),
    ]
    assert "|".join(HEADER) == HEADER_LINE
    for name in lines:
        raw = (out / name).read_bytes()
        assert b"\r" not in raw and b'"' not in raw
        assert raw.startswith((HEADER_LINE + "\n").encode())
    assert len(rows) > 90_000
    assert {len(row) for row in rows} == {27}


def test_times_are_hourly_and_in_their_month(dataset):
    _, lines, _ = dataset
    tokens = Counter()
    for name, file_lines in lines.items():
        year, month = int(name[5:9]), int(name[10:12])
        for line in file_lines:
            row = line.split("|")
            pickup, dropoff = row[COL["ORIGINDATETIME_TR"]], row[COL["DESTINATIONDATETIME_TR"]]
            if pickup in MISSING:
                tokens[pickup] += 1
                assert dropoff == pickup
                continue
            stamps = []
            for text in (pickup, dropoff):
                match = TIME_RE.fullmatch(text)
                assert match, text
                assert match[5] == "00"
                stamps.append(datetime.strptime(text, "%m/%d/%Y %H:%M"))
            assert (stamps[0].year, stamps[0].month) == (year, month)
            assert date(2015, 1, 1) <= stamps[0].date() <= date(2019, 12, 31)
            assert stamps[0] <= stamps[1]
    assert tokens[""] > 1000 and tokens["NULL"] > 1000


def test_numbers_formats_and_block_grid(dataset):
    _, _, rows = dataset
    amount_re = re.compile(r"-?\d+\.\d{2}")
    coord_re = re.compile(r"-?\d+\.\d{6}")
    lats = set()
    for row in rows:
        fare = row[COL["FAREAMOUNT"]]
        assert amount_re.fullmatch(fare) or fare == "NULL" or fare in FARE_GARBAGE
        for name in (*AMOUNTS[1:], "TOTALAMOUNT"):
            value = row[COL[name]]
            assert amount_re.fullmatch(value) or (value == "NULL" and fare == "NULL")
        assert amount_re.fullmatch(row[COL["MILEAGE"]])
        assert row[COL["DURATION"]].isdigit()
        for name in COORDS:
            value = row[COL[name]]
            assert coord_re.fullmatch(value) or value in MISSING or value in COORD_GARBAGE
        lat = _number(row[COL["ORIGIN_BLOCK_LATITUDE"]])
        lon = _number(row[COL["ORIGIN_BLOCK_LONGITUDE"]])
        if lat is not None and lon is not None and _inside(lat, lon):
            lats.add(lat)
    # Snapped to blocks of about 250 m (0.00225 degrees of latitude), not scattered.
    ordered = sorted(lats)
    assert 30 < len(ordered) <= (LAT_RANGE[1] - LAT_RANGE[0]) / 0.002
    assert min(np.diff(ordered)) > 0.002


def test_same_seed_same_bytes_other_seed_other_bytes(dataset, tmp_path):
    out = dataset[0]
    args = ("--rows-per-month", "33000", "--months", "2015-01:2015-03", "--workers", "1")
    again = _generate(tmp_path / "again", *args, "--seed", "7")
    other = _generate(tmp_path / "other", *args, "--seed", "8")
    for name in (f"taxi_{m}.txt" for m in MONTHS):
        assert (again / name).read_bytes() == (out / name).read_bytes()
        assert (other / name).read_bytes() != (out / name).read_bytes()
    assert (again / "_generator.json").read_text() == (out / "_generator.json").read_text()


def test_parallel_workers_write_the_same_bytes(tmp_path):
    args = ("--rows", "6000", "--months", "2016-11:2017-02", "--seed", "3")
    serial = _generate(tmp_path / "serial", *args, "--workers", "1")
    parallel = _generate(tmp_path / "parallel", *args, "--workers", "2")
    names = sorted(p.name for p in serial.iterdir())
    assert names == sorted(p.name for p in parallel.iterdir())
    assert names[1:] == [
        "taxi_2016_11.txt",
        "taxi_2016_12.txt",
        "taxi_2017_01.txt",
        "taxi_2017_02.txt",
    ]
    for name in names:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes()
    # --rows is the total, up to rounding of each month.
    assert abs(json.loads((serial / "_generator.json").read_text())["rows"] - 6000) <= 2


def test_extra_month_leaves_existing_files_unchanged(tmp_path):
    common = ("--rows-per-month", "4000", "--seed", "11", "--workers", "1")
    grown = _generate(tmp_path / "grown", *common, "--months", "2019-05:2019-06")
    before = {p.name: p.read_bytes() for p in grown.glob("taxi_*.txt")}
    _generate(grown, *common, "--months", "2019-07")
    full = _generate(tmp_path / "full", *common, "--months", "2019-05:2019-07")
    for name, content in before.items():
        assert (grown / name).read_bytes() == content
    for path in full.glob("taxi_*.txt"):
        assert (grown / path.name).read_bytes() == path.read_bytes()
    # The sidecar of the grown folder describes all three files, like a single run's.
    grown_meta = json.loads((grown / "_generator.json").read_text())
    full_meta = json.loads((full / "_generator.json").read_text())
    assert grown_meta["months"] == ["2019-05", "2019-06", "2019-07"]
    for key in ("rows", "rows_per_file", "dirt_counts", "clean_rows", "noise_floor_rmse"):
        assert grown_meta[key] == full_meta[key]


def _measured_dirt(lines: dict[str, list[str]]) -> dict[str, int]:
    """Count every kind of dirt by reading the lines, independently of the generator."""
    counts = Counter()
    for file_lines in lines.values():
        counts["duplicate"] += len(file_lines) - len(set(file_lines))
        for line in file_lines:
            row = line.split("|")
            counts["pickup_time_missing"] += row[COL["ORIGINDATETIME_TR"]] in MISSING
            values = [row[COL[c]] for c in COORDS]
            for point, (lat, lon) in (("origin", values[:2]), ("dest", values[2:])):
                assert (lat in MISSING) == (lon in MISSING), "lat and lon go missing together"
                counts[f"{point}_coords_missing"] += lat in MISSING
            garbage = [v not in MISSING and _number(v) is None for v in values]
            counts["coord_garbage"] += any(garbage)
            numbers = [_number(v) for v in values]
            counts["outside_service_area"] += any(
                lat is not None and lon is not None and not _inside(lat, lon)
                for lat, lon in (numbers[:2], numbers[2:])
            )
            fare_text = row[COL["FAREAMOUNT"]]
            fare = _number(fare_text)
            counts["fare_null"] += fare_text == "NULL"
            counts["fare_garbage"] += fare is None and fare_text not in MISSING
            counts["fare_below_min"] += fare is not None and fare < FARE_RANGE[0]
            counts["fare_above_max"] += fare is not None and fare > FARE_RANGE[1]
            amounts = [_number(row[COL[c]]) for c in (*AMOUNTS, "TOTALAMOUNT")]
            if None not in amounts:
                counts["amounts_numeric"] += 1
                counts["total_inconsistent"] += abs(amounts[-1] - sum(amounts[:-1])) > 0.005
    return counts


def test_dirt_rates_match_parameters(dataset, sidecar):
    _, lines, rows = dataset
    counts = _measured_dirt(lines)
    params = GeneratorParams()
    n = len(rows)
    for kind in (
        "pickup_time_missing",
        "origin_coords_missing",
        "dest_coords_missing",
        "fare_null",
        "fare_below_min",
        "fare_above_max",
        "fare_garbage",
        "outside_service_area",
        "coord_garbage",
        "duplicate",
        "total_inconsistent",
    ):
        rate = getattr(params, kind)
        trials = counts["amounts_numeric"] if kind == "total_inconsistent" else n
        tolerance = 5 * math.sqrt(trials * rate * (1 - rate)) + 1
        assert abs(counts[kind] - trials * rate) <= tolerance, (kind, counts[kind], trials * rate)
        assert counts[kind] > 0, kind
        # The sidecar's bookkeeping agrees with what the files hold.
        assert sidecar["dirt_counts"][kind] == counts[kind], kind
    assert sidecar["rows"] == n
    # About 99.5% of the rows with numeric amounts add up to the cent.
    assert 0.99 < 1 - counts["total_inconsistent"] / counts["amounts_numeric"] < 0.999


def test_dirt_values_span_the_measured_extremes(dataset):
    _, _, rows = dataset
    fares = [_number(row[COL["FAREAMOUNT"]]) for row in rows]
    fares = [f for f in fares if f is not None]
    assert min(fares) < -100 and min(fares) >= GeneratorParams().fare_low_min
    assert max(fares) > 1000 and max(fares) <= GeneratorParams().fare_high_max
    assert 0.0 in fares
    states = Counter(row[COL["ORIGINSTATE"]] for row in rows)
    assert states["MD"] > 0 and states["VA"] > 0


def test_garbage_values_fail_a_sql_cast(dataset):
    _, _, rows = dataset
    seen = {row[COL["FAREAMOUNT"]] for row in rows if _number(row[COL["FAREAMOUNT"]]) is None}
    seen |= {row[COL[c]] for row in rows for c in COORDS if _number(row[COL[c]]) is None}
    assert seen - {"", "NULL"} <= set(FARE_GARBAGE) | set(COORD_GARBAGE)
    assert len(seen) > 4
    con = duckdb.connect()
    for value in {*FARE_GARBAGE, *COORD_GARBAGE, "NULL", ""}:
        assert con.execute("select try_cast(trim(?) as double)", [value]).fetchone()[0] is None


def test_duplicates_are_whole_line_copies_anywhere_in_the_file(dataset):
    _, lines, _ = dataset
    far_apart = 0
    for file_lines in lines.values():
        ids = Counter(line.split("|", 1)[0] for line in file_lines)
        assert len(ids) == len(set(file_lines)), "OBJECTID is unique per trip"
        positions = {}
        for i, line in enumerate(file_lines):
            positions.setdefault(line, []).append(i)
        copies = [p for p in positions.values() if len(p) > 1]
        assert copies
        far_apart += sum(p[-1] - p[0] > 100 for p in copies)
    assert far_apart > 0
    all_ids = [line.split("|", 1)[0] for file_lines in lines.values() for line in set(file_lines)]
    assert len(all_ids) == len(set(all_ids)), "OBJECTID is unique across files"


def _clean_features(lines: dict[str, list[str]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Apply docs/design.md's VACUUM rules to the lines; features and fares of clean rows."""
    features = {name: [] for name in FEATURE_NAMES}
    fares = []
    for file_lines in lines.values():
        seen = set()
        for line in file_lines:
            if line in seen:
                continue
            seen.add(line)
            row = line.split("|")
            match = TIME_RE.fullmatch(row[COL["ORIGINDATETIME_TR"]])
            fare = _number(row[COL["FAREAMOUNT"]])
            coords = [_number(row[COL[c]]) for c in COORDS]
            if match is None or fare is None or None in coords:
                continue
            if not FARE_RANGE[0] <= fare <= FARE_RANGE[1]:
                continue
            if not (_inside(*coords[:2]) and _inside(*coords[2:])):
                continue
            stamp = datetime.strptime(match[0], "%m/%d/%Y %H:%M")
            values = (*coords, stamp.year, stamp.month, stamp.isoweekday(), stamp.hour)
            for name, value in zip(FEATURE_NAMES, values, strict=True):
                features[name].append(value)
            fares.append(fare)
    return {k: np.array(v) for k, v in features.items()}, np.array(fares)


def test_noise_floor_recomputed_from_the_files(dataset, sidecar):
    _, lines, _ = dataset
    features, fares = _clean_features(lines)
    assert sidecar["clean_rows"] == fares.size > 40_000
    errors = fares - expected_fare(features)
    rmse = math.sqrt(np.mean(errors**2))
    assert rmse == pytest.approx(sidecar["noise_floor_rmse"], rel=1e-9)
    # Close to the analytic value, a little below the noise sd because of the fare floor.
    se = np.std(errors**2) / (2 * rmse * math.sqrt(errors.size))
    assert abs(rmse - sidecar["noise_floor_rmse_analytic"]) < 5 * se
    assert 0.8 * sidecar["noise_sd"] < rmse < sidecar["noise_sd"]
    # E[fare | x] is unbiased, and beats the noise-free meter fare it is derived from.
    assert abs(errors.mean()) < 5 * errors.std() / math.sqrt(errors.size)
    gain = (fares - trip_profile(features).meter_fare) ** 2 - errors**2
    assert gain.mean() > 5 * gain.std() / math.sqrt(gain.size)
    # The features alone explain most of the fare variance.
    assert rmse < 0.6 * fares.std()


def test_expected_fare_accepts_mappings_tables_and_arrays(dataset):
    features, _ = _clean_features({"sample": dataset[1]["taxi_2015_02.txt"][:500]})
    from_dict = expected_fare(features)
    from_table = expected_fare(pa.table(features))
    from_array = expected_fare(np.column_stack([features[name] for name in FEATURE_NAMES]))
    assert from_dict.shape == (len(features["pickup_hour"]),)
    np.testing.assert_array_equal(from_dict, from_table)
    np.testing.assert_array_equal(from_dict, from_array)
    with pytest.raises(ValueError, match="pickup_hour"):
        expected_fare({**features, "pickup_hour": features["pickup_hour"] + 24})


@pytest.mark.parametrize(
    "months", ["2014-12:2015-02", "2015-13", "2016-03:2016-01", "2020-01", "2015/01"]
)
def test_bad_months_exit_with_a_usage_error(tmp_path, months, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--months", months, "--out", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    assert "--months" in capsys.readouterr().err
    assert not list(tmp_path.glob("taxi_*"))
