"""`python -m lakehouse`: the lake's builds, rollback to an earlier build, and housekeeping.

    python -m lakehouse builds                       # published builds, current marked
    python -m lakehouse rollback --to <snapshot id | dbt invocation id>
    python -m lakehouse maintain --keep 5            # expire older builds, delete orphans
    python -m lakehouse --lake s3://b/lake athena-build --raw s3://b/raw   # Athena, incremental

`--lake` is the lake_path dbt wrote (default data/lake); the catalog is LAKE_CATALOG_URI or the
default beside the lake (see lakehouse/catalog.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from training.cli import command_parser
from training.defaults import DEFAULT_LAKE


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m lakehouse", "The lake's builds, rollback and housekeeping.")
    parser.usage = None  # subcommands: argparse's own usage line names them
    parser.add_argument("--lake", default=DEFAULT_LAKE, help="the lake_path dbt writes to")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("builds", help="list the published builds (current one marked)")
    rollback = commands.add_parser("rollback", help="make an earlier build current again")
    rollback.add_argument(
        "--to", required=True, help="trip_features snapshot id or dbt invocation id of the build"
    )
    keep = commands.add_parser(
        "maintain", help="keep the last N builds; delete what older and failed builds left"
    )
    keep.add_argument("--keep", type=int, default=5, help="published builds to keep (>= 1)")
    keep.add_argument(
        "--grace-hours",
        type=float,
        default=6.0,
        help="never touch files, branches or snapshots younger than this (a build may be "
        "writing them)",
    )
    keep.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    athena = commands.add_parser(
        "athena-build",
        help="plan an Athena build (incremental when only new months came), run `dbt build "
        "--target athena`, record what it read; dbt arguments go after `--`",
    )
    athena.add_argument("--raw", required=True, help="the raw_path: an s3:// prefix")
    athena.add_argument("--vars", default="{}", help="more dbt vars, as JSON")
    athena.add_argument("--full-refresh", action="store_true", help="read every raw file")
    athena.add_argument(
        "--dry-run", action="store_true", help="print the plan, what Athena scans and the vars"
    )
    athena.add_argument(
        "--project-dir",
        default=os.environ.get("DBT_PROJECT_DIR", "dbt_project"),
        help="the dbt project (default $DBT_PROJECT_DIR or ./dbt_project)",
    )
    athena.add_argument("dbt_args", nargs="*", help="more `dbt build` arguments, after `--`")
    return parser


def athena_build(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lakehouse.athena_build import run_athena_build
    from lakehouse.catalog import LakeError, open_catalog

    if not (args.raw.startswith("s3://") and args.lake.startswith("s3://")):
        raise LakeError(
            "athena-build needs s3:// prefixes: pass --lake s3://... and --raw s3://..."
        )
    try:
        dbt_vars = json.loads(args.vars)
    except json.JSONDecodeError as error:
        example = '{"fare_max": 150}'
        raise LakeError(f"--vars is not JSON ({error.msg}) — pass e.g. '{example}'") from None
    return run_athena_build(
        lake=args.lake,
        raw=args.raw,
        catalog=open_catalog(args.lake, catalog_uri="glue"),
        dbt_vars=dbt_vars,
        dbt_args=args.dbt_args,
        full_refresh=args.full_refresh,
        dry_run=args.dry_run,
        project_dir=Path(args.project_dir).resolve(),
    )


def show_builds(lake: str) -> None:
    from lakehouse.builds import list_builds
    from lakehouse.catalog import lake_uri

    builds = list_builds(f"{lake_uri(lake)}/trip_features")
    print(f"{'snapshot id':>20}  {'dbt invocation id':36}  {'published at (UTC)':25}  rows")
    for build in builds:
        mark = "  <- current" if build["current"] else ""
        print(
            f"{build['snapshot_id']:>20}  {build['dbt_invocation_id']:36}  "
            f"{build['published_at']:25}  {build['rows']}{mark}"
        )


def rollback(lake: str, to: str) -> None:
    from lakehouse.builds import build_snapshot, list_builds
    from lakehouse.catalog import MARTS, LakeError, lake_uri, load_mart, open_catalog
    from lakehouse.publish import point_main_at

    catalog = open_catalog(lake, create=False)
    listed = list_builds(f"{lake_uri(lake)}/trip_features", catalog)
    builds = {b["snapshot_id"]: b["dbt_invocation_id"] for b in listed}
    invocation = builds.get(to, to if to in builds.values() else None)
    if invocation is None:
        raise LakeError(f"no published build {to} — `python -m lakehouse builds` lists them")
    snapshots = {name: build_snapshot(load_mart(catalog, lake, name), invocation) for name in MARTS}
    point_main_at(catalog, lake, snapshots)
    print(
        f"build {invocation} is current again (trip_features snapshot {snapshots['trip_features']})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lakehouse.catalog import LakeError, open_catalog
    from lakehouse.maintain import maintain
    from lakehouse.publish import PublishConflict

    try:
        if args.command == "builds":
            show_builds(args.lake)
        elif args.command == "rollback":
            rollback(args.lake, args.to)
        elif args.command == "athena-build":
            return athena_build(args)
        else:
            catalog = open_catalog(args.lake, create=False)
            done = maintain(catalog, args.lake, args.keep, args.grace_hours * 3600, args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            for name, cleanup in done.items():
                print(
                    f"{name}: {verb} {len(cleanup.branches)} dead audit branch(es), "
                    f"{cleanup.snapshots} snapshot(s), {len(cleanup.files)} file(s) "
                    f"({cleanup.bytes / 2**20:.1f} MiB)"
                )
    except (LakeError, PublishConflict, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
