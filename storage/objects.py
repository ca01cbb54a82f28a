"""Objects in MinIO: the staging, attachments and quarantine buckets behind a small interface.

The minio SDK's errors stop here: S3Error and urllib3 failures become ObjectMissing or
ServiceUnavailable, so callers never import the SDK.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, REPLACE, CopySource, Filter, Tags
from minio.datatypes import Part
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from core.errors import ObjectMissing, ServiceUnavailable
from core.settings import Settings

T = TypeVar("T")

# NoSuchUpload: a multipart upload aborted, completed, or dropped by MinIO as stale.
_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "NoSuchVersion", "NoSuchUpload"}


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    content_type: str
    last_modified: datetime | None
    # The object's user metadata (x-amz-meta-*), names in lower case without the prefix.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Buckets:
    staging: str
    attachments: str
    quarantine: str


def staging_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def attachment_key(tenant: str, profile_id: str, attachment_id: str, upload_id: str) -> str:
    return f"{tenant}/{profile_id}/{attachment_id}/{upload_id}"


def rendition_key(object_key: str, px: int, ext: str | None = None) -> str:
    """Beside the served file, never under it: a listing of one version's key as a prefix
    finds the file and its renditions alike. `ext`: the format of a rendition made on demand
    (`…@128.webp`); versions attached before those have theirs at `…@128`."""
    return f"{object_key}@{px}.{ext}" if ext else f"{object_key}@{px}"


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, S3Error) and exc.code in _MISSING_CODES:
        return ObjectMissing(f"{exc.bucket_name}/{exc.object_name}: {exc.code}")
    return ServiceUnavailable("minio", type(exc).__name__)


_SDK_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)

# Parts of one upload in flight at once while the next is read. Two keep loopback MinIO busy on
# two cores as well as three did, with one part less in memory per upload.
PARALLEL_PARTS = 2


def _read_full(reader: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (a raw stream may return short
    reads before it ends)."""
    data = reader.read(size)
    if len(data) == size or not data:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


@contextmanager
def _sdk() -> Iterator[None]:
    try:
        yield
    except _SDK_ERRORS as exc:
        raise _translate(exc) from exc


class ObjectStore:
    def __init__(self, client: Minio, buckets: Buckets) -> None:
        self.client = client
        self.buckets = buckets
        # Objects held in memory by `holding`, per thread (API threads share one store).
        self._held = threading.local()

    @contextmanager
    def holding(self, bucket: str, key: str, size: int) -> Iterator[None]:
        """Within the block, every read of this one object (whole or ranged, streamed or as a
        file) comes from a single GET held in memory: a small file's scan, type check and
        sanitize each read it from the start, and MinIO's work per request was a large share
        of a small file's cost (make bench, B3). For small objects only: it holds `size` bytes."""
        data = self.read_range(bucket, key, 0, size) if size else b""
        held: dict[tuple[str, str], bytes] = self._held.__dict__.setdefault("objects", {})
        held[(bucket, key)] = data
        try:
            yield
        finally:
            held.pop((bucket, key), None)

    def _from_memory(self, bucket: str, key: str) -> bytes | None:
        held: dict[tuple[str, str], bytes] | None = getattr(self._held, "objects", None)
        return held.get((bucket, key)) if held else None

    @classmethod
    def connect(
        cls,
        endpoint: str,
        access_key: str,
        secret_key: str,
        buckets: Buckets,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        timeout: float = 30.0,
    ) -> ObjectStore:
        # Few quick retries: an unreachable MinIO must become a 503 in seconds, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=timeout),
            maxsize=32,
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        return cls(client, buckets)

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        return cls.connect(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            Buckets(
                settings.bucket_staging, settings.bucket_attachments, settings.bucket_quarantine
            ),
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    # --- setup and health ---------------------------------------------------------------------

    def ensure_buckets(self, staging_expiry_days: int) -> None:
        # The last backstop against staging leaks: whatever the reconciler misses expires.
        # (Parts of a multipart upload whose abort never reached MinIO are MinIO's own
        # business: it drops stale multipart uploads after MINIO_API_STALE_UPLOADS_EXPIRY,
        # 24 h by default, and ignores the S3 AbortIncompleteMultipartUpload rule.)
        self._ensure_bucket(self.buckets.staging, "expire-staging", staging_expiry_days)
        self._ensure_bucket(self.buckets.attachments)
        self._ensure_bucket(self.buckets.quarantine)

    def ensure_expiring_bucket(self, name: str, days: int) -> None:
        """A private bucket whose objects expire after `days` (kept originals of sanitized
        pictures): nothing serves from it, the lifecycle rule is what deletes."""
        self._ensure_bucket(name, "expire-originals", days)

    def _ensure_bucket(self, name: str, expiry_rule: str | None = None, days: int = 0) -> None:
        """Make the bucket unless it is there (another process may be making it this instant);
        with a rule id, its objects expire `days` after they are written."""
        with _sdk():
            if not self.client.bucket_exists(name):
                try:
                    self.client.make_bucket(name)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            if expiry_rule is not None:
                rule = Rule(
                    ENABLED,
                    rule_filter=Filter(prefix=""),
                    rule_id=expiry_rule,
                    expiration=Expiration(days=days),
                )
                self.client.set_bucket_lifecycle(name, LifecycleConfig([rule]))

    def ping(self) -> None:
        with _sdk():
            self.client.bucket_exists(self.buckets.staging)

    # --- writes -------------------------------------------------------------------------------

    def put_stream(
        self,
        bucket: str,
        key: str,
        reader: BinaryIO,
        content_type: str,
        part_size: int,
        parallel: int = PARALLEL_PARTS,
    ) -> str:
        """Stream `reader` into bucket/key with a multipart upload of part_size parts, up to
        `parallel` of them in flight while the next one is read; a stream that fits in one part
        is stored with a single PUT.

        Memory is bounded by parallel + 1 parts whatever the size. If `reader` raises (size
        limit, the client went away), the multipart upload is aborted and the exception
        propagates unchanged, so nothing is left in the bucket.

        The SDK's put_object(length=-1) does the same but reads one byte past every part and
        copies each part twice to carry that byte over (two more part-sized buffers per part),
        with three parts in flight. Sending the parts here with the SDK's own UploadPart calls
        took the API worker's peak RSS growth during a 2 GiB upload from 62-76 MiB to 34-45 MiB
        (make bench, B1)."""
        first = _read_full(reader, part_size)
        second = _read_full(reader, part_size) if len(first) == part_size else b""
        if not second:
            with _sdk():
                single = self.client.put_object(
                    bucket, key, io.BytesIO(first), len(first), content_type, part_size=part_size
                )
            return str(single.etag)
        with _sdk():
            upload_id = self.client._create_multipart_upload(
                bucket, key, {"Content-Type": content_type}
            )
        # Handed over as a list the sender empties, so no name here keeps a sent part alive.
        read_ahead = [first, second]
        del first, second
        try:
            etags = self._upload_parts(
                bucket, key, upload_id, read_ahead, reader, part_size, parallel
            )
            with _sdk():
                result = self.client._complete_multipart_upload(
                    bucket, key, upload_id, [Part(n, etag) for n, etag in enumerate(etags, 1)]
                )
        except BaseException:
            with suppress(*_SDK_ERRORS):
                self.client._abort_multipart_upload(bucket, key, upload_id)
            raise
        return str(result.etag)

    def _upload_parts(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        read_ahead: list[bytes],
        reader: BinaryIO,
        part_size: int,
        parallel: int,
    ) -> list[str]:
        def send(number: int, data: bytes) -> str:
            with _sdk():
                return str(self.client._upload_part(bucket, key, data, None, upload_id, number))

        futures: list[Future[str]] = []
        with ThreadPoolExecutor(parallel, thread_name_prefix="attachd-part") as pool:
            try:
                number = 0
                while True:
                    data = read_ahead.pop(0) if read_ahead else _read_full(reader, part_size)
                    if not data:
                        break
                    # The next part is read while `parallel` parts are in flight; it is sent
                    # once one of them is done.
                    in_flight = [f for f in futures if not f.done()]
                    if len(in_flight) >= parallel:
                        wait(in_flight, return_when=FIRST_COMPLETED)
                    for f in futures:
                        if f.done():
                            f.result()  # a failed part stops the upload now, not at the end
                    number += 1
                    futures.append(pool.submit(send, number, data))
                    del data
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Server-side copy; no bytes pass through this process. Objects over 5 GiB are copied
        part by part: the SDK's copy_object stats the source and switches to compose_object
        itself (a stat of our own before it was a second HEAD to MinIO on every attach)."""
        obj_tags = None
        if tags:
            obj_tags = Tags.new_object_tags()
            obj_tags.update(tags)
        with _sdk():
            self.client.copy_object(
                dst_bucket,
                dst_key,
                CopySource(src_bucket, src_key),
                tags=obj_tags,
                tagging_directive=REPLACE if obj_tags else None,
            )

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting a missing object is not an error."""
        with _sdk():
            self.client.remove_object(bucket, key)

    def delete_version(self, bucket: str, key: str) -> None:
        """A served version's file and every rendition beside it (rendition_key), whichever
        sizes and formats were made: they are found by listing, not from a record."""
        self.delete(bucket, key)
        for found, _ in list(self.list_keys(bucket, f"{key}@")):
            self.delete(bucket, found)

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> None:
        """One small object in one PUT, with user metadata (a rendition and its digest)."""
        with _sdk():
            self.client.put_object(
                bucket, key, io.BytesIO(data), len(data), content_type, metadata=dict(metadata)
            )

    # --- reads --------------------------------------------------------------------------------

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        with _sdk():
            st = self.client.stat_object(bucket, key)
        prefix = "x-amz-meta-"
        return ObjectInfo(
            size=st.size or 0,
            etag=str(st.etag),
            content_type=str(st.content_type),
            last_modified=st.last_modified,
            metadata={
                k.lower().removeprefix(prefix): str(v)
                for k, v in (st.metadata or {}).items()
                if k.lower().startswith(prefix)
            },
        )

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key)
        except ObjectMissing:
            return False
        return True

    def iter_range(
        self, bucket: str, key: str, offset: int = 0, length: int = 0, chunk_size: int = 256 * 1024
    ) -> Iterator[bytes]:
        """Yield the object's bytes (or a range of them) in chunks, releasing the connection at
        the end or when the consumer stops early."""
        held = self._from_memory(bucket, key)
        if held is not None:
            end = offset + length if length else len(held)
            for start in range(offset, end, chunk_size):
                yield held[start : min(start + chunk_size, end)]
            return
        with _sdk():
            response = self.client.get_object(bucket, key, offset=offset, length=length)
        try:
            while True:
                with _sdk():
                    chunk = response.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            response.close()
            response.release_conn()

    def open_reader(
        self, bucket: str, key: str, size: int, buffer_size: int = 1024 * 1024
    ) -> BinaryIO:
        """A seekable, buffered file object over the object using ranged GETs: lets Pillow and
        libmagic read a staged file without a local copy or holding it whole in memory.

        An object no larger than the buffer is fetched whole, with one GET: the type checks
        read it from the start twice (libmagic's head, then the decode), and over ranged GETs
        each pass was a request to MinIO of its own; MinIO's work per request was the largest
        share of a small file's cost in the pipeline (make bench, B3)."""
        held = self._from_memory(bucket, key)
        if held is not None:
            return io.BytesIO(held)
        if size <= buffer_size:
            # (A length of 0 would mean "to the end" to the SDK.)
            return io.BytesIO(self.read_range(bucket, key, 0, size) if size else b"")
        raw = _RangeReader(self, bucket, key, size)
        return io.BufferedReader(raw, buffer_size=buffer_size)

    def read_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        held = self._from_memory(bucket, key)
        if held is not None:
            return held[offset : offset + length]
        with _sdk():
            response = self.client.get_object(bucket, key, offset=offset, length=length)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, datetime | None]]:
        with _sdk():
            for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                if obj.object_name is not None:
                    yield obj.object_name, obj.last_modified

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an SDK call with the same error translation (for the rare one-off)."""
        with _sdk():
            return fn(*args, **kwargs)


class _RangeReader(io.RawIOBase):
    def __init__(self, store: ObjectStore, bucket: str, key: str, size: int) -> None:
        self._store = store
        self._bucket = bucket
        self._key = key
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self._size + offset
        self._pos = max(0, self._pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._store.read_range(self._bucket, self._key, self._pos, want)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n
