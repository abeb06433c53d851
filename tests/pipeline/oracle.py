"""An independent Python reading of docs/design.md's rules, to check the dbt marts against.

It shares no code with the dbt project: it reads the raw files itself and applies the
contract (line splitting, trip_key, split buckets, VACUUM rules in order, features) as
written in docs/design.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

HEADER = (
    "OBJECTID|TRIPTYPE|PROVIDERNAME|FAREAMOUNT|GRATUITYAMOUNT|SURCHARGEAMOUNT|"
    "EXTRAFAREAMOUNT|TOLLAMOUNT|TOTALAMOUNT|PAYMENTTYPE|ORIGINCITY|ORIGINSTATE|ORIGINZIP|"
    "DESTINATIONCITY|DESTINATIONSTATE|DESTINATIONZIP|MILEAGE|DURATION|ORIGIN_BLOCK_LATITUDE|"
    "ORIGIN_BLOCK_LONGITUDE|ORIGIN_BLOCKNAME|DESTINATION_BLOCK_LATITUDE|"
    "DESTINATION_BLOCK_LONGITUDE|DESTINATION_BLOCKNAME|AIRPORT|ORIGINDATETIME_TR|"
    "DESTINATIONDATETIME_TR"
)
FIELDS = HEADER.split("|")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TIMESTAMP = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}")


@dataclass(frozen=True)
class Rules:
    test_fraction: float = 0.075
    validation_fraction: float = 0.075
    fare_min: float = 3.25
    fare_max: float = 179.75
    lat_min: float = 38.81138
    lat_max: float = 38.994909
    lon_min: float = -77.113633
    lon_max: float = -76.910012
    pickup_date_min: dt.date = dt.date(2015, 1, 1)
    pickup_date_max: dt.date = dt.date(2019, 12, 31)


@dataclass(frozen=True)
class Outcome:
    trip_key: str
    source_file: str
    raw_line: str
    reason: str | None
    split: str
    features: dict | None


def trip_key(line: str) -> str:
    return hashlib.md5(line.encode("utf-8")).hexdigest()


def split_bucket(key: str) -> int:
    return int(key[:15], 16) % 10000


def split_of(key: str, rules: Rules = Rules()) -> str:
    bucket = split_bucket(key)
    if bucket < 10000 * rules.test_fraction:
        return "test"
    if bucket < 10000 * (rules.test_fraction + rules.validation_fraction):
        return "validation"
    return "train"


def parse_number(text: str) -> float | None:
    value = text.strip(" ")
    return float(value) if NUMBER.fullmatch(value) else None


def parse_timestamp(text: str) -> dt.datetime | None:
    value = text.strip(" ")
    if not TIMESTAMP.fullmatch(value):
        return None
    try:
        return dt.datetime.strptime(value, "%m/%d/%Y %H:%M")
    except ValueError:
        return None


UNREADABLE = ("\x00", "\r", "\ufffd")


def decode_line(raw: bytes) -> str:
    """A line's text: UTF-8, or when it is not, every byte >= 0x80 read as U+FFFD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(byte) if byte < 0x80 else "\ufffd" for byte in raw)


def read_lines(path: Path) -> list[str]:
    """Lines the way the raw source reads them: split on LF only, one CR before it removed
    (LF and CRLF mixed freely), a final newline optional, each line decoded on its own."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [decode_line(line).removesuffix("\r") for line in lines]


def _reason(fields: list[str], seen: set[str], key: str, rules: Rules) -> tuple[str | None, dict]:
    if len(fields) != 27 or any(char in "|".join(fields) for char in UNREADABLE):
        return "malformed_line", {}
    if key in seen:
        return "duplicate", {}
    seen.add(key)
    row = dict(zip(FIELDS, fields, strict=True))
    pickup = parse_timestamp(row["ORIGINDATETIME_TR"])
    if pickup is None:
        return "invalid_pickup_time", {}
    fare = parse_number(row["FAREAMOUNT"])
    if fare is None:
        return "invalid_fare", {}
    coords = {
        "origin_lat": parse_number(row["ORIGIN_BLOCK_LATITUDE"]),
        "origin_lon": parse_number(row["ORIGIN_BLOCK_LONGITUDE"]),
        "dest_lat": parse_number(row["DESTINATION_BLOCK_LATITUDE"]),
        "dest_lon": parse_number(row["DESTINATION_BLOCK_LONGITUDE"]),
    }
    if any(value is None for value in coords.values()):
        return "missing_coordinates", {}
    if not rules.fare_min <= fare <= rules.fare_max:
        return "fare_out_of_range", {}
    lats_ok = all(rules.lat_min <= coords[c] <= rules.lat_max for c in ("origin_lat", "dest_lat"))
    lons_ok = all(rules.lon_min <= coords[c] <= rules.lon_max for c in ("origin_lon", "dest_lon"))
    if not (lats_ok and lons_ok):
        return "outside_service_area", {}
    if not rules.pickup_date_min <= pickup.date() <= rules.pickup_date_max:
        return "pickup_time_out_of_range", {}
    return None, {
        "fare_amount": fare,
        **coords,
        "pickup_year": pickup.year,
        "pickup_month": pickup.month,
        "pickup_dow": pickup.isoweekday(),
        "pickup_hour": pickup.hour,
    }


def evaluate(raw_dir: Path, rules: Rules = Rules()) -> list[Outcome]:
    """Every data line of every `taxi_*.txt` under raw_dir, with its expected outcome."""
    outcomes = []
    seen: set[str] = set()
    for path in sorted(raw_dir.glob("taxi_*.txt")):
        for line in read_lines(path):
            if line == HEADER:
                continue
            key = trip_key(line)
            reason, features = _reason(line.split("|"), seen, key, rules)
            outcomes.append(
                Outcome(key, path.name, line, reason, split_of(key, rules), features or None)
            )
    return outcomes
