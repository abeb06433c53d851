"""PySpark baseline for the SQL-pipeline benchmark: the book's Glue job, done right, run locally.

    python -m benchmarks.spark_clean_split --raw data/raw --lake /tmp/spark_lake

The same work as the dbt models (docs/design.md), written the way a Spark user writes a
Glue/EMR cleaning job with the DataFrame API: read every raw line whole (``spark.read.text``),
``input_file_name`` for the source file, ``md5`` of the line as ``trip_key``, ``split`` on ``|``,
a ``row_number`` window per key to tell duplicates (``dropDuplicates`` would drop them silently,
the quarantine needs them), the VACUUM rules in order with the same strict parsing, ``conv`` for
the hash bucket, then ``write.partitionBy('split').parquet`` for trip_features plus the
trips_rejected, feature_stats and data_quality_summary datasets (zstd, like DuckDB's COPY).

Runs in ``local[*]`` mode by default; needs Java 17+ and ``pip install 'pyspark>=4.0,<5'``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

RAW_FIELDS = (
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
HEADER = "|".join(RAW_FIELDS)

# Same patterns as dbt_project/macros/parsing.sql, anchored for rlike; `\z`, not `$`, which in
# Java also matches before a trailing line terminator ("12.5\r" must not count as a number).
NUMBER_PATTERN = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?\z"
TIMESTAMP_PATTERN = r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}\z"

# dbt vars' defaults (dbt_project/dbt_project.yml).
FARE_MIN, FARE_MAX = 3.25, 179.75
LAT_MIN, LAT_MAX = 38.81138, 38.994909
LON_MIN, LON_MAX = -77.113633, -76.910012
PICKUP_DATE_MIN, PICKUP_DATE_MAX = "2015-01-01", "2019-12-31"
TEST_FRACTION, VALIDATION_FRACTION = 0.075, 0.075

FEATURES = (
    "fare_amount",
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "pickup_year",
    "pickup_month",
    "pickup_dow",
    "pickup_hour",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="folder holding the raw taxi_*.txt files")
    parser.add_argument("--lake", required=True, help="output root; datasets are replaced")
    parser.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    parser.add_argument(
        "--driver-memory",
        default="4g",
        help="JVM heap of the local driver, which also runs the executors (default 4g)",
    )
    parser.add_argument(
        "--shuffle-partitions",
        type=int,
        default=None,
        help="spark.sql.shuffle.partitions (default: Spark's own, 200, coalesced by AQE)",
    )
    return parser.parse_args(argv)


def build_session(args: argparse.Namespace):
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName("dc-taxi-clean-split")
        .master(args.master)
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Let adaptive execution coalesce the window's 200 shuffle partitions even though the
        # validated frame is cached (off by default; without it every write runs 200 tasks).
        .config("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "true")
    )
    if args.shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def clean_and_split(spark, raw_files: list[str], lake: str) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def number(text):
        trimmed = F.trim(text)
        return F.when(trimmed.rlike(NUMBER_PATTERN), trimmed.try_cast("double"))

    def timestamp(text):
        trimmed = F.trim(text)
        return F.when(
            trimmed.rlike(TIMESTAMP_PATTERN),
            F.try_to_timestamp(trimmed, F.lit("MM/dd/yyyy HH:mm")),
        )

    lines = (
        spark.read.text(raw_files)
        .select(
            F.element_at(F.split(F.input_file_name(), "/"), -1).alias("source_file"),
            F.col("value").alias("raw_line"),
        )
        .where(F.col("raw_line") != HEADER)
    )

    fields = F.split("raw_line", r"\|", -1)
    parsed = lines.select(
        F.md5("raw_line").alias("trip_key"),
        "source_file",
        "raw_line",
        F.size(fields).alias("field_count"),
        number(F.try_element_at(fields, F.lit(4))).alias("fare_amount"),
        number(F.try_element_at(fields, F.lit(19))).alias("origin_lat"),
        number(F.try_element_at(fields, F.lit(20))).alias("origin_lon"),
        number(F.try_element_at(fields, F.lit(22))).alias("dest_lat"),
        number(F.try_element_at(fields, F.lit(23))).alias("dest_lon"),
        timestamp(F.try_element_at(fields, F.lit(26))).alias("pickup_at"),
    )

    # Exact duplicate lines share a key: keep the first (by file), quarantine the rest.
    first_by_file = Window.partitionBy("trip_key").orderBy("source_file")
    numbered = parsed.withColumn("key_occurrence", F.row_number().over(first_by_file))

    def outside(column, low, high):
        return ~F.col(column).between(low, high)

    reason = (
        F.when(F.col("field_count") != len(RAW_FIELDS), "malformed_line")
        .when(F.col("key_occurrence") > 1, "duplicate")
        .when(F.col("pickup_at").isNull(), "invalid_pickup_time")
        .when(F.col("fare_amount").isNull(), "invalid_fare")
        .when(
            F.col("origin_lat").isNull()
            | F.col("origin_lon").isNull()
            | F.col("dest_lat").isNull()
            | F.col("dest_lon").isNull(),
            "missing_coordinates",
        )
        .when(outside("fare_amount", FARE_MIN, FARE_MAX), "fare_out_of_range")
        .when(
            outside("origin_lat", LAT_MIN, LAT_MAX)
            | outside("dest_lat", LAT_MIN, LAT_MAX)
            | outside("origin_lon", LON_MIN, LON_MAX)
            | outside("dest_lon", LON_MIN, LON_MAX),
            "outside_service_area",
        )
        .when(
            ~F.to_date("pickup_at").between(
                F.lit(PICKUP_DATE_MIN).cast("date"), F.lit(PICKUP_DATE_MAX).cast("date")
            ),
            "pickup_time_out_of_range",
        )
    )
    bucket = F.conv(F.substring("trip_key", 1, 15), 16, 10).cast("long") % 10000
    split = (
        F.when(bucket < 10000 * TEST_FRACTION, "test")
        .when(bucket < 10000 * (TEST_FRACTION + VALIDATION_FRACTION), "validation")
        .otherwise("train")
    )
    # Cached for the four writes; the raw line is only kept where the quarantine needs it.
    validated = (
        numbered.withColumn("rejection_reason", reason)
        .select(
            "trip_key",
            "source_file",
            F.when(F.col("rejection_reason").isNotNull(), F.col("raw_line")).alias("raw_line"),
            "field_count",
            "fare_amount",
            "origin_lat",
            "origin_lon",
            "dest_lat",
            "dest_lon",
            "pickup_at",
            "rejection_reason",
            split.alias("split"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )

    features = validated.where(F.col("rejection_reason").isNull()).select(
        "trip_key",
        "fare_amount",
        "origin_lat",
        "origin_lon",
        "dest_lat",
        "dest_lon",
        F.year("pickup_at").alias("pickup_year"),
        F.month("pickup_at").alias("pickup_month"),
        (F.weekday("pickup_at") + 1).alias("pickup_dow"),  # ISO: 1 = Monday .. 7 = Sunday
        F.hour("pickup_at").alias("pickup_hour"),
        "split",
    )
    features.write.mode("overwrite").partitionBy("split").parquet(f"{lake}/trip_features")

    raw_fields = F.split("raw_line", r"\|", -1)
    rejected = validated.where(F.col("rejection_reason").isNotNull()).select(
        "trip_key",
        "rejection_reason",
        "source_file",
        "raw_line",
        "field_count",
        *(
            F.try_element_at(raw_fields, F.lit(position)).alias(name.lower())
            for position, name in enumerate(RAW_FIELDS, start=1)
        ),
    )
    rejected.write.mode("overwrite").parquet(f"{lake}/trips_rejected")

    # Train split only, so normalising never leaks held-out rows; one pass, one row per column.
    train = features.where(F.col("split") == "train")
    moments = train.agg(
        *(
            aggregate(F.col(column).cast("double")).alias(f"{column}__{name}")
            for column in FEATURES
            for name, aggregate in (
                ("row_count", F.count),
                ("mean_value", F.avg),
                ("std_value", F.stddev_pop),
                ("min_value", F.min),
                ("max_value", F.max),
            )
        )
    )
    stats = moments.select(
        F.explode(
            F.array(
                *(
                    F.struct(
                        F.lit(column).alias("feature_name"),
                        F.col(f"{column}__row_count").alias("row_count"),
                        F.col(f"{column}__mean_value").alias("mean_value"),
                        F.col(f"{column}__std_value").alias("std_value"),
                        F.col(f"{column}__min_value").alias("min_value"),
                        F.col(f"{column}__max_value").alias("max_value"),
                    )
                    for column in FEATURES
                )
            )
        ).alias("stat")
    ).select("stat.*")
    stats.coalesce(1).write.mode("overwrite").parquet(f"{lake}/feature_stats")

    summary = validated.groupBy(
        "source_file",
        "split",
        F.coalesce("rejection_reason", F.lit("accepted")).alias("outcome"),
    ).agg(F.count(F.lit(1)).alias("row_count"))
    summary.coalesce(1).write.mode("overwrite").parquet(f"{lake}/data_quality_summary")

    validated.unpersist()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw_files = sorted(str(path.resolve()) for path in Path(args.raw).glob("taxi_*.txt"))
    if not raw_files:
        print(
            f"no raw files matching '{args.raw}/taxi_*.txt' — generate them with "
            f"`python -m scripts.generate_raw --out {args.raw}`",
            file=sys.stderr,
        )
        return 2
    try:
        import pyspark  # noqa: F401
    except ImportError:
        print("pyspark is not installed — run `pip install 'pyspark>=4.0,<5'`", file=sys.stderr)
        return 2
    started = time.perf_counter()
    spark = build_session(args)
    try:
        clean_and_split(spark, raw_files, str(Path(args.lake).resolve()))
    finally:
        spark.stop()
    print(f"spark job done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
