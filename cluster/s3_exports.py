"""QLDB's ExportJournalToS3 served by `strand serve`: export jobs, their durable status, their run.

cluster/gateway/control.py routes ExportJournalToS3, DescribeJournalS3Export,
ListJournalS3Exports and ListJournalS3ExportsForLedger here (`control_operation`). Shapes are
botocore's `qldb/2019-01-02` model (`JournalS3ExportDescription`).

An `ExportJobs` registry belongs to one ledger set (one per server process, `jobs_for`):
- a request is checked as QLDB checked it (InclusiveStartTime before ExclusiveEndTime,
  ExclusiveEndTime not in the future, a start before the ledger's creation moved to its
  CreationDateTime; bucket, prefix, RoleArn, OutputFormat, ObjectEncryptionType and KmsKeyArn
  by the model's rules: SSE_KMS needs a KmsKeyArn, the others take none; at most
  `MAX_CONCURRENT_PER_LEDGER` exports IN_PROGRESS per ledger), then recorded IN_PROGRESS;
- the job runs on a thread of the registry's pool: `cluster.export.export_journal` writes
  QLDB's layout to the bucket (`S3Store`: boto3's standard credential chain, the endpoint
  from `AWS_ENDPOINT_URL_S3` or the server's `--s3-endpoint-url`; SSE_S3 / SSE_KMS applied
  as PutObject's server-side encryption). Then COMPLETED; a failure is CANCELLED (QLDB's
  status for an export it could not finish) with the error recorded (`strandError` in the
  registry file, logged; not in QLDB's answer shape);
- RoleArn and the encryption settings are accepted and recorded (no IAM role is assumed:
  the server's own credentials write the objects).

Durability: every job lives in `journal-s3-exports.json` beside the ledger set's metadata
(`<data>/` for `--data`, `<data root>/ledgers/` for `--cluster`), replaced atomically (temp
file, fsync, rename, directory fsync) on every status change. A job found IN_PROGRESS when
the registry loads (the server stopped mid-way) runs again from the start under the same
export id (the same keys are written again; the completed manifest, written last, is what
marks an export finished). `close()` stops running jobs at their next block batch and leaves
them IN_PROGRESS for the next start.

Not done: QLDB's expiry of export records after some days (they are kept for ever), and
exports of a deleted ledger stay listed.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextlib
import datetime
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from cluster.files import write_atomically
from core.errors import InvalidArgumentError, LimitExceededError, StrandError

__all__ = [
    "EXPORTS_FILE",
    "ExportJobs",
    "ExportNotFoundError",
    "ExportPreconditionError",
    "control_operation",
    "jobs_for",
]

log = logging.getLogger("strand.s3_exports")

EXPORTS_FILE = "journal-s3-exports.json"
_FORMAT = 1
MAX_CONCURRENT_PER_LEDGER = 2  # QLDB: "up to two concurrent journal export requests"
OUTPUT_FORMATS = ("ION_TEXT", "ION_BINARY", "JSON")
ENCRYPTION_TYPES = ("SSE_KMS", "SSE_S3", "NO_ENCRYPTION")
S3_BUCKET = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
S3_PREFIX_MAX = 128
ARN_CHARS = (20, 1600)
EXPORT_ID = re.compile(r"^[A-Za-z0-9]{22}$")
NEXT_TOKEN = re.compile(r"^[A-Za-z0-9+/=-]{4,1024}$")
MAX_RESULTS = (1, 100)
IN_PROGRESS, COMPLETED, CANCELLED = "IN_PROGRESS", "COMPLETED", "CANCELLED"


class ExportNotFoundError(StrandError):
    """No export of that id for that ledger (QLDB: ResourceNotFoundException)."""


class ExportPreconditionError(StrandError):
    """The ledger cannot export now, e.g. it is still CREATING (ResourcePreconditionNotMet)."""


class _Stopped(Exception):
    """The registry is closing: the job stops and stays IN_PROGRESS."""


def _metadata_dir(ledgers: Any) -> Path:
    root = getattr(ledgers, "root", None)
    if root is not None:
        return Path(root)
    return Path(ledgers.data_root) / "ledgers"


class ExportJobs:
    """The export jobs of one ledger set (see the module docstring). Thread-safe."""

    def __init__(
        self, ledgers: Any, *, s3_endpoint_url: str | None = None, workers: int = 2
    ) -> None:
        self.ledgers = ledgers
        self.s3_endpoint_url = s3_endpoint_url
        self.path = _metadata_dir(ledgers) / EXPORTS_FILE
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="s3-export"
        )
        self._futures: dict[str, concurrent.futures.Future[None]] = {}
        self._jobs: dict[str, dict[str, Any]] = self._load()
        for job in self._jobs.values():
            if job["Status"] == IN_PROGRESS:  # the server stopped mid-way: run it again
                self._submit(job["ExportId"])

    # ----------------------------------------------------------------- the file
    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            raise ValueError(f"{self.path}: unknown format")
        return {job["ExportId"]: job for job in raw["exports"]}

    def _save(self) -> None:
        """Caller holds the lock."""
        jobs = sorted(self._jobs.values(), key=_order)
        data = json.dumps({"format": _FORMAT, "exports": jobs}, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, data)

    # ----------------------------------------------------------------- operations
    def start(self, name: str, body: dict[str, Any]) -> str:
        """ExportJournalToS3: check, record IN_PROGRESS, run in the pool; the export id."""
        info = self.ledgers.describe(name)  # LedgerNotFoundError
        if info.state != "ACTIVE":
            raise ExportPreconditionError(f"ledger {name} is {info.state}, not ACTIVE")
        job = _checked_request(body, info.creation_time.timestamp())
        from core.ids import base62_id

        export_id = base62_id(os.urandom(16))
        job.update(
            {"LedgerName": name, "ExportId": export_id, "ExportCreationTime": time.time(),
             "Status": IN_PROGRESS}
        )  # fmt: skip
        with self._lock:
            mine = [j for j in self._jobs.values() if j["LedgerName"] == name]
            running = sum(1 for j in mine if j["Status"] == IN_PROGRESS)
            if running >= MAX_CONCURRENT_PER_LEDGER:
                raise LimitExceededError(
                    f"ledger {name} has {running} journal exports in progress (at most "
                    f"{MAX_CONCURRENT_PER_LEDGER})"
                )
            self._jobs[export_id] = job
            self._save()
        self._submit(export_id)
        return export_id

    def describe(self, name: str, export_id: str) -> dict[str, Any]:
        if not EXPORT_ID.match(export_id):
            raise InvalidArgumentError(f"ExportId must be 22 letters and digits: {export_id!r}")
        with self._lock:
            job = self._jobs.get(export_id)
            if job is None or job["LedgerName"] != name:
                raise ExportNotFoundError(f"no journal export {export_id} of ledger {name}")
            return _description(job)

    def list(
        self, name: str | None, max_results: str | None, next_token: str | None
    ) -> dict[str, Any]:
        """ListJournalS3Exports(ForLedger): oldest first, pages of MaxResults."""
        limit = MAX_RESULTS[1]
        if max_results is not None:
            try:
                limit = int(max_results)
            except ValueError:
                raise InvalidArgumentError("MaxResults is not an integer") from None
            if not MAX_RESULTS[0] <= limit <= MAX_RESULTS[1]:
                raise InvalidArgumentError(
                    f"MaxResults must be {MAX_RESULTS[0]} to {MAX_RESULTS[1]}"
                )
        after = None
        if next_token is not None:
            try:
                if not NEXT_TOKEN.match(next_token):
                    raise ValueError
                after = base64.b64decode(next_token, validate=True).decode("ascii")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise InvalidArgumentError(
                    "NextToken is not a token a list call returned"
                ) from None
        with self._lock:
            jobs = sorted(
                (j for j in self._jobs.values() if name is None or j["LedgerName"] == name),
                key=_order,
            )
        if after is not None:
            jobs = [j for j in jobs if _token_of(j) > after]
        page = jobs[:limit]
        answer: dict[str, Any] = {"JournalS3Exports": [_description(j) for j in page]}
        if len(jobs) > limit:
            answer["NextToken"] = base64.b64encode(_token_of(page[-1]).encode()).decode()
        return answer

    def wait(self, export_id: str, timeout_s: float | None = None) -> str:
        """Wait for a job's run to end (tests, tools); its status."""
        future = self._futures.get(export_id)
        if future is not None:
            with contextlib.suppress(concurrent.futures.CancelledError):
                future.result(timeout_s)
        with self._lock:
            return str(self._jobs[export_id]["Status"])

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the running jobs (they stay IN_PROGRESS and run again at the next start)."""
        self._closing.set()
        futures = list(self._futures.values())
        concurrent.futures.wait(futures, timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------- the job
    def _submit(self, export_id: str) -> None:
        self._futures[export_id] = self._pool.submit(self._run, export_id)

    def _set(self, export_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs[export_id].update(fields)
            self._save()

    def _run(self, export_id: str) -> None:
        with self._lock:
            job = dict(self._jobs[export_id])
        try:
            result = self._export(job)
        except _Stopped:
            return
        except Exception as exc:  # any failure ends the job, recorded
            if self._closing.is_set():
                return  # the ledgers closed under it: run again at the next start
            log.warning("journal export %s of %s failed: %s", export_id, job["LedgerName"], exc)
            self._set(export_id, Status=CANCELLED, strandError=f"{type(exc).__name__}: {exc}")
            return
        self._set(export_id, Status=COMPLETED, strandResult=result)

    def _export(self, job: dict[str, Any]) -> dict[str, Any]:
        from cluster.export import S3Store, export_journal, sse_put_args

        config = job["S3ExportConfiguration"]
        encryption = config["EncryptionConfiguration"]
        store = S3Store(
            config["Bucket"],
            endpoint_url=self.s3_endpoint_url,
            put_args=sse_put_args(encryption["ObjectEncryptionType"], encryption.get("KmsKeyArn")),
        )

        def progress(done: int, total: int) -> None:
            if self._closing.is_set():
                raise _Stopped

        result = export_journal(
            self.ledgers.open(job["LedgerName"]),
            store,
            config["Prefix"],
            start_time=_utc(job["InclusiveStartTime"]),
            end_time=_utc(job["ExclusiveEndTime"]),
            output_format=job["OutputFormat"],
            export_id=job["ExportId"],
            ledger_name=job["LedgerName"],
            encryption=encryption["ObjectEncryptionType"],
            progress=progress,
        )
        return {
            "firstSequenceNo": result.first_seq,
            "lastSequenceNo": result.last_seq,
            "dataObjects": len(result.keys),
            "bytes": result.bytes_written,
            "seconds": round(result.seconds, 3),
        }


# ------------------------------------------------------------------ request rules
def _utc(epoch_s: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)


def _order(job: dict[str, Any]) -> tuple[float, str]:
    return float(job["ExportCreationTime"]), str(job["ExportId"])


def _token_of(job: dict[str, Any]) -> str:
    return f"{float(job['ExportCreationTime']):020.6f}:{job['ExportId']}"


def _description(job: dict[str, Any]) -> dict[str, Any]:
    """A job as QLDB's JournalS3ExportDescription (Strand's own fields left out)."""
    return {k: v for k, v in job.items() if not k.startswith("strand")}


def _epoch(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if value is None:
        raise InvalidArgumentError(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgumentError(f"{key} must be a timestamp")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidArgumentError(f"{key} is not a timestamp: {value!r}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            return moment.timestamp()
    return float(value)


def _arn(value: Any, key: str) -> str:
    if not isinstance(value, str) or not ARN_CHARS[0] <= len(value) <= ARN_CHARS[1]:
        raise InvalidArgumentError(
            f"{key} must be an ARN of {ARN_CHARS[0]} to {ARN_CHARS[1]} characters"
        )
    return value


def _checked_request(body: dict[str, Any], ledger_created_s: float) -> dict[str, Any]:
    """The recorded fields of an ExportJournalToS3 request (QLDB's rules, see module doc)."""
    start = _epoch(body, "InclusiveStartTime")
    end = _epoch(body, "ExclusiveEndTime")
    if end > time.time() + 1.0:  # a second for the clocks of client and server
        raise InvalidArgumentError(
            "ExclusiveEndTime must be less than or equal to the current UTC date and time"
        )
    if start >= end:
        raise InvalidArgumentError("InclusiveStartTime must be before ExclusiveEndTime")
    start = max(start, ledger_created_s)  # QLDB defaults an earlier start to the creation
    role = _arn(body.get("RoleArn"), "RoleArn")
    config = body.get("S3ExportConfiguration")
    if not isinstance(config, dict):
        raise InvalidArgumentError("S3ExportConfiguration is required")
    bucket, prefix = config.get("Bucket"), config.get("Prefix")
    if not isinstance(bucket, str) or not S3_BUCKET.match(bucket):
        raise InvalidArgumentError(
            "S3ExportConfiguration.Bucket must be 3 to 255 of [A-Za-z0-9-_.]"
        )
    if not isinstance(prefix, str) or len(prefix) > S3_PREFIX_MAX:
        raise InvalidArgumentError(
            f"S3ExportConfiguration.Prefix must be 0 to {S3_PREFIX_MAX} characters"
        )
    encryption = config.get("EncryptionConfiguration")
    if not isinstance(encryption, dict):
        raise InvalidArgumentError("S3ExportConfiguration.EncryptionConfiguration is required")
    kind = encryption.get("ObjectEncryptionType")
    if kind not in ENCRYPTION_TYPES:
        raise InvalidArgumentError(f"ObjectEncryptionType must be one of {ENCRYPTION_TYPES}")
    recorded_encryption: dict[str, str] = {"ObjectEncryptionType": kind}
    kms_key = encryption.get("KmsKeyArn")
    if kind == "SSE_KMS":
        if kms_key is None:
            raise InvalidArgumentError("KmsKeyArn is required when ObjectEncryptionType is SSE_KMS")
        recorded_encryption["KmsKeyArn"] = _arn(kms_key, "KmsKeyArn")
    elif kms_key is not None:
        raise InvalidArgumentError(f"KmsKeyArn is given only with SSE_KMS, not {kind}")
    output_format = body.get("OutputFormat", "ION_TEXT")
    if output_format not in OUTPUT_FORMATS:
        raise InvalidArgumentError(f"OutputFormat must be one of {OUTPUT_FORMATS}")
    return {
        "InclusiveStartTime": start,
        "ExclusiveEndTime": end,
        "S3ExportConfiguration": {
            "Bucket": bucket,
            "Prefix": prefix,
            "EncryptionConfiguration": recorded_encryption,
        },
        "RoleArn": role,
        "OutputFormat": output_format,
    }


# ------------------------------------------------------------------ per process
_registries: dict[int, ExportJobs] = {}
_registries_lock = threading.Lock()


def jobs_for(ledgers: Any, *, s3_endpoint_url: str | None = None) -> ExportJobs:
    """The export jobs of a ledger set (one per process and set; the first call loads the
    registry and runs again the jobs left IN_PROGRESS)."""
    with _registries_lock:
        jobs = _registries.get(id(ledgers))
        if jobs is None:
            jobs = ExportJobs(ledgers, s3_endpoint_url=s3_endpoint_url)
            _registries[id(ledgers)] = jobs
        return jobs


def close_jobs(ledgers: Any) -> None:
    """Stop the set's running jobs (before its ledgers close)."""
    with _registries_lock:
        jobs = _registries.pop(id(ledgers), None)
    if jobs is not None:
        jobs.close()


def control_operation(
    ledgers: Any,
    name: str | None,
    operation: str,
    body: dict[str, Any],
    export_id: str | None,
    query: dict[str, str | None],
) -> dict[str, Any]:
    """One of QLDB's journal export operations (control.py routes them here)."""
    jobs = jobs_for(ledgers)
    if operation == "ExportJournalToS3":
        assert name is not None
        return {"ExportId": jobs.start(name, body)}
    if operation == "DescribeJournalS3Export":
        assert name is not None
        assert export_id is not None
        return {"ExportDescription": jobs.describe(name, export_id)}
    if operation in ("ListJournalS3Exports", "ListJournalS3ExportsForLedger"):
        return jobs.list(name, query.get("max_results"), query.get("next_token"))
    raise InvalidArgumentError(f"unknown export operation {operation}")
