"""ExportJournalToS3 through the QLDB control plane (cluster/s3_exports.py, issue 14).

- boto3's real `qldb` client (the pinned environment, tests/qldb_venv.py) against
  `strand serve --data DIR`, with moto's S3 server started here on 127.0.0.1: an export in
  each format, Describe polled until COMPLETED, both List calls, QLDB's input rules; then the
  bucket holds QLDB's layout and `strand verify export s3://...` verifies each export against
  the digest boto3 fetched with GetDigest;
- in-process (`handle_control`): the registry is durable: a job left IN_PROGRESS by a server
  that stopped runs again when the registry loads; a job that cannot write is CANCELLED.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import s3_exports
from cluster.gateway.control import handle_control
from cluster.ledgers import EmbeddedLedgers
from core.ledger import Ledger
from tests.gateway_drivers import BOTO3_CONTROL
from tests.qldb_venv import qldb_python
from tests.test_gateway_control import _stop_server, _wait_for_endpoint

pytest.importorskip("moto")

BUCKET = "journal-exports"
ROLE = "arn:aws:iam::000000000000:role/qldb-export"
KMS_KEY = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port) with the bucket; its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _client(endpoint).create_bucket(Bucket=BUCKET)
    del boto3
    try:
        yield endpoint
    finally:
        server.stop()


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,  # found by boto3 itself, in the server
    }


def _fill(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: (tx.create_table("Car"), tx.create_index("Car", "VIN")))
    for i in range(12):
        ledger.execute_lambda(lambda tx, i=i: tx.insert("Car", {"VIN": f"V{i}", "n": i}))


CLIENT_SCRIPT = (
    BOTO3_CONTROL
    + r"""
import datetime, time

role, kms = sys.argv[2:4]
out = {"exports": {}}

def error(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as exc:
        return [exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]]
    return None

got = qldb.get_digest(Name="cars")  # saved as the AWS CLI prints it: the blob in base64
out["digest"] = {"Digest": base64.b64encode(got["Digest"]).decode(),
                 "DigestTipAddress": got["DigestTipAddress"]}
now = datetime.datetime.now(datetime.timezone.utc)
start = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
config = {"Bucket": "journal-exports", "Prefix": "cars/",
          "EncryptionConfiguration": {"ObjectEncryptionType": "SSE_KMS", "KmsKeyArn": kms}}
for fmt in ("ION_TEXT", "ION_BINARY", "JSON"):
    export_id = qldb.export_journal_to_s3(
        Name="cars", InclusiveStartTime=start, ExclusiveEndTime=now, RoleArn=role,
        S3ExportConfiguration=config, OutputFormat=fmt)["ExportId"]
    deadline = time.time() + 60
    while True:
        described = qldb.describe_journal_s3_export(Name="cars", ExportId=export_id)
        status = described["ExportDescription"]["Status"]
        if status != "IN_PROGRESS" or time.time() > deadline:
            break
        time.sleep(0.1)
    d = described["ExportDescription"]
    out["exports"][fmt] = {
        "id": export_id, "status": status, "format": d["OutputFormat"], "role": d["RoleArn"],
        "encryption": d["S3ExportConfiguration"]["EncryptionConfiguration"],
        "start_after_creation": d["InclusiveStartTime"] > start,
        "end": d["ExclusiveEndTime"].timestamp() - now.timestamp(),
    }
exports, pages = all_pages(qldb.list_journal_s3_exports, "JournalS3Exports", MaxResults=2)
out["list_all"] = [[e["ExportId"] for e in exports], pages]
out["list_ledger"] = [e["ExportId"] for e in
                      qldb.list_journal_s3_exports_for_ledger(Name="cars")["JournalS3Exports"]]
late = now + datetime.timedelta(hours=1)
def export(**changes):
    kwargs = dict(Name="cars", InclusiveStartTime=start, ExclusiveEndTime=now, RoleArn=role,
                  S3ExportConfiguration=config)
    kwargs.update(changes)
    return error(qldb.export_journal_to_s3, **kwargs)
out["errors"] = {
    "future_end": export(ExclusiveEndTime=late),
    "start_after_end": export(InclusiveStartTime=now, ExclusiveEndTime=start),
    "kms_without_key": export(S3ExportConfiguration={**config, "EncryptionConfiguration": {
        "ObjectEncryptionType": "SSE_KMS"}}),
    "s3_with_key": export(S3ExportConfiguration={**config, "EncryptionConfiguration": {
        "ObjectEncryptionType": "SSE_S3", "KmsKeyArn": kms}}),
    "no_ledger": export(Name="nope"),
    "no_export": error(qldb.describe_journal_s3_export, Name="cars", ExportId="A" * 22),
}
print(json.dumps(out, default=str))
"""
)


def test_export_journal_to_s3_through_strand_serve(tmp_path: Path, s3: str) -> None:
    qldb_python()  # built before the server starts
    data = tmp_path / "data"
    with EmbeddedLedgers(data) as ledgers:  # written in-process, closed before the server opens
        ledgers.create("cars", permissions_mode="STANDARD")
        _fill(ledgers.open("cars"))
    strand = str(Path(sys.executable).with_name("strand"))
    env = {**os.environ, **_aws_env(s3)}
    server = subprocess.Popen(
        [strand, "serve", "--data", str(data), "--port", "0"]
        + ["--access-key", "AKIDEXAMPLE", "--secret-key", "secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        endpoint = _wait_for_endpoint(server)
        run = subprocess.run(
            [str(qldb_python()), "-c", CLIENT_SCRIPT, endpoint, ROLE, KMS_KEY],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout)
    finally:
        _stop_server(server)

    exports = out["exports"]
    for fmt, got in exports.items():
        assert got["status"] == "COMPLETED", (fmt, got)
        assert got["format"] == fmt
        assert got["role"] == ROLE
        assert got["encryption"] == {"ObjectEncryptionType": "SSE_KMS", "KmsKeyArn": KMS_KEY}
        assert got["start_after_creation"]  # 2019 moved to the ledger's creation, as QLDB did
        assert -1 < got["end"] <= 0  # botocore sends whole seconds
    ids = [exports[f]["id"] for f in ("ION_TEXT", "ION_BINARY", "JSON")]
    assert out["list_all"] == [ids, 2]
    assert out["list_ledger"] == ids
    assert out["errors"] == {
        "future_end": [400, "InvalidParameterException"],
        "start_after_end": [400, "InvalidParameterException"],
        "kms_without_key": [400, "InvalidParameterException"],
        "s3_with_key": [400, "InvalidParameterException"],
        "no_ledger": [404, "ResourceNotFoundException"],
        "no_export": [404, "ResourceNotFoundException"],
    }

    # QLDB's layout in the bucket, verified offline against the digest GetDigest returned
    client = _client(s3)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    digest = tmp_path / "digest.json"
    digest.write_text(json.dumps(out["digest"]))
    strand_id = re.search(r'strandId:"(\w+)"', out["digest"]["DigestTipAddress"]["IonText"])
    assert strand_id is not None
    for export_id in ids:
        mine = {k for k in keys if k.startswith(f"cars/{export_id}")}
        assert f"cars/{export_id}.started.manifest" in mine
        completed = f"cars/{export_id}.{strand_id.group(1)}.completed.manifest"
        assert completed in mine
        pattern = rf"cars/{export_id}/\d{{4}}/\d\d/\d\d/\d\d/{strand_id.group(1)}\.\d+-\d+\.ion"
        data_keys = mine - {f"cars/{export_id}.started.manifest", completed}
        assert data_keys
        assert all(re.fullmatch(pattern, k) for k in data_keys), data_keys
        head = client.head_object(Bucket=BUCKET, Key=sorted(data_keys)[0])
        assert head.get("ServerSideEncryption") == "aws:kms"
    verify = subprocess.run(
        [strand, "verify", "export", f"s3://{BUCKET}/cars/", "--digest", str(digest)]
        + ["--export-id", ids[1], "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
    report = json.loads(verify.stdout)
    assert report["ok"]
    assert report["blocksChecked"] == report["digestTipSequenceNo"] + 1
    from cluster import export as ex
    from cluster.export import S3Store

    store = S3Store(BUCKET, client=client)
    for export_id in (ids[0], ids[2]):  # the other formats, in-process
        assert ex.verify_export(store, "cars/", out["digest"], export_id=export_id).ok


def _call(ledgers: Any, method: str, path: str, body: Any = None) -> Any:
    raw = b"" if body is None else json.dumps(body).encode()
    return handle_control(ledgers, method, path, {}, raw)


def test_registry_is_durable_and_failures_cancel(
    tmp_path: Path, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _aws_env(s3).items():
        monkeypatch.setenv(name, value)
    request = {
        "InclusiveStartTime": 0,
        "ExclusiveEndTime": time.time(),
        "RoleArn": ROLE,
        "S3ExportConfiguration": {
            "Bucket": BUCKET,
            "Prefix": "durable/",
            "EncryptionConfiguration": {"ObjectEncryptionType": "NO_ENCRYPTION"},
        },
    }
    with EmbeddedLedgers(tmp_path / "data") as ledgers:
        ledgers.create("cars", permissions_mode="STANDARD")
        _fill(ledgers.open("cars"))
        # a server that stopped mid-way left this job IN_PROGRESS in the registry file
        jobs = s3_exports.ExportJobs(ledgers)
        created = ledgers.describe("cars").creation_time.timestamp()
        job = s3_exports._checked_request(request, created)
        job.update(LedgerName="cars", ExportId="B" * 22, ExportCreationTime=time.time(),
                   Status="IN_PROGRESS")  # fmt: skip
        jobs._jobs[job["ExportId"]] = job
        jobs._save()
        jobs.close()
        registry = json.loads((tmp_path / "data" / s3_exports.EXPORTS_FILE).read_text())
        assert registry["exports"][0]["Status"] == "IN_PROGRESS"

        again = s3_exports.jobs_for(ledgers)  # loads the file: the job runs again
        try:
            assert again.wait("B" * 22, 60) == "COMPLETED"
            described = _call(ledgers, "GET", "/ledgers/cars/journal-s3-exports/" + "B" * 22)
            assert described.status == 200
            assert described.body["ExportDescription"]["Status"] == "COMPLETED"
            keys = _client(s3).list_objects_v2(Bucket=BUCKET, Prefix="durable/")["Contents"]
            assert any(k["Key"].endswith(".completed.manifest") for k in keys)

            missing = {**request["S3ExportConfiguration"], "Bucket": "no-such-bucket"}
            answer = _call(ledgers, "POST", "/ledgers/cars/journal-s3-exports",
                           {**request, "S3ExportConfiguration": missing})  # fmt: skip
            assert answer.status == 200
            export_id = answer.body["ExportId"]
            assert again.wait(export_id, 60) == "CANCELLED"
            saved = json.loads((tmp_path / "data" / s3_exports.EXPORTS_FILE).read_text())
            failed = [e for e in saved["exports"] if e["ExportId"] == export_id][0]
            assert "NoSuchBucket" in failed["strandError"]
            listed = _call(ledgers, "GET", "/ledgers/cars/journal-s3-exports").body
            assert "strandError" not in json.dumps(listed)  # QLDB's shape only
        finally:
            s3_exports.close_jobs(ledgers)
