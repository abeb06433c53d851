"""For the split check's tests: raw files whose test split is deliberately unlike train, and
the rows the check returned."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb

from tests.conftest import DbtProject
from tests.pipeline.oracle import FIELDS, HEADER, parse_number, split_of, trip_key

SPLIT_CHECK = "trip_features_splits_are_representative"

FARE, TOTAL = FIELDS.index("FAREAMOUNT"), FIELDS.index("TOTALAMOUNT")


def shift_test_split_fares(raw: Path, dollars: float) -> int:
    """Add `dollars` to the fare and the total of every raw line in the test split, in place.

    The new fare changes the line's hash, so its split: the line's OBJECTID (part of the hash,
    not a feature) gets the first numeric suffix that keeps it in test. Duplicate lines stay
    duplicates (the same line gets the same suffix); other lines keep their bytes. Returns the
    number of lines changed.
    """
    changed = 0
    for path in sorted(raw.glob("taxi_*.txt")):
        lines = path.read_bytes().split(b"\n")
        for index, raw_line in enumerate(lines):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError:
                continue
            text = line.removesuffix("\r")
            fields = text.split("|")
            if text == HEADER or len(fields) != len(FIELDS) or split_of(trip_key(text)) != "test":
                continue
            fare, total = parse_number(fields[FARE]), parse_number(fields[TOTAL])
            if fare is None:
                continue
            fields[FARE] = f"{fare + dollars:.2f}"
            if total is not None:
                fields[TOTAL] = f"{total + dollars:.2f}"
            object_id = fields[0]
            for suffix in itertools.count():
                fields[0] = f"{object_id}{suffix}"
                if split_of(trip_key("|".join(fields))) == "test":
                    break
            lines[index] = ("|".join(fields) + line[len(text) :]).encode("utf-8")
            changed += 1
        path.write_bytes(b"\n".join(lines))
    return changed


def split_check_failures(project: DbtProject) -> list[dict]:
    """The rows the split check returned in the project's last `dbt build --store-failures`."""
    with duckdb.connect(str(project.root / "warehouse.duckdb"), read_only=True) as con:
        (schema,) = con.execute(
            "select table_schema from information_schema.tables where table_name = ?",
            [SPLIT_CHECK],
        ).fetchone()
        cursor = con.execute(f'select * from "{schema}"."{SPLIT_CHECK}" order by all')
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
