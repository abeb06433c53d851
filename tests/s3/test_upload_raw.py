"""upload_raw against a real S3 server: idempotent, verified, resumable, clear when it fails."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import subprocess
import sys

import pytest

from scripts.upload_raw import MIB, UploadError, digest_file, upload_file, upload_folder
from tests.conftest import REPO_ROOT
from tests.s3.conftest import ADMIN, BUCKET, READER, Identity

PART = 5 * MIB  # S3's smallest part size, so small files still go multipart


@pytest.fixture
def raw_folder(tmp_path):
    """Three files: two single-part, one of three parts (5 + 5 + 2 MiB)."""
    folder = tmp_path / "raw"
    folder.mkdir()
    rng = random.Random(7)
    (folder / "taxi_2015_01.txt").write_bytes(b"OBJECTID|...\n1|a\n")
    (folder / "taxi_2015_02.txt").write_bytes(b"")
    text = "".join(rng.choices("0123456789|.ABCDEF\n", k=12 * MIB))
    (folder / "taxi_2015_03.txt").write_text(text)
    (folder / "notes.md").write_text("not a raw file")
    return folder


def _stored(local_s3, key: str) -> bytes:
    return local_s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_upload_then_rerun_uploads_nothing(local_s3, raw_folder):
    prefix = local_s3.fresh_prefix("raw")
    dest = f"s3://{BUCKET}/{prefix}"
    first = upload_folder(raw_folder, dest, part_size=PART, client=local_s3.client())
    assert [(r.name, r.status, r.parts_total) for r in first] == [
        ("taxi_2015_01.txt", "uploaded", 1),
        ("taxi_2015_02.txt", "uploaded", 1),
        ("taxi_2015_03.txt", "uploaded", 3),
    ]
    assert set(local_s3.objects(prefix)) == {f"{prefix}/{r.name}" for r in first}
    for result in first:
        assert (
            _stored(local_s3, f"{prefix}/{result.name}") == (raw_folder / result.name).read_bytes()
        )

    again = upload_folder(raw_folder, dest, part_size=PART, client=local_s3.client())
    assert {r.status for r in again} == {"unchanged"}


def test_a_changed_file_is_uploaded_again(local_s3, raw_folder):
    prefix = local_s3.fresh_prefix("raw")
    dest = f"s3://{BUCKET}/{prefix}"
    upload_folder(raw_folder, dest, part_size=PART, client=local_s3.client())
    changed = raw_folder / "taxi_2015_01.txt"
    changed.write_bytes(changed.read_bytes().replace(b"a", b"b"))  # same size, new bytes
    statuses = {
        r.name: r.status
        for r in upload_folder(raw_folder, dest, part_size=PART, client=local_s3.client())
    }
    assert statuses == {
        "taxi_2015_01.txt": "uploaded",
        "taxi_2015_02.txt": "unchanged",
        "taxi_2015_03.txt": "unchanged",
    }
    assert _stored(local_s3, f"{prefix}/taxi_2015_01.txt") == changed.read_bytes()


def _interrupted_upload(client, key: str, path, parts: dict[int, bytes]) -> str:
    """What an interrupted run leaves: an unfinished multipart upload with some parts stored."""
    local = digest_file(path, PART)
    upload_id = client.create_multipart_upload(
        Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256", Metadata={"sha256": local.sha256_hex}
    )["UploadId"]
    for number, body in parts.items():
        client.upload_part(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
        )
    return upload_id


def test_an_interrupted_upload_resumes_with_the_stored_parts(local_s3, raw_folder):
    client = local_s3.client()
    key = f"{local_s3.fresh_prefix('raw')}/taxi_2015_03.txt"
    path = raw_folder / "taxi_2015_03.txt"
    data = path.read_bytes()
    _interrupted_upload(client, key, path, {1: data[:PART], 2: data[PART : 2 * PART]})

    result = upload_file(client, path, BUCKET, key, PART)

    assert (result.status, result.parts_reused, result.parts_total) == ("resumed", 2, 3)
    assert _stored(local_s3, key) == data
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []) == []


def test_a_stale_unfinished_upload_is_discarded_not_reused(local_s3, raw_folder):
    client = local_s3.client()
    key = f"{local_s3.fresh_prefix('raw')}/taxi_2015_03.txt"
    path = raw_folder / "taxi_2015_03.txt"
    # An earlier version of the file: its stored part no longer matches the local bytes.
    _interrupted_upload(client, key, path, {1: b"x" * PART})

    result = upload_file(client, path, BUCKET, key, PART)

    assert (result.status, result.parts_reused) == ("uploaded", 0)
    assert hashlib.sha256(_stored(local_s3, key)).hexdigest() == digest_file(path, PART).sha256_hex
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("identity", "dest", "message"),
    [
        (ADMIN, "s3://no-such-bucket/raw", "bucket no-such-bucket does not exist"),
        (Identity("admin", ADMIN.access_key, "wrong"), f"s3://{BUCKET}/raw", "refused access"),
        (READER, f"s3://{BUCKET}/raw-by-reader", "refused access"),
    ],
    ids=["missing-bucket", "wrong-secret", "read-only-key"],
)
def test_failures_say_what_to_fix(local_s3, raw_folder, identity, dest, message):
    with pytest.raises(UploadError, match=message):
        upload_folder(raw_folder, dest, part_size=PART, client=local_s3.client(identity))
    assert local_s3.objects("raw-by-reader") == {}


def test_a_file_that_is_not_utf8_is_refused_before_sending(local_s3, raw_folder):
    prefix = local_s3.fresh_prefix("raw")
    (raw_folder / "taxi_2015_04.txt").write_bytes("1|Café|12.5\n".encode("latin-1"))
    with pytest.raises(UploadError, match=r"taxi_2015_04.txt is not UTF-8 \(at byte offset 5\)"):
        upload_folder(raw_folder, f"s3://{BUCKET}/{prefix}", client=local_s3.client())
    assert "taxi_2015_04.txt" not in {key.rsplit("/", 1)[-1] for key in local_s3.objects(prefix)}


def test_cli_reports_each_file(local_s3, raw_folder):
    dest = f"s3://{BUCKET}/{local_s3.fresh_prefix('raw')}"
    command = [sys.executable, "-m", "scripts.upload_raw", "--src", str(raw_folder), "--dest", dest]
    env = {**os.environ, **local_s3.env()}
    first = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": uploaded") == 3
    second = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert second.stdout.count(": unchanged") == 3

    empty = subprocess.run(
        [*command[:4], str(raw_folder / "nothing-here"), *command[5:]],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert empty.returncode == 1
    assert "no files matching taxi_*.txt" in empty.stderr
    assert "Traceback" not in empty.stderr
