"""The split bucket is the same on Athena, on DuckDB and in Python (docs/design.md's contract).

`int(key[:15], 16) % 10000`: DuckDB's rendering runs in DuckDB on 100k random keys. Athena's
cannot run here, and sqlglot has no DuckDB translation of `from_base`, so its rendering is
parsed, checked to be exactly `from_base(substr(key, 1, 15), 16) % 10000`, and evaluated with
Trino's documented semantics (1-based substr; from_base parses a base-16 string as bigint).
"""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from tests.athena.conftest import OfflineDbt
from tests.pipeline.oracle import split_bucket

KEYS = 100_000
BIGINT_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def keys() -> list[str]:
    rng = random.Random(20150101)
    edge = ["0" * 32, "f" * 32, "0000000000002ed" + "a" * 17, "fffffffffffffff" + "0" * 17]
    return edge + [f"{rng.getrandbits(128):032x}" for _ in range(KEYS - len(edge))]


@pytest.fixture(scope="module")
def duckdb_bucket(tmp_path_factory) -> str:
    dbt = OfflineDbt(tmp_path_factory.mktemp("duckdb_bucket"))
    return dbt.render({"split_bucket": "{{ split_bucket('trip_key') }}"}, target="local")[
        "split_bucket"
    ]


def test_duckdb_bucket_equals_python_on_100k_keys(duckdb_bucket, keys):
    connection = duckdb.connect()
    connection.register("trips", pa.table({"trip_key": keys}))
    rows = connection.sql(f"select trip_key, {duckdb_bucket} from trips").fetchall()
    assert dict(rows) == {key: split_bucket(key) for key in keys}


def _athena_bucket(expression: exp.Expression, key: str) -> int:
    """Evaluate the Athena bucket expression for one key; only the node types it may contain."""
    if isinstance(expression, exp.Paren):
        return _athena_bucket(expression.this, key)
    if isinstance(expression, exp.Mod):
        return _athena_bucket(expression.this, key) % _athena_bucket(expression.expression, key)
    if isinstance(expression, exp.FromBase):
        digits = _athena_bucket(expression.this, key)
        value = int(digits, _athena_bucket(expression.expression, key))
        assert value <= BIGINT_MAX, "from_base would overflow bigint"
        return value
    if isinstance(expression, exp.Substring):
        start = _athena_bucket(expression.args["start"], key)
        length = _athena_bucket(expression.args["length"], key)
        return _athena_bucket(expression.this, key)[start - 1 : start - 1 + length]
    if isinstance(expression, exp.Column):
        assert expression.name == "trip_key"
        return key
    if isinstance(expression, exp.Literal) and not expression.is_string:
        return int(expression.this)
    raise AssertionError(f"unexpected node in the Athena bucket: {expression.sql('athena')}")


def test_athena_bucket_equals_python_on_100k_keys(athena_macros, keys):
    expression = sqlglot.parse_one(athena_macros["split_bucket"], read="athena")
    assert {type(node) for node in expression.walk()} == {
        exp.Paren,
        exp.Mod,
        exp.FromBase,
        exp.Substring,
        exp.Column,
        exp.Identifier,
        exp.Literal,
    }
    assert {key: _athena_bucket(expression, key) for key in keys} == {
        key: split_bucket(key) for key in keys
    }


def test_both_engines_take_the_same_hex_prefix_and_modulus(athena_macros, duckdb_bucket):
    """15 hex digits (60 bits: a signed bigint everywhere) and 10000 buckets on both engines."""
    athena = sqlglot.parse_one(athena_macros["split_bucket"], read="athena")
    duck = sqlglot.parse_one(duckdb_bucket, read="duckdb")
    for expression in (athena, duck):
        substring = expression.find(exp.Substring)
        assert (substring.args["start"].this, substring.args["length"].this) == ("1", "15")
        assert expression.find(exp.Mod).expression.this == "10000"
    assert BIGINT_MAX >= 16**15 - 1
