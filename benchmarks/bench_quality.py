"""Model quality against the generator's noise floor: tune, then compare test RMSE.

    python -m scripts.generate_raw --rows 2000000 --out data/raw && dbt build
    python benchmarks/bench_quality.py --data data/lake/trip_features          # 20 trials
    python benchmarks/bench_quality.py --data ... --noise-floor 2.0 -- --max-epochs 8

The noise floor is the RMSE of the best possible predictor E[fare | 8 features]: given with
--noise-floor, else computed on the test split itself with scripts.fare_model.expected_fare
(the generator's ground truth), else read from the generator's sidecar (--generator). Two
baselines give scale: the train-mean fare, and least squares on the normalised features (the
book's linear model). Arguments after `--` go to `python -m training.tune`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training import tune  # noqa: E402
from training.lake import FEATURES, LABEL, discover_split, load_feature_stats, sibling  # noqa: E402


def read_split(data: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw features [n, 8] and fares [n] of one split (float64)."""
    files = discover_split(data, split)
    tables = []
    for part in files.parts:
        with files.filesystem.open_input_file(part.path) as handle:
            tables.append(pq.read_table(handle, columns=[*FEATURES, LABEL]))
    features = np.column_stack(
        [np.concatenate([t.column(c).to_numpy() for t in tables]) for c in FEATURES]
    )
    labels = np.concatenate([t.column(LABEL).to_numpy() for t in tables])
    return features.astype(np.float64), labels


def rmse(prediction: np.ndarray, labels: np.ndarray) -> float:
    return float(np.sqrt(np.mean((prediction - labels) ** 2)))


def noise_floor(args, test_x: np.ndarray, test_y: np.ndarray) -> tuple[float, str]:
    if args.noise_floor is not None:
        return args.noise_floor, "--noise-floor"
    try:
        from scripts.fare_model import expected_fare
    except ImportError:
        expected_fare = None
    if expected_fare is not None:
        return rmse(expected_fare(test_x), test_y), "E[fare | x] on the test split"
    sidecar = json.loads(Path(args.generator).read_text())
    return float(sidecar["noise_floor_rmse"]), f"{args.generator} (all clean rows)"


def baselines(data: str, test_x: np.ndarray, test_y: np.ndarray) -> dict[str, float]:
    stats = load_feature_stats(sibling(data, "feature_stats"))
    mean, std = np.array(stats.mean), np.array(stats.std)
    train_x, train_y = read_split(data, "train")
    design = lambda x: np.column_stack([(x - mean) / std, np.ones(len(x))])  # noqa: E731
    weights, *_ = np.linalg.lstsq(design(train_x), train_y, rcond=None)
    return {
        "train-mean fare": rmse(np.full(len(test_y), stats.label_mean), test_y),
        "least squares (book's linear model)": rmse(design(test_x) @ weights, test_y),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/lake/trip_features")
    parser.add_argument("--noise-floor", type=float, help="known noise floor RMSE (dollars)")
    parser.add_argument("--generator", default="data/raw/_generator.json", help="sidecar")
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("tune_args", nargs="*", help="after --: more python -m training.tune flags")
    args = parser.parse_args(argv)

    test_x, test_y = read_split(args.data, "test")
    floor, source = noise_floor(args, test_x, test_y)
    study = f"quality-{time.strftime('%Y%m%d-%H%M%S')}"
    tune_argv = ["--data", args.data, "--n-trials", str(args.n_trials), "--study-name", study]
    started = time.perf_counter()
    if tune.main([*tune_argv, *args.tune_args]) != 0:
        return 1
    minutes = (time.perf_counter() - started) / 60
    import mlflow

    parent = mlflow.search_runs(
        filter_string=f"tags.`optuna.study` = '{study}' and attributes.run_name = '{study}'",
        search_all_experiments=True,
        output_format="list",
    )[0]
    test_rmse = parent.data.metrics["test_rmse"]
    print(f"\n# {len(test_y):,} test rows; noise floor from {source}; study {study}")
    print("| model | test RMSE $ | / noise floor |")
    print("| --- | ---: | ---: |")
    print(f"| noise floor E[fare given x] | {floor:.4f} | 1.000 |")
    for name, value in baselines(args.data, test_x, test_y).items():
        print(f"| {name} | {value:.4f} | {value / floor:.3f} |")
    print(
        f"| tuned MLP, {args.n_trials} trials ({minutes:.1f} min) | {test_rmse:.4f} "
        f"| {test_rmse / floor:.3f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
