"""Ground-truth fare model of the synthetic DC taxi data.

The fare of a generated trip depends only on the 8 model features (``origin_lat``, ``origin_lon``,
``dest_lat``, ``dest_lon``, ``pickup_year``, ``pickup_month``, ``pickup_dow`` with ISO 1 = Monday
.. 7 = Sunday, ``pickup_hour``) plus noise:

1. Road distance ``r = max(route_factor * haversine_miles, min_trip_miles)``
   (defaults 1.3 and 0.5 miles).
2. Average speed in mph from a 24-hour profile, one for weekdays (slow rush hours 07-09 and
   16-18) and one for weekends (dow 6-7), times ``(1 - yearly_slowdown) ** (year - 2015)``
   (congestion grows 2 % a year) and a month factor (December 0.93, July 1.04, August 1.06).
   Trip time ``t = r / speed`` hours.
3. DC meter, continuous in distance (the meter's 1/8-mile steps average out over the unknown
   exact route): ``$3.50`` for the first 1/8 mile, ``$0.27`` per further 1/8 mile, and ``$25``
   per hour of waiting, where the waiting share of the trip time depends on the hour and
   weekday/weekend (about 0.35 in weekday rush hours, 0.08 at night).
4. Deterministic extra: a ``$1.00`` rush-hour surcharge on weekdays 07-09 and 16-18 o'clock in
   2015 and 2016.

This gives the noise-free meter fare ``mu(x)``. The recorded fare is
``round(max(mu(x) + eps, 3.50), 2)`` with ``eps ~ Normal(0, noise_sd = 2.0)``: a fare never shows
less than the meter's drop charge. So the best possible predictor is the censored-normal mean

    E[fare | x] = c + (mu - c) * Phi(z) + sd * phi(z),   z = (mu - c) / sd,  c = 3.50

(:func:`expected_fare`), and its conditional variance (:func:`fare_variance`, plus the 1/12 cent^2
of the rounding) is slightly below ``noise_sd ** 2``. The noise floor RMSE over a set of trips is
``sqrt(mean(fare_variance))``; the generator also measures it empirically on the clean rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

FEATURE_NAMES = (
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "pickup_year",
    "pickup_month",
    "pickup_dow",
    "pickup_hour",
)

EARTH_RADIUS_MILES = 3958.7613

# Average door-to-door speed (mph) by pickup hour 0..23.
_WEEKDAY_SPEED_MPH = (
    (22.0,) * 6 + (16.0,) + (9.0,) * 3 + (12.0,) * 6 + (8.5,) * 3 + (11.0,) + (15.0,) * 4
)
_WEEKEND_SPEED_MPH = (20.0,) * 6 + (18.0,) * 4 + (13.0,) * 6 + (12.0,) * 4 + (14.0,) * 4
# Share of the trip time the meter charges as waiting time, by pickup hour 0..23.
_WEEKDAY_WAIT_SHARE = (
    (0.08,) * 6 + (0.20,) + (0.35,) * 3 + (0.25,) * 6 + (0.35,) * 3 + (0.22,) + (0.18,) * 4
)
_WEEKEND_WAIT_SHARE = (0.10,) * 6 + (0.12,) * 4 + (0.20,) * 6 + (0.22,) * 4 + (0.15,) * 4
_MONTH_SPEED_FACTOR = (1.0,) * 6 + (1.04, 1.06) + (1.0,) * 3 + (0.93,)
_RUSH_HOURS = (7, 8, 9, 16, 17, 18)


@dataclass(frozen=True)
class FareModel:
    """Parameters of the ground-truth fare model (see the module docstring)."""

    route_factor: float = 1.3
    min_trip_miles: float = 0.5
    first_eighth_mile: float = 3.50
    per_eighth_mile: float = 0.27
    wait_per_hour: float = 25.0
    yearly_slowdown: float = 0.02
    rush_surcharge: float = 1.00
    rush_surcharge_last_year: int = 2016
    noise_sd: float = 2.0
    fare_floor: float = 3.50
    weekday_speed_mph: tuple[float, ...] = _WEEKDAY_SPEED_MPH
    weekend_speed_mph: tuple[float, ...] = _WEEKEND_SPEED_MPH
    weekday_wait_share: tuple[float, ...] = _WEEKDAY_WAIT_SHARE
    weekend_wait_share: tuple[float, ...] = _WEEKEND_WAIT_SHARE
    month_speed_factor: tuple[float, ...] = _MONTH_SPEED_FACTOR

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-serialisable values."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


DEFAULT_MODEL = FareModel()


def haversine_miles(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in miles between points given in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _split_features(features) -> tuple[np.ndarray, ...]:
    """Return the 8 feature columns: 4 float coordinates, then 4 validated integer arrays.

    Accepts a mapping (dict, pyarrow Table, pandas DataFrame) with the names in FEATURE_NAMES
    or an (n, 8) array with the columns in that order.
    """
    if isinstance(features, Mapping) or hasattr(features, "column_names"):
        cols = [np.asarray(features[name]) for name in FEATURE_NAMES]
    elif hasattr(features, "columns"):  # pandas DataFrame
        cols = [features[name].to_numpy() for name in FEATURE_NAMES]
    else:
        array = np.asarray(features, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"features must have shape (n, 8) in the order {FEATURE_NAMES}")
        cols = [array[:, i] for i in range(array.shape[1])]
    coords = [np.asarray(c, dtype=np.float64) for c in cols[:4]]
    calendar = []
    for name, values, low, high in zip(
        FEATURE_NAMES[4:], cols[4:], (1900, 1, 1, 0), (2200, 12, 7, 23), strict=True
    ):
        ints = np.asarray(values).astype(np.int64)
        if ints.size and (ints.min() < low or ints.max() > high):
            raise ValueError(f"{name} must lie in {low}..{high}")
        calendar.append(ints)
    return (*coords, *calendar)


@dataclass(frozen=True)
class TripProfile:
    """Deterministic trip quantities implied by the 8 features."""

    road_miles: np.ndarray
    trip_hours: np.ndarray
    meter_fare: np.ndarray  # mu(x), dollars, before noise, floor and rounding


def trip_profile(features, model: FareModel = DEFAULT_MODEL) -> TripProfile:
    """Road distance, trip time and noise-free meter fare of each trip."""
    olat, olon, dlat, dlon, year, month, dow, hour = _split_features(features)
    miles = np.maximum(
        model.route_factor * haversine_miles(olat, olon, dlat, dlon), model.min_trip_miles
    )
    weekend = dow >= 6
    speed = np.where(
        weekend,
        np.asarray(model.weekend_speed_mph)[hour],
        np.asarray(model.weekday_speed_mph)[hour],
    )
    speed = (
        speed
        * (1.0 - model.yearly_slowdown) ** (year - 2015)
        * np.asarray(model.month_speed_factor)[month - 1]
    )
    wait_share = np.where(
        weekend,
        np.asarray(model.weekend_wait_share)[hour],
        np.asarray(model.weekday_wait_share)[hour],
    )
    hours = miles / speed
    distance = model.first_eighth_mile + model.per_eighth_mile * np.maximum(8.0 * miles - 1.0, 0.0)
    rush = ~weekend & np.isin(hour, _RUSH_HOURS) & (year <= model.rush_surcharge_last_year)
    mu = (
        distance
        + model.wait_per_hour * wait_share * hours
        + np.where(rush, model.rush_surcharge, 0.0)
    )
    return TripProfile(road_miles=miles, trip_hours=hours, meter_fare=mu)


def fare_moments(meter: np.ndarray, model: FareModel = DEFAULT_MODEL):
    """Mean and variance (dollars, dollars^2) of the recorded fare given mu(x).

    The fare is round(max(mu + eps, c), 2) with eps ~ Normal(0, sd): a censored normal, whose
    mean is c + (mu - c) Phi(z) + sd phi(z) with z = (mu - c) / sd. The cent rounding leaves the
    mean unchanged (to ~1e-7 dollars) and adds 1/12 cent^2 to the variance.
    """
    sd, c = model.noise_sd, model.fare_floor
    shift = np.asarray(meter, dtype=np.float64) - c
    z = shift / sd
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    excess_mean = shift * cdf + sd * pdf
    excess_second = (shift * shift + sd * sd) * cdf + shift * sd * pdf
    variance = np.maximum(excess_second - excess_mean**2, 0.0) + 0.01**2 / 12.0
    return c + excess_mean, variance


def expected_fare(features, model: FareModel = DEFAULT_MODEL) -> np.ndarray:
    """E[fare | 8 features] in dollars: the best possible predictor of the label.

    Args:
        features: a mapping (dict, pyarrow Table, pandas DataFrame) with the columns named in
            FEATURE_NAMES, or an (n, 8) array with the columns in that order.
        model: fare model parameters; the generator's default unless it was run with others.
    """
    return fare_moments(trip_profile(features, model).meter_fare, model)[0]


def fare_variance(features, model: FareModel = DEFAULT_MODEL) -> np.ndarray:
    """Var[fare | 8 features] in dollars^2, including the cent rounding."""
    return fare_moments(trip_profile(features, model).meter_fare, model)[1]


def sample_fare_cents(
    meter: np.ndarray, rng: np.random.Generator, model: FareModel = DEFAULT_MODEL
) -> np.ndarray:
    """Draw recorded fares in integer cents, round(max(mu + eps, floor), 2), from mu(x)."""
    noisy = np.maximum(meter + rng.normal(0.0, model.noise_sd, size=meter.shape), model.fare_floor)
    return np.rint(noisy * 100.0).astype(np.int64)
