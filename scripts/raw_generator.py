"""Synthetic raw DC taxi trip files in the public format, with the real data's dirt.

Its command line is ``scripts/generate_raw.py``:

    python -m scripts.generate_raw --rows 200000 --months 2015-01:2019-06 --seed 42 --out data/raw

One pipe-delimited file per month, ``taxi_YYYY_MM.txt``, with the 27-column header of the public
files (see docs/design.md, "Raw data contract"), LF line endings, ASCII, no quoting. Times
are ``MM/DD/YYYY HH:00``; coordinates are block centres of a ~250 m grid printed with 6 decimals;
amounts have 2 decimals. Fares follow the ground-truth model in :mod:`scripts.fare_model`.

Dirt, as fractions of all data lines of a file, each drawn independently (``GeneratorParams``):

- pickup time missing (both time fields empty or ``NULL``), origin coordinates missing (latitude,
  longitude and block name empty or ``NULL``), destination coordinates missing;
- fare ``NULL`` (then all six amounts are ``NULL``), fare below $3.25 (zero, cents, or negative
  down to -2,064.71), fare above $179.75 (up to 745,557.28), fare that is not a number
  (one of ``FARE_GARBAGE``) -- mutually exclusive;
- one present point (origin or destination) moved to a Maryland/Virginia suburb outside the
  service area, or one present coordinate replaced by a non-number (one of ``COORD_GARBAGE``)
  -- mutually exclusive, drawn among rows with at least one point present so that the rate is
  still a share of all rows;
- TOTALAMOUNT off by 0.02..10.00 dollars (rows with a numeric fare only);
- exact duplicate lines (byte-identical copies of another line of the same file, anywhere in it).

Each month's rows depend only on (seed, year, month, rows-per-month base, parameters): its RNG
is seeded from (seed, year, month), so generating more months never changes existing files. The
sidecar ``<out>/_generator.json`` records the parameters, the rows and dirt counts per file, the
number of rows that pass every VACUUM rule (``clean_rows``) and the noise floor RMSE of the best
predictor E[fare | 8 features] on them.
"""

from __future__ import annotations

import calendar
import json
import math
import multiprocessing
import os
import re
import sys
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from scripts.fare_model import (
    DEFAULT_MODEL,
    FareModel,
    fare_moments,
    sample_fare_cents,
    trip_profile,
)
from training.defaults import GENERATOR_RECORD

HEADER = (
    "OBJECTID",
    "TRIPTYPE",
    "PROVIDERNAME",
    "FAREAMOUNT",
    "GRATUITYAMOUNT",
    "SURCHARGEAMOUNT",
    "EXTRAFAREAMOUNT",
    "TOLLAMOUNT",
    "TOTALAMOUNT",
    "PAYMENTTYPE",
    "ORIGINCITY",
    "ORIGINSTATE",
    "ORIGINZIP",
    "DESTINATIONCITY",
    "DESTINATIONSTATE",
    "DESTINATIONZIP",
    "MILEAGE",
    "DURATION",
    "ORIGIN_BLOCK_LATITUDE",
    "ORIGIN_BLOCK_LONGITUDE",
    "ORIGIN_BLOCKNAME",
    "DESTINATION_BLOCK_LATITUDE",
    "DESTINATION_BLOCK_LONGITUDE",
    "DESTINATION_BLOCKNAME",
    "AIRPORT",
    "ORIGINDATETIME_TR",
    "DESTINATIONDATETIME_TR",
)

# Service area (docs/design.md VACUUM rules) and the fare range a clean row must fall in.
LAT_MIN, LAT_MAX = 38.81138, 38.994909
LON_MIN, LON_MAX = -77.113633, -76.910012
FARE_MIN_CENTS, FARE_MAX_CENTS = 325, 17975
FIRST_MONTH, LAST_MONTH = (2015, 1), (2019, 12)
SIDECAR_NAME = GENERATOR_RECORD  # the record beside the raw files
FORMAT_VERSION = 1

# Values that are present but not numbers. Every one fails a cast to double in DuckDB and Athena.
FARE_GARBAGE = ("N/A", "12..5", "9,75", "--")
COORD_GARBAGE = ("N/A", "38..9", "-77.0.1", "?")
# Token codes that replace a formatted value: 0 keeps it, 1 empty field, 2 the literal NULL.
_KEEP, _EMPTY, _NULL = 0, 1, 2
_TOKENS = ("", "", "NULL", *FARE_GARBAGE, *COORD_GARBAGE)
_FARE_GARBAGE_CODE0 = 3
_COORD_GARBAGE_CODE0 = 3 + len(FARE_GARBAGE)

TRIP_TYPES = (("Ordinal", 0.95), ("VoD", 0.03), ("TransportDC", 0.02))
PROVIDERS = (
    ("Yellow Cab of DC", 0.20),
    ("Diamond Cab", 0.14),
    ("Capitol Cab", 0.14),
    ("Grand Cab", 0.10),
    ("Transco", 0.12),
    ("VIP Cab", 0.08),
    ("Independent", 0.12),
    ("Royal Cab", 0.05),
    ("Checker Cab", 0.05),
)
PAYMENT_TYPES = (("Credit", 0.55), ("Cash", 0.40), ("EHail", 0.04), ("Other", 0.01))
TIP_SHARES = ((0.0, 0.15), (0.10, 0.10), (0.15, 0.25), (0.18, 0.20), (0.20, 0.25), (0.25, 0.05))

# Relative pickup counts by hour 0..23.
_WEEKDAY_HOURS = (3, 2, 1.5, 1, 1, 1.5, 3, 5, 6, 5, 4.5, 5)
_WEEKDAY_HOURS += (5.5, 5, 5, 5.5, 6, 7, 7, 6.5, 6, 5.5, 5, 4)
_WEEKEND_HOURS = (7, 6.5, 5, 3, 2, 1.5, 1.5, 2, 3, 4, 5, 5.5)
_WEEKEND_HOURS += (6, 6, 6, 6, 6, 6, 6, 6, 6.5, 7, 7.5, 8)

# Where trips start and end: (weight, lat, lon, sd_lat, sd_lon), clipped to the service area.
_PLACES = (
    (0.45, 38.9015, -77.0330, 0.008, 0.011),  # downtown
    (0.25, 38.9050, -77.0250, 0.020, 0.024),  # rest of the city
    (0.05, 38.9055, -77.0630, 0.004, 0.005),  # Georgetown
    (0.05, 38.8870, -76.9990, 0.005, 0.006),  # Capitol Hill
    (0.07, 38.9230, -77.0320, 0.006, 0.006),  # U Street / Columbia Heights
    (0.03, 38.8760, -77.0030, 0.003, 0.004),  # Navy Yard
    (0.025, 38.8512, -77.0402, 0.0015, 0.0015),  # Reagan National Airport (DCA)
)
_DCA = (38.8512, -77.0402)
_CAPITOL = (38.8899, -77.0091)
# Places outside the service area: (city, state, zip, lat, lon, is_airport).
_SUBURBS = (
    ("SILVER SPRING", "MD", "20910", 39.0180, -77.0250, False),
    ("BETHESDA", "MD", "20814", 39.0000, -77.0947, False),
    ("LANDOVER", "MD", "20785", 38.9340, -76.8966, False),
    ("CAPITOL HEIGHTS", "MD", "20743", 38.8790, -76.8880, False),
    ("OXON HILL", "MD", "20745", 38.8030, -76.9897, False),
    ("ALEXANDRIA", "VA", "22314", 38.8048, -77.0469, False),
    ("FALLS CHURCH", "VA", "22046", 38.8823, -77.1711, False),
    ("MCLEAN", "VA", "22101", 38.9339, -77.1773, False),
    ("DULLES", "VA", "20166", 38.9531, -77.4565, True),
    ("LINTHICUM", "MD", "21240", 39.1774, -76.6684, True),
)
_DC_ZIPS = [str(z) for z in (*range(20001, 20013), *range(20015, 20021), 20024, 20032, 20037)]
# Street names by distance (in blocks) north or south of the Capitol.
# fmt: off
_NS_STREETS = [
    *"ABCDEFGHIKLMNPQRSTUVW",
    "ADAMS", "BRYANT", "CHANNING", "DOUGLAS", "EVARTS", "FRANKLIN", "GIRARD", "HAMLIN", "IRVING",
    "JACKSON", "KEARNY", "LAWRENCE", "MONROE", "NEWTON", "OTIS", "PERRY", "QUINCY", "RANDOLPH",
    "SHEPHERD", "TAYLOR", "UPSHUR", "VARNUM", "WEBSTER",
    "ALLISON", "BUCHANAN", "CRITTENDEN", "DECATUR", "EMERSON", "FARRAGUT", "GALLATIN",
    "HAMILTON", "INGRAHAM", "JEFFERSON", "KENNEDY", "LONGFELLOW", "MADISON", "NICHOLSON",
]
# fmt: on
# Block grid: ~250 m in both directions at DC's latitude.
_LAT_STEP, _LON_STEP = 0.00225, 0.0029
_CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class GeneratorParams:
    """Dirt rates (fractions of all data lines) and shape parameters of the generator.

    Defaults are the rates measured in the real 2015-01 .. 2019-06 files (../shared/BOOK.md).
    """

    pickup_time_missing: float = 0.21
    origin_coords_missing: float = 0.140
    dest_coords_missing: float = 0.194
    fare_null: float = 0.005
    fare_below_min: float = 0.0049
    fare_above_max: float = 0.0005
    fare_garbage: float = 0.0005
    outside_service_area: float = 0.01
    coord_garbage: float = 0.0005
    duplicate: float = 0.01
    total_inconsistent: float = 0.005
    # Share of missing times and coordinates written as the literal NULL rather than empty.
    null_literal_share: float = 0.5
    # Rows per month = base * (1 + amplitude * cos(2 pi (month - 4) / 12)): busiest in April.
    seasonal_amplitude: float = 0.08
    fare_low_min: float = -2064.71
    fare_high_max: float = 745557.28

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("fare_low_min", "fare_high_max") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be a fraction in [0, 1], got {value}")
        fare_dirt = self.fare_null + self.fare_below_min + self.fare_above_max + self.fare_garbage
        if fare_dirt > 1.0:
            raise ValueError("the fare dirt rates add up to more than 1")
        if self.outside_service_area + self.coord_garbage > self.any_point_present:
            raise ValueError("outside_service_area + coord_garbage exceed the rows with a point")
        if not self.fare_low_min < 0 < FARE_MAX_CENTS / 100 < self.fare_high_max:
            raise ValueError("need fare_low_min < 0 and fare_high_max > 179.75")

    @property
    def any_point_present(self) -> float:
        """Probability that a row has its origin or its destination coordinates."""
        return 1.0 - self.origin_coords_missing * self.dest_coords_missing


@dataclass(frozen=True)
class _Locations:
    """Every place a trip can start or end: DC block cells first, then suburb blocks."""

    lat_u: np.ndarray  # micro-degrees, int64
    lon_u: np.ndarray
    lat_text: pa.Array  # the same, formatted with 6 decimals
    lon_text: pa.Array
    block: pa.Array
    city: pa.Array
    state: pa.Array
    zip: pa.Array
    airport: np.ndarray  # bool
    n_lat: int
    n_lon: int

    @property
    def n_dc(self) -> int:
        return self.n_lat * self.n_lon


@lru_cache(maxsize=1)
def _locations() -> _Locations:
    """Build the block grid of the service area and the suburb blocks outside it."""
    n_lat = int((LAT_MAX - LAT_MIN) / _LAT_STEP)
    n_lon = int((LON_MAX - LON_MIN) / _LON_STEP)
    ic = int((_CAPITOL[0] - LAT_MIN) / _LAT_STEP)
    jc = int((_CAPITOL[1] - LON_MIN) / _LON_STEP)
    lat, lon, block, city, state, zips, airport = [], [], [], [], [], [], []
    for i in range(n_lat):
        street = f"{_NS_STREETS[abs(i - ic) % len(_NS_STREETS)]} ST"
        for j in range(n_lon):
            quadrant = ("N" if i >= ic else "S") + ("W" if j < jc else "E")
            cell_lat = LAT_MIN + (i + 0.5) * _LAT_STEP
            cell_lon = LON_MIN + (j + 0.5) * _LON_STEP
            lat.append(cell_lat)
            lon.append(cell_lon)
            block.append(f"{abs(j - jc) * 100} BLOCK OF {street} {quadrant}")
            city.append("WASHINGTON")
            state.append("DC")
            zips.append(_DC_ZIPS[((i // 12) * 7 + j // 12) % len(_DC_ZIPS)])
            airport.append(abs(cell_lat - _DCA[0]) <= 0.004 and abs(cell_lon - _DCA[1]) <= 0.004)
    for name, st, zip_code, lat0, lon0, is_airport in _SUBURBS:
        for k, (di, dj) in enumerate((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)):
            lat.append(lat0 + di * _LAT_STEP)
            lon.append(lon0 + dj * _LON_STEP)
            block.append(f"{100 * (k + 1)} BLOCK OF MAIN ST")
            city.append(name)
            state.append(st)
            zips.append(zip_code)
            airport.append(is_airport)
    lat_u = np.rint(np.array(lat) * 1e6).astype(np.int64)
    lon_u = np.rint(np.array(lon) * 1e6).astype(np.int64)
    inside = _inside_area(lat_u / 1e6, lon_u / 1e6)
    n_dc = n_lat * n_lon
    assert inside[:n_dc].all() and not inside[n_dc:].any(), "location grid vs service area"
    return _Locations(
        lat_u=lat_u,
        lon_u=lon_u,
        lat_text=_fixed(lat_u, 6),
        lon_text=_fixed(lon_u, 6),
        block=pa.array(block),
        city=pa.array(city),
        state=pa.array(state),
        zip=pa.array(zips),
        airport=np.array(airport),
        n_lat=n_lat,
        n_lon=n_lon,
    )


def _inside_area(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return (lat >= LAT_MIN) & (lat <= LAT_MAX) & (lon >= LON_MIN) & (lon <= LON_MAX)


def _cdf(weights) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return cdf / cdf[-1]


def _categorical(rng: np.random.Generator, weights, n: int) -> np.ndarray:
    """Draw n category indices with the given relative weights."""
    return np.searchsorted(_cdf(weights), rng.random(n), side="right").astype(np.int64)


def _sample_dc_cells(rng: np.random.Generator, n: int, locs: _Locations) -> np.ndarray:
    """Draw trip ends clustered towards downtown, snapped to the block grid."""
    places = np.array([p[1:] for p in _PLACES])
    which = _categorical(rng, [p[0] for p in _PLACES], n)
    lat = places[which, 0] + places[which, 2] * rng.standard_normal(n)
    lon = places[which, 1] + places[which, 3] * rng.standard_normal(n)
    i = np.clip(((lat - LAT_MIN) / _LAT_STEP).astype(np.int64), 0, locs.n_lat - 1)
    j = np.clip(((lon - LON_MIN) / _LON_STEP).astype(np.int64), 0, locs.n_lon - 1)
    return i * locs.n_lon + j


def seasonal_weight(month: int, params: GeneratorParams) -> float:
    """Relative number of trips in a calendar month: busiest in April, quietest in October."""
    return 1.0 + params.seasonal_amplitude * math.cos(2.0 * math.pi * (month - 4) / 12.0)


def month_row_count(rows_per_month: float, month: int, params: GeneratorParams) -> int:
    """Data lines of one month file: the base count times the month's seasonal weight."""
    return max(1, round(rows_per_month * seasonal_weight(month, params)))


def _time_table(year: int, month: int, days: int) -> pa.Array:
    """`MM/DD/YYYY HH:00` for every hour from the month's start to 3 days after its end."""
    start = datetime(year, month, 1)
    return pa.array(
        [(start + timedelta(hours=h)).strftime("%m/%d/%Y %H:%M") for h in range((days + 3) * 24)]
    )


def _fixed(values: np.ndarray, decimals: int) -> pa.Array:
    """Format integers in units of 10**-decimals as fixed-point decimal strings."""
    scale = 10**decimals
    magnitude = np.abs(values)
    whole = pc.cast(pa.array(magnitude // scale), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(magnitude % scale), pa.string()), decimals, "0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    negative = values < 0
    if negative.any():
        signed = pc.binary_join_element_wise(pa.scalar("-"), text, "")
        text = signed if negative.all() else pc.if_else(pa.array(negative), signed, text)
    return text


@lru_cache(maxsize=1)
def _small_number_table() -> pa.Array:
    """Formatted 0.00 .. 999.99: most amounts and mileages are looked up, not formatted."""
    return _fixed(np.arange(100_000), 2)


def _hundredths(values: np.ndarray) -> pa.Array:
    """Format integers in hundredths with 2 decimals (same result as _fixed(values, 2))."""
    table = _small_number_table()
    inside = (values >= 0) & (values < len(table))
    text = pc.take(table, pa.array(np.where(inside, values, 0)))
    if not inside.all():
        text = pc.replace_with_mask(text, pa.array(~inside), _fixed(values[~inside], 2))
    return text


def _with_tokens(text: pa.Array, tokens: np.ndarray) -> pa.Array:
    """Replace values whose token code is not 0 by the token (empty, NULL, garbage)."""
    if not tokens.any():
        return text
    return pc.if_else(pa.array(tokens != _KEEP), pc.take(_token_array(), pa.array(tokens)), text)


@lru_cache(maxsize=1)
def _token_array() -> pa.Array:
    return pa.array(_TOKENS)


def _missing_tokens(rng: np.random.Generator, missing: np.ndarray, null_share: float):
    """Token codes for missing values: empty or NULL at random, 0 where present."""
    tokens = np.zeros(missing.shape, dtype=np.uint8)
    k = int(missing.sum())
    tokens[missing] = np.where(rng.random(k) < null_share, _NULL, _EMPTY)
    return tokens


def _draw_where(mask: np.ndarray, draw) -> tuple[np.ndarray, np.ndarray]:
    """Indices where mask holds and draw(k) values for them (only k values are drawn)."""
    where = np.flatnonzero(mask)
    return where, draw(where.size)


def _month_columns(
    year: int,
    month: int,
    n: int,
    rng: np.random.Generator,
    params: GeneratorParams,
    model: FareModel,
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Draw the n distinct trips of a month as numeric/code columns, plus their statistics.

    Each step below draws from `rng` in turn; their order is part of the seed's output."""
    locs = _locations()
    pickup, dow = _draw_pickups(rng, year, month, n)
    origin = _sample_dc_cells(rng, n, locs)
    dest = _sample_dc_cells(rng, n, locs)
    missing = _draw_missing(rng, n, params)
    coords = _draw_coordinate_dirt(rng, params, locs, origin, dest, missing)
    features = {
        "origin_lat": locs.lat_u[origin] / 1e6,
        "origin_lon": locs.lon_u[origin] / 1e6,
        "dest_lat": locs.lat_u[dest] / 1e6,
        "dest_lon": locs.lon_u[dest] / 1e6,
        "pickup_year": np.full(n, year),
        "pickup_month": np.full(n, month),
        "pickup_dow": dow,
        "pickup_hour": pickup % 24,
    }
    profile = trip_profile(features, model)
    true_fare = sample_fare_cents(profile.meter_fare, rng, model)
    fare_kind, fare = _draw_fare_dirt(rng, params, true_fare)
    amounts = _draw_amounts(rng, params, fare_kind, fare, true_fare)
    tokens = _draw_tokens(rng, params, fare_kind, missing, coords)
    descriptors = _draw_descriptors(rng, profile, pickup)
    month_key = (year - FIRST_MONTH[0]) * 12 + month - 1
    columns = {
        "objectid": month_key * 100_000_000 + np.arange(1, n + 1, dtype=np.int64),
        "triptype": _categorical(rng, [w for _, w in TRIP_TYPES], n),
        "provider": _categorical(rng, [w for _, w in PROVIDERS], n),
        "fare": fare,
        **{key: value for key, value in amounts.items() if key != "inconsistent"},
        "origin": origin,
        "dest": dest,
        "mileage": descriptors["mileage"],
        "duration": descriptors["duration"],
        "airport": locs.airport[origin] | locs.airport[dest],
        "pickup": pickup,
        "dropoff": descriptors["dropoff"],
        **tokens,
    }
    masks = {
        **missing,
        "fare_null": fare_kind == 0,
        "fare_below_min": fare_kind == 1,
        "fare_above_max": fare_kind == 2,
        "fare_garbage": fare_kind == 3,
        "outside_service_area": coords["outside"],
        "coord_garbage": coords["garbage"],
        "total_inconsistent": amounts["inconsistent"],
    }
    return columns, {"masks": masks, **_clean_stats(masks, fare, profile, model)}


def _draw_pickups(
    rng: np.random.Generator, year: int, month: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pickup hours of the month (uniform day, hour profile by weekday/weekend), sorted like
    the real files, and their ISO weekdays."""
    days = calendar.monthrange(year, month)[1]
    first_dow = date(year, month, 1).isoweekday()
    day = rng.integers(0, days, n)
    weekend = (first_dow - 1 + day) % 7 >= 5
    u = rng.random(n)
    hour = np.where(
        weekend,
        np.searchsorted(_cdf(_WEEKEND_HOURS), u, side="right"),
        np.searchsorted(_cdf(_WEEKDAY_HOURS), u, side="right"),
    )
    pickup = np.sort(day * 24 + hour)
    return pickup, (first_dow - 1 + pickup // 24) % 7 + 1


def _draw_missing(rng: np.random.Generator, n: int, params: GeneratorParams) -> dict:
    """Rows whose pickup time, origin or destination is missing."""
    return {
        "pickup_time_missing": rng.random(n) < params.pickup_time_missing,
        "origin_coords_missing": rng.random(n) < params.origin_coords_missing,
        "dest_coords_missing": rng.random(n) < params.dest_coords_missing,
    }


def _draw_coordinate_dirt(
    rng: np.random.Generator,
    params: GeneratorParams,
    locs: _Locations,
    origin: np.ndarray,
    dest: np.ndarray,
    missing: dict,
) -> dict:
    """Coordinate anomalies among rows with a point present, one point each: outside the
    service area (moves `origin` or `dest` to a suburb, in place) or garbage text. `on_dest`
    says which point."""
    origin_missing, dest_missing = missing["origin_coords_missing"], missing["dest_coords_missing"]
    n = origin.size
    has_point = ~(origin_missing & dest_missing)
    u = rng.random(n) * params.any_point_present
    outside = has_point & (u < params.outside_service_area)
    garbage = (
        has_point
        & (u >= params.outside_service_area)
        & (u < params.outside_service_area + params.coord_garbage)
    )
    on_dest = np.where(origin_missing, True, np.where(dest_missing, False, rng.random(n) < 0.5))
    rows, suburbs = _draw_where(outside, lambda k: rng.integers(locs.n_dc, locs.lat_u.size, k))
    origin[rows[~on_dest[rows]]] = suburbs[~on_dest[rows]]
    dest[rows[on_dest[rows]]] = suburbs[on_dest[rows]]
    return {"outside": outside, "garbage": garbage, "on_dest": on_dest}


def _draw_fare_dirt(
    rng: np.random.Generator, params: GeneratorParams, true_fare: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One kind of fare dirt per row at most (0 null, 1 below, 2 above, 3 garbage, 4 clean),
    and the recorded fare in cents."""
    fare_kind = np.searchsorted(
        np.cumsum(
            [params.fare_null, params.fare_below_min, params.fare_above_max, params.fare_garbage]
        ),
        rng.random(true_fare.size),
        side="right",
    )
    fare = true_fare.copy()
    rows, low = _draw_where(fare_kind == 1, lambda k: _low_fares(rng, k, params))
    fare[rows] = low
    log_lo, log_hi = math.log(FARE_MAX_CENTS + 1), math.log(round(params.fare_high_max * 100))
    rows, high = _draw_where(
        fare_kind == 2, lambda k: np.rint(np.exp(rng.uniform(log_lo, log_hi, k))).astype(np.int64)
    )
    fare[rows] = high
    return fare_kind, fare


def _draw_amounts(
    rng: np.random.Generator,
    params: GeneratorParams,
    fare_kind: np.ndarray,
    fare: np.ndarray,
    true_fare: np.ndarray,
) -> dict:
    """Tip, surcharge, extra, toll and total in cents, the payment type, and the rows whose
    total does not add up (`inconsistent`)."""
    n = fare.size
    fare_numeric = (fare_kind == 1) | (fare_kind == 2) | (fare_kind == 4)
    payment = _categorical(rng, [w for _, w in PAYMENT_TYPES], n)
    tip_share = np.array([s for s, _ in TIP_SHARES])[
        _categorical(rng, [w for _, w in TIP_SHARES], n)
    ]
    tip = np.where(payment == 0, np.rint(np.maximum(fare, 0) * tip_share), 0).astype(np.int64)
    surcharge = np.full(n, 25, dtype=np.int64)
    extra = np.where(rng.random(n) < 0.12, 100, 0).astype(np.int64)
    toll = np.zeros(n, dtype=np.int64)
    rows, tolls = _draw_where(rng.random(n) < 0.005, lambda k: rng.choice([150, 300, 550], k))
    toll[rows] = tolls
    total = np.where(fare_kind == 3, true_fare, fare) + tip + surcharge + extra + toll
    inconsistent = fare_numeric & (rng.random(n) < params.total_inconsistent)
    rows, delta = _draw_where(
        inconsistent, lambda k: rng.integers(2, 1001, k) * np.where(rng.random(k) < 0.5, -1, 1)
    )
    total[rows] += delta
    return {
        "tip": tip,
        "surcharge": surcharge,
        "extra": extra,
        "toll": toll,
        "total": total,
        "payment": payment,
        "inconsistent": inconsistent,
    }


def _draw_tokens(
    rng: np.random.Generator,
    params: GeneratorParams,
    fare_kind: np.ndarray,
    missing: dict,
    coords: dict,
) -> dict:
    """Per text field, the token written instead of the formatted value (0 keeps it): NULL
    literals or empty fields for missing values, garbage text for fare and coordinate dirt."""
    amount_tokens = np.where(fare_kind == 0, _NULL, _KEEP).astype(np.uint8)
    fare_tokens = amount_tokens.copy()
    rows, codes = _draw_where(
        fare_kind == 3, lambda k: _FARE_GARBAGE_CODE0 + rng.integers(0, len(FARE_GARBAGE), k)
    )
    fare_tokens[rows] = codes
    share = params.null_literal_share
    time_tokens = _missing_tokens(rng, missing["pickup_time_missing"], share)
    origin_tokens = _missing_tokens(rng, missing["origin_coords_missing"], share)
    dest_tokens = _missing_tokens(rng, missing["dest_coords_missing"], share)
    coord_tokens = [origin_tokens.copy(), origin_tokens.copy(), dest_tokens, dest_tokens.copy()]
    rows, codes = _draw_where(
        coords["garbage"],
        lambda k: _COORD_GARBAGE_CODE0 + rng.integers(0, len(COORD_GARBAGE), k),
    )
    column = 2 * coords["on_dest"][rows] + rng.integers(0, 2, rows.size)  # olat, olon, dlat, dlon
    for c in range(4):
        coord_tokens[c][rows[column == c]] = codes[column == c]
    return {
        "amount_tokens": amount_tokens,
        "fare_tokens": fare_tokens,
        "olat_tokens": coord_tokens[0],
        "olon_tokens": coord_tokens[1],
        "oblock_tokens": origin_tokens,
        "dlat_tokens": coord_tokens[2],
        "dlon_tokens": coord_tokens[3],
        "dblock_tokens": dest_tokens,
        "time_tokens": time_tokens,
    }


def _draw_descriptors(rng: np.random.Generator, profile, pickup: np.ndarray) -> dict:
    """Trip descriptors that are not model features: mileage, duration, dropoff hour."""
    n = pickup.size
    mileage = np.rint(profile.road_miles * rng.lognormal(0.0, 0.12, n) * 100).astype(np.int64)
    duration = np.clip(
        np.rint(profile.trip_hours * 60 * rng.lognormal(0.0, 0.2, n)), 1, 600
    ).astype(np.int64)
    dropoff = pickup + np.floor((rng.integers(-30, 30, n) + duration) / 60 + 0.5).astype(np.int64)
    return {"mileage": mileage, "duration": duration, "dropoff": dropoff}


def _clean_stats(masks: dict, fare: np.ndarray, profile, model: FareModel) -> dict:
    """The clean rows' count and, against the fare model, their squared error and variance."""
    clean = ~np.logical_or.reduce(
        [masks[name] for name in (
            "pickup_time_missing", "origin_coords_missing", "dest_coords_missing", "fare_null",
            "fare_above_max", "fare_garbage", "fare_below_min", "outside_service_area",
            "coord_garbage",
        )]
    ) & (fare >= FARE_MIN_CENTS) & (fare <= FARE_MAX_CENTS)  # fmt: skip
    mean, variance = fare_moments(profile.meter_fare[clean], model)
    return {
        "clean_rows": int(clean.sum()),
        "sum_sq_error": float(np.sum((fare[clean] / 100.0 - mean) ** 2)),
        "sum_variance": float(np.sum(variance)),
    }


def _low_fares(rng: np.random.Generator, k: int, params: GeneratorParams) -> np.ndarray:
    """Fares below $3.25 in cents: 30% zero, 50% 0.01..3.24, 20% negative (log-uniform)."""
    kind = rng.random(k)
    cents = rng.integers(1, FARE_MIN_CENTS, k)
    negative = -np.rint(np.exp(rng.uniform(0.0, math.log(-params.fare_low_min * 100), k)))
    return np.where(kind < 0.3, 0, np.where(kind < 0.8, cents, negative)).astype(np.int64)


def _format_lines(cols: dict[str, np.ndarray], times: pa.Array) -> pa.Array:
    """Format one chunk of rows as `|`-joined lines, each ending in LF."""
    locs = _locations()

    def lookup(table, idx):
        return pc.take(table, pa.array(idx))

    def amount(name, tokens):
        return _with_tokens(_hundredths(cols[name]), tokens)

    amount_tokens = cols["amount_tokens"]
    origin, dest = cols["origin"], cols["dest"]
    fields_ = [
        pc.cast(pa.array(cols["objectid"]), pa.string()),
        lookup(pa.array([t for t, _ in TRIP_TYPES]), cols["triptype"]),
        lookup(pa.array([p for p, _ in PROVIDERS]), cols["provider"]),
        amount("fare", cols["fare_tokens"]),
        amount("tip", amount_tokens),
        amount("surcharge", amount_tokens),
        amount("extra", amount_tokens),
        amount("toll", amount_tokens),
        amount("total", amount_tokens),
        lookup(pa.array([p for p, _ in PAYMENT_TYPES]), cols["payment"]),
        lookup(locs.city, origin),
        lookup(locs.state, origin),
        lookup(locs.zip, origin),
        lookup(locs.city, dest),
        lookup(locs.state, dest),
        lookup(locs.zip, dest),
        _hundredths(cols["mileage"]),
        pc.cast(pa.array(cols["duration"]), pa.string()),
        _with_tokens(lookup(locs.lat_text, origin), cols["olat_tokens"]),
        _with_tokens(lookup(locs.lon_text, origin), cols["olon_tokens"]),
        _with_tokens(lookup(locs.block, origin), cols["oblock_tokens"]),
        _with_tokens(lookup(locs.lat_text, dest), cols["dlat_tokens"]),
        _with_tokens(lookup(locs.lon_text, dest), cols["dlon_tokens"]),
        _with_tokens(lookup(locs.block, dest), cols["dblock_tokens"]),
        lookup(pa.array(["N", "Y"]), cols["airport"].astype(np.int64)),
        _with_tokens(lookup(times, cols["pickup"]), cols["time_tokens"]),
        _with_tokens(lookup(times, cols["dropoff"]), cols["time_tokens"]),
    ]
    lines = pc.binary_join_element_wise(*fields_, "|")
    return pc.binary_join_element_wise(lines, pa.scalar(""), "\n")


def _write_lines(handle, lines: pa.Array) -> None:
    """Write the concatenated values of a null-free string array without copying them."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = lines.buffers()[2]
    handle.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def generate_month(
    year: int,
    month: int,
    rows_per_month: float,
    seed: int,
    out_dir: Path,
    params: GeneratorParams,
    model: FareModel = DEFAULT_MODEL,
) -> dict[str, object]:
    """Write `taxi_YYYY_MM.txt` into out_dir and return its statistics for the sidecar."""
    rng = np.random.default_rng([seed, year, month])
    n_lines = month_row_count(rows_per_month, month, params)
    n_dup = int(rng.binomial(n_lines - 1, params.duplicate))
    n = n_lines - n_dup
    cols, stats = _month_columns(year, month, n, rng, params, model)

    # Duplicates: copies of random trips inserted at random places of the file.
    sources = rng.integers(0, n, n_dup)
    order = np.insert(np.arange(n), rng.integers(0, n + 1, n_dup), sources)

    name = f"taxi_{year:04d}_{month:02d}.txt"
    times = _time_table(year, month, calendar.monthrange(year, month)[1])
    partial = out_dir / f".{name}.partial"
    with open(partial, "wb") as handle:
        handle.write(("|".join(HEADER) + "\n").encode("ascii"))
        for start in range(0, n_lines, _CHUNK_ROWS):
            rows = order[start : start + _CHUNK_ROWS]
            _write_lines(handle, _format_lines({k: v[rows] for k, v in cols.items()}, times))
    os.replace(partial, out_dir / name)

    counts = {k: int(m.sum() + m[sources].sum()) for k, m in stats.pop("masks").items()}
    return {
        "file": name,
        "rows": n_lines,
        "rows_per_month_base": rows_per_month,
        "dirt_counts": {**counts, "duplicate": n_dup},
        **stats,
    }


def _generate_month_job(job: tuple) -> dict[str, object]:
    return generate_month(*job)


def parse_months(spec: str) -> list[tuple[int, int]]:
    """Parse `YYYY-MM:YYYY-MM` (or one `YYYY-MM`) into the list of (year, month) it spans."""
    match = re.fullmatch(r"(\d{4})-(\d{2})(?::(\d{4})-(\d{2}))?", spec.strip())
    if not match:
        raise ValueError(f"--months must look like 2015-01:2019-06, got {spec!r}")
    first = (int(match[1]), int(match[2]))
    last = (int(match[3]), int(match[4])) if match[3] else first
    for ym in (first, last):
        if not 1 <= ym[1] <= 12:
            raise ValueError(f"--months: month must be 01..12, got {spec!r}")
        if not FIRST_MONTH <= ym <= LAST_MONTH:
            raise ValueError("--months must lie within 2015-01:2019-12 (the valid pickup dates)")
    if first > last:
        raise ValueError(f"--months: the first month comes after the last in {spec!r}")
    months = []
    year, month = first
    while (year, month) <= last:
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _sidecar(
    out_dir: Path,
    seed: int,
    params: GeneratorParams,
    model: FareModel,
    new_files: list[dict[str, object]],
) -> dict[str, object]:
    """Sidecar contents: this run's files plus those of earlier runs with the same settings."""
    settings = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "params": asdict(params),
        "fare_model": model.as_dict(),
    }
    files = {}
    path = out_dir / SIDECAR_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if all(old.get(k) == v for k, v in settings.items()):
            files = {n: f for n, f in old.get("files", {}).items() if (out_dir / n).exists()}
    files.update({f["file"]: {k: v for k, v in f.items() if k != "file"} for f in new_files})
    files = dict(sorted(files.items()))
    rows = sum(f["rows"] for f in files.values())
    clean = sum(f["clean_rows"] for f in files.values())
    dirt = {k: sum(f["dirt_counts"][k] for f in files.values()) for k in _dirt_names(files)}
    return {
        "generator": "scripts.generate_raw",
        **settings,
        "months": [f"{n[5:9]}-{n[10:12]}" for n in files],
        "rows": rows,
        "rows_per_file": {n: f["rows"] for n, f in files.items()},
        "dirt_counts": dirt,
        "dirt_rates": {k: v / rows for k, v in dirt.items()},
        "clean_rows": clean,
        "noise_sd": model.noise_sd,
        "noise_floor_rmse": _root_mean(sum(f["sum_sq_error"] for f in files.values()), clean),
        "noise_floor_rmse_analytic": _root_mean(
            sum(f["sum_variance"] for f in files.values()), clean
        ),
        "notes": {
            "noise_floor_rmse": "RMSE of E[fare | 8 features] (scripts.fare_model.expected_fare) "
            "over the clean rows, measured on the generated fares",
            "noise_floor_rmse_analytic": "sqrt(mean Var[fare | 8 features]) over the clean rows "
            "(censored normal at fare_floor plus cent rounding)",
            "clean_rows": "rows passing every VACUUM rule of DESIGN.md (first copy of duplicates)",
            "dirt_counts": "data lines per kind of injected dirt, duplicate copies included; "
            "duplicate = extra copies",
            "fare_garbage": list(FARE_GARBAGE),
            "coord_garbage": list(COORD_GARBAGE),
        },
        "files": files,
    }


def _root_mean(total: float, count: int) -> float | None:
    return math.sqrt(total / count) if count else None


def _dirt_names(files: dict[str, dict]) -> list[str]:
    names: list[str] = []
    for f in files.values():
        names += [k for k in f["dirt_counts"] if k not in names]
    return names


def generate(
    out: Path,
    months: list[tuple[int, int]],
    seed: int,
    rows: int | None = None,
    rows_per_month: float | None = None,
    workers: int = 1,
    quiet: bool = False,
) -> dict:
    """Write one file per month into `out` and the sidecar; returns the sidecar.

    The size is `rows` in all (spread by the seasonal weight) or `rows_per_month` as the base.
    """
    params, model = GeneratorParams(), DEFAULT_MODEL
    if rows_per_month is not None:
        base = rows_per_month
    else:
        base = rows / sum(seasonal_weight(m, params) for _, m in months)
    jobs = [(y, m, base, seed, out, params, model) for y, m in months]
    workers = min(workers, len(jobs))
    progress = tqdm(total=len(jobs), unit="month", disable=quiet, file=sys.stderr)
    results = []
    with progress:
        if workers == 1:
            for job in jobs:
                results.append(_generate_month_job(job))
                progress.update()
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap(_generate_month_job, jobs):
                    results.append(result)
                    progress.update()
    sidecar = _sidecar(out, seed, params, model, results)
    (out / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
    if not quiet:
        print(
            f"wrote {len(results)} files, {sum(r['rows'] for r in results)} rows to {out}; "
            f"folder: {sidecar['rows']} rows, {sidecar['clean_rows']} clean, "
            f"noise floor RMSE {sidecar['noise_floor_rmse'] or float('nan'):.4f}",
            file=sys.stderr,
        )
    return sidecar
