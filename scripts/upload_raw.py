"""Upload raw trip files to S3: idempotent, verified and resumable.

    python -m scripts.upload_raw --src data/raw --dest s3://dc-taxi/raw

For every local `taxi_*.txt` (the `--pattern`):
- it is skipped when the object already exists with the same size and SHA-256 (kept in the
  object's `sha256` metadata), so reruns upload only what changed;
- otherwise it is uploaded in one request, or in parts above `--part-size-mb` (multipart, parts
  in parallel); every request carries the SHA-256 of its bytes, so S3 rejects corrupted data;
- an interrupted multipart upload of the same key is resumed: the parts already stored whose
  size and MD5 (ETag) match the local bytes are kept and only the rest are sent;
- afterwards the object is verified: size, the `sha256` metadata, and S3's own checksum of what
  it stored (or the ETag where the server keeps no checksum);
- a file that is not UTF-8 is refused before anything is sent (Athena would silently replace
  the bad bytes, so its lines and trip_keys would differ from DuckDB's).

S3 settings are the standard AWS environment variables (credentials, AWS_REGION, and
AWS_ENDPOINT_URL for a local server such as `python -m scripts.s3_server start`).
"""

from __future__ import annotations

import argparse
import base64
import codecs
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from training.defaults import DEFAULT_RAW

MIB = 1024 * 1024
DEFAULT_PART_SIZE_MB = 64
MIN_PART_SIZE_MB = 5  # S3's minimum for every part but the last
READ_CHUNK = 8 * MIB


class UploadError(RuntimeError):
    """An upload failed or did not verify; the message says what to do."""


@dataclass(frozen=True)
class Part:
    """One multipart part of a local file and the digests S3 reports back for it."""

    number: int
    offset: int
    size: int
    md5_hex: str
    sha256: bytes


@dataclass(frozen=True)
class LocalFile:
    """A local file with its whole-file and per-part digests."""

    path: Path
    size: int
    sha256_hex: str
    md5_hex: str
    parts: tuple[Part, ...]

    @property
    def is_multipart(self) -> bool:
        return len(self.parts) > 1

    def expected_checksum(self) -> str:
        """S3's ChecksumSHA256 for this file: whole-object, or composite for multipart."""
        if not self.is_multipart:
            return _b64(bytes.fromhex(self.sha256_hex))
        composite = hashlib.sha256(b"".join(part.sha256 for part in self.parts)).digest()
        return f"{_b64(composite)}-{len(self.parts)}"

    def expected_etag(self) -> str:
        """S3's ETag for an unencrypted object: MD5, or MD5 of the part MD5s for multipart."""
        if not self.is_multipart:
            return self.md5_hex
        joined = b"".join(bytes.fromhex(part.md5_hex) for part in self.parts)
        return f"{hashlib.md5(joined).hexdigest()}-{len(self.parts)}"


@dataclass(frozen=True)
class UploadResult:
    name: str
    status: str  # "unchanged", "uploaded" or "resumed"
    size: int
    parts_total: int = 1
    parts_reused: int = 0


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without slashes at either end)."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise UploadError(f"--dest must look like s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def digest_file(path: Path, part_size: int) -> LocalFile:
    """Read the file once: SHA-256 and MD5 of the whole file and of every part.

    Also checks that it is UTF-8, as the raw contract says: Athena would silently replace
    other bytes, changing the lines (and their trip_keys) instead of failing.
    """
    size = path.stat().st_size
    whole_sha, whole_md5 = hashlib.sha256(), hashlib.md5()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    parts = []
    with path.open("rb") as handle:
        # An empty file still has one (empty) part.
        for number, offset in enumerate(range(0, max(size, 1), part_size), start=1):
            part_sha, part_md5 = hashlib.sha256(), hashlib.md5()
            part_bytes = min(part_size, size - offset)
            read = 0
            while read < part_bytes:
                chunk = handle.read(min(READ_CHUNK, part_bytes - read))
                if not chunk:
                    raise UploadError(f"{path} shrank while being read — rerun the upload")
                _check_utf8(utf8, chunk, path, offset + read)
                for digest in (whole_sha, whole_md5, part_sha, part_md5):
                    digest.update(chunk)
                read += len(chunk)
            parts.append(Part(number, offset, part_bytes, part_md5.hexdigest(), part_sha.digest()))
    _check_utf8(utf8, b"", path, size, final=True)
    return LocalFile(path, size, whole_sha.hexdigest(), whole_md5.hexdigest(), tuple(parts))


def _check_utf8(decoder, chunk: bytes, path: Path, offset: int, final: bool = False) -> None:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as error:
        raise UploadError(
            f"{path} is not UTF-8 (at byte offset {offset + error.start}) — re-encode it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > utf8/{path.name}`"
        ) from None


def is_unchanged(client, bucket: str, key: str, local: LocalFile) -> bool:
    """True when the object exists with the local file's size and SHA-256 metadata."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return head["ContentLength"] == local.size and head["Metadata"].get("sha256") == (
        local.sha256_hex
    )


def _put_whole(client, bucket: str, key: str, local: LocalFile) -> None:
    with local.path.open("rb") as body:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ChecksumSHA256=local.expected_checksum(),
            Metadata={"sha256": local.sha256_hex},
        )


def _stored_parts(client, bucket: str, key: str, upload_id: str) -> dict[int, dict]:
    parts: dict[int, dict] = {}
    for page in client.get_paginator("list_parts").paginate(
        Bucket=bucket, Key=key, UploadId=upload_id
    ):
        for part in page.get("Parts", []):
            parts[part["PartNumber"]] = part
    return parts


def _part_matches(stored: dict, local: LocalFile) -> bool:
    number = stored["PartNumber"]
    if number > len(local.parts):
        return False
    part = local.parts[number - 1]
    return stored["Size"] == part.size and stored["ETag"].strip('"') == part.md5_hex


def _resumable_upload(client, bucket: str, key: str, local: LocalFile) -> tuple[str, set[int]]:
    """The newest unfinished upload of key whose stored parts all match the local file.

    Unfinished uploads that do not match (another file version or part size) are aborted so
    they stop holding storage. Returns (upload id, part numbers already stored) or ("", set()).
    """
    uploads = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
        uploads.extend(upload for upload in page.get("Uploads", []) if upload["Key"] == key)
    uploads.sort(key=lambda upload: upload["Initiated"], reverse=True)
    chosen, reused = "", set()
    for upload in uploads:
        stored = _stored_parts(client, bucket, key, upload["UploadId"])
        if not chosen and all(_part_matches(part, local) for part in stored.values()):
            chosen, reused = upload["UploadId"], set(stored)
        else:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
    return chosen, reused


def _upload_parts(
    client, bucket: str, key: str, local: LocalFile, upload_id: str, parts, workers: int
) -> None:
    fd = os.open(local.path, os.O_RDONLY)
    try:

        def send(part: Part) -> None:
            data = os.pread(fd, part.size, part.offset)
            if len(data) != part.size or hashlib.md5(data).hexdigest() != part.md5_hex:
                raise UploadError(f"{local.path} changed while uploading — rerun the upload")
            client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part.number,
                Body=data,
                ChecksumSHA256=_b64(part.sha256),
            )

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(send, part) for part in parts]:
                future.result()
    finally:
        os.close(fd)


def _multipart(client, bucket: str, key: str, local: LocalFile, workers: int) -> int:
    """Upload (or finish uploading) local in parts; returns how many stored parts were reused."""
    upload_id, reused = _resumable_upload(client, bucket, key, local)
    if not upload_id:
        upload_id = client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": local.sha256_hex},
        )["UploadId"]
    missing = [part for part in local.parts if part.number not in reused]
    _upload_parts(client, bucket, key, local, upload_id, missing, workers)
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {
                    "PartNumber": part.number,
                    "ETag": f'"{part.md5_hex}"',
                    "ChecksumSHA256": _b64(part.sha256),
                }
                for part in local.parts
            ]
        },
    )
    return len(reused)


def verify(client, bucket: str, key: str, local: LocalFile) -> None:
    """Check that S3 stored exactly the local bytes; raise UploadError naming the mismatch."""
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    problems = []
    if head["ContentLength"] != local.size:
        problems.append(f"size {head['ContentLength']} != {local.size}")
    if head["Metadata"].get("sha256") != local.sha256_hex:
        problems.append("sha256 metadata differs (the file changed during the upload?)")
    checksum = head.get("ChecksumSHA256")
    etag = head.get("ETag", "").strip('"')
    if checksum:
        if checksum != local.expected_checksum():
            problems.append(f"checksum {checksum} != {local.expected_checksum()}")
    elif len(etag.partition("-")[0]) == 32 and etag != local.expected_etag():
        # Without a stored checksum, an MD5-style ETag still proves the bytes.
        problems.append(f"ETag {etag} != {local.expected_etag()}")
    if problems:
        raise UploadError(
            f"s3://{bucket}/{key} does not match {local.path}: {'; '.join(problems)}"
            " — rerun the upload"
        )


def upload_file(
    client, path: Path, bucket: str, key: str, part_size: int, workers: int = 4
) -> UploadResult:
    """Upload one file unless S3 already has it; verify what was stored."""
    local = digest_file(path, part_size)
    if is_unchanged(client, bucket, key, local):
        return UploadResult(path.name, "unchanged", local.size, len(local.parts))
    reused = 0
    if local.is_multipart:
        reused = _multipart(client, bucket, key, local, workers)
    else:
        _put_whole(client, bucket, key, local)
    verify(client, bucket, key, local)
    status = "resumed" if reused else "uploaded"
    return UploadResult(path.name, status, local.size, len(local.parts), reused)


def upload_folder(
    src: Path,
    dest: str,
    pattern: str = "taxi_*.txt",
    part_size: int = DEFAULT_PART_SIZE_MB * MIB,
    workers: int = 4,
    client=None,
    report=None,
) -> list[UploadResult]:
    """Upload every file in src matching pattern to the dest prefix, in name order."""
    bucket, prefix = parse_s3_uri(dest)
    files = sorted(path for path in src.glob(pattern) if path.is_file())
    if not files:
        raise UploadError(
            f"no files matching {pattern} in {src} — generate sample data with "
            f"`python -m scripts.generate_raw --out {src}`"
        )
    client = client or boto3.client("s3")
    results = []
    for path in files:
        key = f"{prefix}/{path.name}" if prefix else path.name
        try:
            result = upload_file(client, path, bucket, key, part_size, workers)
        except ClientError as error:
            raise UploadError(_explain(error, bucket, key)) from error
        results.append(result)
        if report:
            report(result)
    return results


def _explain(error: ClientError, bucket: str, key: str) -> str:
    code = error.response["Error"]["Code"]
    if code == "NoSuchBucket":
        return (
            f"bucket {bucket} does not exist — create it first (`aws s3 mb s3://{bucket}`; "
            f"a local server makes it with `python -m scripts.s3_server start --bucket {bucket}`)"
        )
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return (
            f"S3 refused access to s3://{bucket}/{key} ({code}) — check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that the key may write this prefix"
        )
    return f"S3 error {code} on s3://{bucket}/{key}: {error.response['Error'].get('Message', '')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m scripts.upload_raw",
        description="Upload raw DC taxi files to S3: skips unchanged files, verifies every "
        "object, resumes interrupted multipart uploads.",
    )
    parser.add_argument("--src", type=Path, default=Path(DEFAULT_RAW), help="local folder")
    parser.add_argument("--dest", required=True, help="S3 prefix, e.g. s3://dc-taxi/raw")
    parser.add_argument(
        "--pattern", default="taxi_*.txt", help="file name glob; default taxi_*.txt"
    )
    parser.add_argument(
        "--part-size-mb",
        type=int,
        default=DEFAULT_PART_SIZE_MB,
        help=f"multipart part size above which files go in parts; default {DEFAULT_PART_SIZE_MB}",
    )
    parser.add_argument("--workers", type=int, default=4, help="parts uploaded in parallel")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    if args.part_size_mb < MIN_PART_SIZE_MB:
        parser.error(f"--part-size-mb must be at least {MIN_PART_SIZE_MB} (S3's minimum)")

    def report(result: UploadResult) -> None:
        if args.quiet:
            return
        detail = f"{result.size / MIB:.1f} MiB"
        if result.parts_reused:
            detail += f", {result.parts_reused}/{result.parts_total} parts already stored"
        print(f"{result.name}: {result.status} ({detail})")

    try:
        upload_folder(
            args.src,
            args.dest,
            args.pattern,
            args.part_size_mb * MIB,
            max(1, args.workers),
            report=report,
        )
    except UploadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print(
            "error: no AWS credentials — set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
            "AWS_PROFILE",
            file=sys.stderr,
        )
        return 1
    except BotoCoreError as error:
        print(f"error: {error} — is AWS_ENDPOINT_URL right and the server up?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
