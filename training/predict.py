"""Score trips with a registered model: `python -m training.predict [flags]`.

By default the champion (`models:/dc-taxi-fare@champion`) scores every trip of the current
published lake build (`--snapshot` / `--as-of` pin another) and the predictions are published
into the lake as `dc_taxi.fare_predictions` (one commit; that model version's earlier rows are
replaced). `--input FILE` scores any Parquet or CSV file with the feature columns instead, and
`--out FILE.parquet` says where its predictions go.

Streaming in row batches: a reader thread decodes the next batch while the exported network
scores this one on every core and a writer thread compresses the last one, so memory stays
bounded whatever the number of rows.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.defaults import DEFAULT_DATA, default_tracking_uri
from training.defaults import DEFAULT_MODEL_URI as DEFAULT_MODEL

PASSTHROUGH = ("trip_key", "split")  # copied from --input when present


@dataclass(frozen=True)
class PredictConfig:
    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    snapshot_id: int | None = None
    as_of: str | None = None
    input: str | None = None
    out: str | None = None
    tracking_uri: str | None = None
    batch_rows: int = 1 << 18
    threads: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class ResolvedModel:
    """A loaded model and the name + version its predictions are recorded under."""

    uri: str
    name: str
    version: str
    predict_matrix: Callable  # float32 [n, features] -> float32 [n]
    features: tuple[str, ...]


def resolve_model(uri: str) -> ResolvedModel:
    """Load `uri` (models:/name@alias, models:/name/version, runs:/id/model, a path)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, version = uri, ""
    try:
        if uri.startswith("models:/"):
            reference = uri.removeprefix("models:/")
            if "@" in reference:
                name, alias = reference.split("@", 1)
                version = client.get_model_version_by_alias(name, alias).version
            elif "/" in reference:
                name, version = reference.rsplit("/", 1)
        elif uri.startswith("runs:/"):
            version = uri.removeprefix("runs:/").split("/", 1)[0]
        # suppress_warnings: skips comparing the model's requirements with every installed package.
        loaded = mlflow.pyfunc.load_model(uri, suppress_warnings=True)
    except MlflowException as error:
        raise ValueError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()}: "
            f"{str(error).strip().splitlines()[0]} — run `python -m training.tune` first, "
            "or pass --model / --tracking-uri"
        ) from error
    inner = loaded.unwrap_python_model() if hasattr(loaded, "unwrap_python_model") else None
    if not hasattr(inner, "predict_matrix"):
        raise ValueError(
            f"{uri} is not a fare model with named columns (logged before they existed?) — "
            "train and register a new one with `python -m training.tune`"
        )
    return ResolvedModel(
        uri=uri,
        name=name,
        version=str(version),
        predict_matrix=inner.predict_matrix,
        features=tuple(inner.features),
    )


def feature_matrix(batch, features: Sequence[str]):
    """The feature columns of an Arrow record batch as float32 [n, features]."""
    import numpy as np

    matrix = np.empty((batch.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        matrix[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
    return matrix


def check_features(names: Sequence[str], features: Sequence[str], where: str) -> None:
    missing = [name for name in features if name not in names]
    if missing:
        raise ValueError(
            f"{where} lacks feature column(s) {', '.join(missing)} — the model needs "
            f"{', '.join(features)}"
        )


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` in a background thread, `depth` ahead (pyarrow decodes without the GIL)."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)

    def fill() -> None:
        try:
            for item in items:
                slots.put(item)
            slots.put(done)
        except BaseException as error:  # handed to the consumer
            slots.put(error)

    threading.Thread(target=fill, daemon=True).start()
    while (item := slots.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def open_writer(path: str, schema):
    """A zstd Parquet writer for prediction files (no Arrow schema stored: plain strings)."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        store_schema=False,
        # trip_key is unique: a dictionary for it is built and thrown away.
        use_dictionary=[name for name in schema.names if name != "trip_key"],
    )


class BackgroundWriter:
    """Writes Arrow tables to Parquet files in one background thread, in order."""

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        writer, current = None, None
        while (job := self.jobs.get()) is not None:
            path, table = job
            if self.error is not None:
                continue
            try:
                if path != current:  # files come one after another: close the last one
                    if writer is not None:
                        writer.close()
                    writer, current = open_writer(path, table.schema), path
                writer.write_table(table, row_group_size=1 << 20)
            except BaseException as error:
                self.error = error
        if writer is not None:
            writer.close()

    def write(self, path: str, table) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put((path, table))

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def constant(value, rows: int, kind):
    """A column of `rows` equal values: a dictionary of one string, or a filled number array."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_string(kind):
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), [value])
    return pa.array(np.full(rows, value), kind)


def score_batches(
    model: ResolvedModel,
    batches: Iterator,
    write: Callable,
    progress,
) -> int:
    """Predict every batch (reader and writer overlap with the network); returns the rows."""
    import pyarrow as pa

    rows = 0
    for path, batch, extra in prefetched(batches):
        fares = model.predict_matrix(feature_matrix(batch, model.features))
        columns = {name: batch.column(name) for name in PASSTHROUGH if name in batch.schema.names}
        columns.update(extra(batch.num_rows))
        columns["predicted_fare"] = pa.array(fares.astype("float64"))
        columns["model_name"] = constant(model.name, batch.num_rows, pa.string())
        columns["model_version"] = constant(model.version, batch.num_rows, pa.string())
        write(path, pa.table(columns))
        rows += batch.num_rows
        progress.update(batch.num_rows)
    return rows


def lake_batches(build, folder: str, batch_rows: int, features: Sequence[str]) -> Iterator:
    """(output path, record batch, extra columns) for every trip of the pinned build."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse.catalog import filesystem_of
    from training.lake import SPLITS

    part = 0
    for split in SPLITS:
        for data_file in build.data_files("trip_features", split):
            filesystem, path = filesystem_of(data_file.uri)
            out = f"{folder}/part-{part:05d}.parquet"
            part += 1
            with filesystem.open_input_file(path) as handle:
                reader = pq.ParquetFile(handle)
                check_features(reader.schema_arrow.names, features, data_file.uri)
                columns = ["trip_key", *features]
                for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):

                    def extra(rows: int, split: str = split) -> dict:
                        return {
                            "split": constant(split, rows, pa.string()),
                            "lake_snapshot_id": constant(build.snapshot_id, rows, pa.int64()),
                        }

                    yield out, batch, extra


def file_batches(path: str, out: str, batch_rows: int, features: Sequence[str]) -> Iterator:
    """(output path, record batch, no extra columns) for every row of a Parquet/CSV file."""
    import pyarrow.dataset as ds

    kind = "csv" if path.lower().endswith((".csv", ".csv.gz")) else "parquet"
    dataset = ds.dataset(path, format=kind)
    check_features(dataset.schema.names, features, path)
    columns = [name for name in PASSTHROUGH if name in dataset.schema.names] + list(features)
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        yield out, batch, lambda rows: {}


def count_rows(build) -> int:
    return sum(f.rows for f in build.data_files("trip_features"))


def predict_lake(config: PredictConfig, model: ResolvedModel, progress_bar) -> dict[str, str]:
    """Score the pinned build and publish the predictions; returns what was done."""
    from lakehouse.builds import parse_as_of, pin_build
    from lakehouse.catalog import open_catalog
    from lakehouse.predictions import TABLE, predictions_folder, publish_predictions

    build = pin_build(
        config.data, config.snapshot_id, parse_as_of(config.as_of), marts=("trip_features",)
    )
    scoring_id = uuid.uuid4().hex
    folder = predictions_folder(build.lake_root, scoring_id)
    if "://" not in folder or folder.startswith("file://"):
        os.makedirs(folder.removeprefix("file://"), exist_ok=True)
    total = count_rows(build)
    rows = write_all(
        model,
        lake_batches(build, folder, config.batch_rows, model.features),
        progress_bar(total),
    )
    if rows != total:
        raise RuntimeError(f"scored {rows} rows of {total}: nothing was published")
    catalog = open_catalog(build.lake_root, create=False)
    snapshot = publish_predictions(
        catalog, build.lake_root, folder, model.name, model.version, build.snapshot_id
    )
    return {
        "rows": str(rows),
        "table": f"dc_taxi.{TABLE}@{snapshot}",
        "model": f"{model.name} version {model.version}",
        "scored": f"dc_taxi.trip_features@{build.snapshot_id}",
    }


def predict_file(config: PredictConfig, model: ResolvedModel, progress_bar) -> dict[str, str]:
    """Score `--input` into the Parquet file `--out`."""
    import pyarrow.dataset as ds

    out = config.out or str(Path(config.input).with_suffix("")) + ".predictions.parquet"
    total = ds.dataset(
        config.input, format="csv" if config.input.lower().endswith(".csv") else "parquet"
    ).count_rows()
    partial = f"{out}.partial"
    rows = write_all(
        model,
        file_batches(config.input, partial, config.batch_rows, model.features),
        progress_bar(total),
    )
    os.replace(partial, out)
    return {"rows": str(rows), "out": out, "model": f"{model.name} version {model.version}"}


def write_all(model: ResolvedModel, batches: Iterator, progress) -> int:
    writer = BackgroundWriter()
    try:
        rows = score_batches(model, batches, writer.write, progress)
    finally:
        progress.close()
        writer.close()
    return rows


def build_parser() -> argparse.ArgumentParser:
    from training.cli import new_parser

    parser = new_parser(
        "python -m training.predict",
        "Score trips with a registered fare model; publish the predictions into the lake "
        "(dc_taxi.fare_predictions) or write them next to --input.",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="MLflow model URI: models:/<name>@<alias>, models:/<name>/<version> or "
        "runs:/<run id>/model",
    )
    source = parser.add_argument_group("what to score")
    source.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help="trip_features' location in the lake; its current published build is scored",
    )
    pin = source.add_mutually_exclusive_group()
    pin.add_argument("--snapshot", type=int, help="score this trip_features snapshot instead")
    pin.add_argument("--as-of", help="score the build current at this ISO 8601 time")
    source.add_argument(
        "--input",
        help="score this Parquet or CSV file (feature columns by name) instead of the lake",
    )
    source.add_argument(
        "--out",
        help="with --input: the Parquet file to write (default <input>.predictions.parquet)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI of the registry (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///data/mlflow.db)",
    )
    run.add_argument(
        "--batch-rows",
        type=int,
        default=PredictConfig.batch_rows,
        help="rows scored at once",
    )
    run.add_argument(
        "--threads",
        type=int,
        help="torch threads for the network (default: all cores but one, which reads and writes)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    return PredictConfig(
        model=args.model,
        data=args.data,
        snapshot_id=args.snapshot,
        as_of=args.as_of,
        input=args.input,
        out=args.out,
        tracking_uri=args.tracking_uri,
        batch_rows=args.batch_rows,
        threads=args.threads,
        progress=not args.no_progress and sys.stderr.isatty(),
    )


def argument_problems(config: PredictConfig) -> list[str]:
    problems = []
    if config.batch_rows < 1:
        problems.append(f"--batch-rows must be at least 1, got {config.batch_rows}")
    if config.threads is not None and config.threads < 1:
        problems.append(f"--threads must be at least 1, got {config.threads}")
    if config.out and not config.input:
        problems.append("--out needs --input (lake predictions go to dc_taxi.fare_predictions)")
    if config.input and (config.snapshot_id is not None or config.as_of):
        problems.append("--snapshot/--as-of pin the lake; they do not apply to --input")
    if config.input and not Path(config.input).is_file():
        problems.append(f"--input {config.input} is not a file")
    return problems


def run(config: PredictConfig) -> dict[str, str]:
    import torch
    from tqdm import tqdm

    # The network runs on one core by default: small slices do not gain from more threads,
    # and the reader and writer threads decode and compress on the others.
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) - 1))
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri or default_tracking_uri())
    model = resolve_model(config.model)

    def progress_bar(total: int):
        return tqdm(
            total=total, unit="rows", unit_scale=True, desc="predict", disable=not config.progress
        )

    if config.input:
        return predict_file(config, model, progress_bar)
    return predict_lake(config, model, progress_bar)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args)
    problems = argument_problems(config)
    if problems:
        parser.error("; ".join(problems))
    from training.cli import quiet_libraries, quiet_loggers

    quiet_libraries(args.verbose)
    quiet_loggers(args.verbose)
    from mlflow.exceptions import MlflowException

    from lakehouse.catalog import LakeError

    try:
        result = run(config)
    except (LakeError, MlflowException, ValueError, OSError) as error:  # one line, no traceback
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"training.predict: {message}", file=sys.stderr)
        return 2
    print(" · ".join(f"{key} {value}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
