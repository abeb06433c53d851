"""A real S3 server for the tests: SeaweedFS on a free 127.0.0.1 port, started and stopped here.

Two keys: an admin that may do everything, and a reader that may only list and read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs
import pytest

from scripts import s3_server
from scripts.s3_server import Identity, RunningServer

BUCKET = "dc-taxi-test"
ADMIN = Identity("admin", "test-admin-key", "test-admin-secret")
READER = Identity("reader", "test-reader-key", "test-reader-secret", ("Read", "List"))


@dataclass
class LocalS3:
    server: RunningServer
    bucket: str = BUCKET

    def env(self, identity: Identity = ADMIN) -> dict[str, str]:
        """AWS_* variables pointing boto3, pyarrow and dbt at the server with this key."""
        return self.server.env(identity)

    def client(self, identity: Identity = ADMIN):
        return s3_server.s3_client(self.server.endpoint, identity)

    def filesystem(self) -> pafs.S3FileSystem:
        host = self.server.endpoint.removeprefix("http://")
        return pafs.S3FileSystem(
            endpoint_override=host,
            scheme="http",
            access_key=ADMIN.access_key,
            secret_key=ADMIN.secret_key,
            region=s3_server.REGION,
        )

    def fresh_prefix(self, name: str) -> str:
        """A key prefix no other test uses."""
        return f"{name}-{uuid.uuid4().hex[:8]}"

    def objects(self, prefix: str) -> dict[str, tuple[int, str]]:
        """key -> (size, ETag) of every object under prefix."""
        found = {}
        for page in (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        ):
            for item in page.get("Contents", []):
                found[item["Key"]] = (item["Size"], item["ETag"])
        return found


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory) -> LocalS3:
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    server = s3_server.start(data_dir, port=0, identities=[ADMIN, READER], bucket=BUCKET)
    try:
        yield LocalS3(server)
    finally:
        # Throwaway data: no need to wait out weed's 15 s graceful gRPC shutdown.
        s3_server.stop(data_dir, timeout=2)
