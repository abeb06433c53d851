"""`mlflow models serve -m models:/dc-taxi-fare@champion` answers on loopback like training.predict.

The server runs as a subprocess (`--env-manager local`, MLFLOW_TRACKING_URI at a throwaway
registry) on a free port of 127.0.0.1, in its own process group, which teardown always ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from scripts.random_fare_models import random_trips, register_fare_model
from training import predict
from training.lake import FEATURES

pytestmark = pytest.mark.slow  # registers a model and starts a server: tens of seconds

MODEL_URI = "models:/dc-taxi-fare@champion"
START_TIMEOUT_S = 240.0  # loading torch + the model on a busy 2-core machine


def register_champion(folder: Path) -> str:
    """A registry in `folder` whose dc-taxi-fare@champion is a randomly initialised model."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    name, alias = MODEL_URI.removeprefix("models:/").split("@")
    with contextlib.chdir(folder):  # the run's artifacts go to ./mlruns: keep them in folder
        register_fare_model(uri, name, seed=3, alias=alias)
    return uri


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return 0


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while get(f"{url}/ping") != 200:
        if server.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow models serve did not come up on {url}:\n{tail}")
        time.sleep(1)


def stop(server: subprocess.Popen) -> None:
    """End the server's whole process group (mlflow's CLI and the uvicorn it starts)."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, tracking URI, port) of `mlflow models serve` running the registered champion."""
    folder = tmp_path_factory.mktemp("serve")
    tracking_uri = register_champion(folder)
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", MODEL_URI]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = folder / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as one
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server, log)
        yield url, tracking_uri, port
    finally:
        stop(server)


def post(url: str, payload: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def served_fares(url: str, payload: dict) -> np.ndarray:
    status, body = post(url, payload)
    assert status == 200, body
    return np.array([row["predicted_fare"] for row in json.loads(body)["predictions"]])


def predict_cli_fares(frame: pd.DataFrame, tracking_uri: str, folder: Path) -> np.ndarray:
    frame.to_csv(folder / "trips.csv", index=False)
    out = folder / "trips.predictions.parquet"
    argv = ["--input", str(folder / "trips.csv"), "--out", str(out), "--model", MODEL_URI]
    argv += ["--tracking-uri", tracking_uri, "--threads", "1", "--no-progress"]
    assert predict.main(argv) == 0
    return pq.read_table(out, columns=["predicted_fare"]).column(0).to_numpy()


def test_served_fares_equal_training_predict(served, tmp_path):
    url, tracking_uri, _ = served
    frame = random_trips(257, seed=11)  # time features are int64
    expected = predict_cli_fares(frame, tracking_uri, tmp_path)
    assert np.ptp(expected) > 0  # a real batch, not one constant

    split = json.loads(frame[list(reversed(FEATURES))].to_json(orient="split", index=False))
    np.testing.assert_allclose(
        served_fares(url, {"dataframe_split": split}), expected, rtol=1e-5, atol=1e-5
    )

    integers = set(FEATURES[4:])  # year, month, day of week, hour: JSON ints
    records = [
        {name: int(value) if name in integers else float(value) for name, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    assert all(isinstance(row["pickup_hour"], int) for row in records)
    records[0]["comment"] = "extra columns are ignored"
    np.testing.assert_allclose(
        served_fares(url, {"dataframe_records": records}), expected, rtol=1e-5, atol=1e-5
    )


def test_a_batch_missing_a_column_is_an_http_error_naming_it(served):
    url, _, _ = served
    records = random_trips(3).drop(columns=["pickup_dow"]).to_dict(orient="records")
    status, body = post(url, {"dataframe_records": records})
    assert 400 <= status < 600
    assert "missing feature column(s) pickup_dow" in body


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on `port` (Linux /proc/net)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A = LISTEN
                if len(address) == 8:  # IPv4, little-endian hex
                    addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    addresses.add(address)
    return addresses


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc/net/tcp")
def test_the_server_listens_on_loopback_only(served):
    _, _, port = served
    assert listening_addresses(port) == {"127.0.0.1"}
