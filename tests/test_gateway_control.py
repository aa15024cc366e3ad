"""The `qldb` control plane (cluster/gateway/control.py) over real embedded ledgers.

Two layers:
- `handle_control` called in-process: every route, QLDB's error codes and statuses, the
  model's input rules, paging, tags by ARN, the export routes answered, and proofs
  checked with `core.verification`; garbage in never raises;
- boto3's real `qldb` client (botocore 1.40.60, the last with QLDB's model) in a subprocess of
  the pinned environment (tests/qldb_venv.py), over HTTP: create/describe/list/update/delete,
  tags, deletion protection, errors parsed by botocore, and GetDigest/GetRevision/GetBlock
  whose proofs verify with pyqldb's own `QldbHash.dot`, as the DMV sample's verifier does.
  The HTTP layer is a minimal adapter here (no SigV4), so this tests control.py on its own.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from amazon.ion import simpleion

from cluster.gateway.control import ControlResponse, handle_control, ledger_arn
from cluster.ledgers import (
    MAX_TAGS_PER_LEDGER,
    EmbeddedLedgers,
    InvalidLedgerParameterError,
    check_tags,
)
from core import verification
from core.iontext import load_text
from core.ledger import Ledger
from tests.gateway_drivers import BOTO3_CONTROL
from tests.qldb_venv import qldb_python


def _call(
    ledgers: EmbeddedLedgers,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, Any] | None = None,
) -> ControlResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    response = handle_control(ledgers, method, path, query or {}, raw)
    json.dumps(response.body)  # always serialisable
    if response.status != 200:
        assert response.headers["x-amzn-ErrorType"] == response.body["Code"]
        assert response.body["Message"]
    return response


def _code(response: ControlResponse) -> tuple[int, str]:
    return response.status, response.body.get("Code", "")


def _ion(value: Any) -> str:
    return str(simpleion.dumps(value, binary=False, omit_version_marker=True))


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[EmbeddedLedgers]:
    with EmbeddedLedgers(tmp_path / "data") as the_set:
        yield the_set


def _fill(ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """A table with a few documents, one updated; (its id, its latest revision)."""
    ledger.execute_lambda(lambda tx: tx.create_table("Vehicle"))
    doc_id: str = ledger.execute_lambda(
        lambda tx: tx.insert("Vehicle", {"VIN": "1N4AL11D75C109151", "Year": 2011})
    )
    ledger.execute_lambda(
        lambda tx: [tx.insert("Vehicle", {"VIN": f"other-{i}"}) for i in range(3)]
    )
    ledger.execute_lambda(
        lambda tx: tx.update("Vehicle", doc_id, {"VIN": "1N4AL11D75C109151", "Year": 2012})
    )
    return doc_id, ledger.history("Vehicle", doc_id)[-1]


# ------------------------------------------------------------------ in-process
def test_ledger_lifecycle(ledgers: EmbeddedLedgers) -> None:
    created = _call(ledgers, "POST", "/ledgers", {"Name": "vr", "PermissionsMode": "STANDARD"})
    assert created.status == 200
    assert created.body["State"] == "CREATING"  # as QLDB answered; usable already
    assert created.body["Arn"] == ledger_arn("vr")
    assert created.body["DeletionProtection"] is True
    described = _call(ledgers, "GET", "/ledgers/vr").body
    assert described["State"] == "ACTIVE"
    assert described["EncryptionDescription"] == {
        "KmsKeyArn": "AWS_OWNED_KMS_KEY",
        "EncryptionStatus": "ENABLED",
    }
    assert _code(_call(ledgers, "POST", "/ledgers", {"Name": "vr", "PermissionsMode": "STANDARD"}))[
        1
    ] == ("ResourceAlreadyExistsException")

    updated = _call(
        ledgers, "PATCH", "/ledgers/vr", {"DeletionProtection": False, "KmsKey": "arn:k/1"}
    ).body
    assert updated["DeletionProtection"] is False
    assert updated["EncryptionDescription"]["KmsKeyArn"] == "arn:k/1"
    mode = _call(ledgers, "PATCH", "/ledgers/vr/permissions-mode", {"PermissionsMode": "ALLOW_ALL"})
    assert mode.body == {"Name": "vr", "Arn": ledger_arn("vr"), "PermissionsMode": "ALLOW_ALL"}
    assert _call(ledgers, "DELETE", "/ledgers/vr").status == 200
    assert _code(_call(ledgers, "GET", "/ledgers/vr")) == (404, "ResourceNotFoundException")
    assert _code(_call(ledgers, "DELETE", "/ledgers/vr")) == (404, "ResourceNotFoundException")
    assert _call(ledgers, "GET", "/ledgers").body == {"Ledgers": []}


def test_deletion_protection(ledgers: EmbeddedLedgers) -> None:
    _call(ledgers, "POST", "/ledgers", {"Name": "keep", "PermissionsMode": "STANDARD"})
    refused = _call(ledgers, "DELETE", "/ledgers/keep")
    assert _code(refused) == (412, "ResourcePreconditionNotMetException")
    assert refused.body["ResourceName"] == "keep"
    assert ledgers.names() == ["keep"]
    _call(ledgers, "PATCH", "/ledgers/keep", {"DeletionProtection": False})
    assert _call(ledgers, "DELETE", "/ledgers/keep").status == 200


def test_list_ledgers_pages(ledgers: EmbeddedLedgers) -> None:
    names = [f"l{i:02d}" for i in range(7)]
    for name in names:
        _call(ledgers, "POST", "/ledgers", {"Name": name, "PermissionsMode": "STANDARD"})
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        query: dict[str, Any] = {"max_results": "3"}
        if token is not None:
            query["next_token"] = token
        body = _call(ledgers, "GET", "/ledgers", query=query).body
        pages += 1
        seen += [item["Name"] for item in body["Ledgers"]]
        assert all(item["State"] == "ACTIVE" for item in body["Ledgers"])
        token = body.get("NextToken")
        if token is None:
            break
    assert (seen, pages) == (names, 3)
    assert len(_call(ledgers, "GET", "/ledgers").body["Ledgers"]) == 7
    for bad in ("0", "101", "x", "-1"):
        response = _call(ledgers, "GET", "/ledgers", query={"max_results": bad})
        assert _code(response) == (400, "InvalidParameterException"), bad
    too_long = base64.b64encode(b"a" * 800).decode()  # valid base64, 1068 chars
    for bad in ("abc", "!!!!", "a" * 1025, "YQ", too_long):
        response = _call(ledgers, "GET", "/ledgers", query={"next_token": bad})
        assert _code(response) == (400, "InvalidParameterException"), bad


def test_input_rules(ledgers: EmbeddedLedgers) -> None:
    bad_creates: list[dict[str, Any]] = [
        {"Name": "a--b", "PermissionsMode": "STANDARD"},
        {"Name": "123", "PermissionsMode": "STANDARD"},
        {"Name": "x" * 33, "PermissionsMode": "STANDARD"},
        {"Name": "ok", "PermissionsMode": "OPEN"},
        {"Name": "ok"},
        {"PermissionsMode": "STANDARD"},
        {"Name": "ok", "PermissionsMode": "STANDARD", "DeletionProtection": "yes"},
        {"Name": "ok", "PermissionsMode": "STANDARD", "KmsKey": "k" * 1601},
        {"Name": "ok", "PermissionsMode": "STANDARD", "Tags": {"": "v"}},
        {"Name": "ok", "PermissionsMode": "STANDARD", "Tags": {"k" * 129: "v"}},
        {"Name": "ok", "PermissionsMode": "STANDARD", "Tags": {"k": "v" * 257}},
        {"Name": "ok", "PermissionsMode": "STANDARD", "Tags": {"k": 1}},
        {"Name": "ok", "PermissionsMode": "STANDARD", "Tags": ["k"]},
        {
            "Name": "ok",
            "PermissionsMode": "STANDARD",
            "Tags": {f"k{i}": "v" for i in range(201)},
        },
    ]
    for body in bad_creates:
        assert _code(_call(ledgers, "POST", "/ledgers", body)) == (
            400,
            "InvalidParameterException",
        ), body
    assert ledgers.names() == []
    response = handle_control(ledgers, "POST", "/ledgers", {}, b"{not json")
    assert response.status == 400
    assert _code(_call(ledgers, "GET", "/ledgers/a--b")) == (400, "InvalidParameterException")
    assert _code(_call(ledgers, "GET", "/ledgers/nope")) == (404, "ResourceNotFoundException")


def test_tags_per_request_rule() -> None:
    # the shared check (any LedgerSet uses it) refuses more than the model's 200 tags
    check_tags({f"k{i}": "v" for i in range(200)})
    with pytest.raises(InvalidLedgerParameterError):
        check_tags({f"k{i}": "v" for i in range(201)})


def test_ledger_limit(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path, max_ledgers=1) as ledgers:
        _call(ledgers, "POST", "/ledgers", {"Name": "one", "PermissionsMode": "STANDARD"})
        response = _call(
            ledgers, "POST", "/ledgers", {"Name": "two", "PermissionsMode": "STANDARD"}
        )
        assert _code(response) == (400, "LimitExceededException")


def test_tags_by_arn(ledgers: EmbeddedLedgers) -> None:
    _call(
        ledgers,
        "POST",
        "/ledgers",
        {"Name": "t", "PermissionsMode": "STANDARD", "Tags": {"team": "a", "env": "dev"}},
    )
    arn = ledger_arn("t")
    quoted = "/tags/" + arn.replace(":", "%3A").replace("/", "%2F")
    assert _call(ledgers, "GET", quoted).body == {"Tags": {"team": "a", "env": "dev"}}
    other_region = "/tags/arn:aws:qldb:eu-west-1:123456789012:ledger/t"
    assert _call(ledgers, "POST", other_region, {"Tags": {"team": "b", "x": ""}}).status == 200
    assert _call(ledgers, "GET", quoted).body["Tags"] == {"team": "b", "env": "dev", "x": ""}
    # a repeated query key: a list, or a multidict with getall
    assert _call(ledgers, "DELETE", quoted, query={"tagKeys": ["env", "x"]}).status == 200
    assert _call(ledgers, "GET", quoted).body["Tags"] == {"team": "b"}

    class MultiDict(dict[str, str]):
        def getall(self, key: str, default: list[str]) -> list[str]:
            return ["team"] if key == "tagKeys" else default

    response = handle_control(ledgers, "DELETE", quoted, MultiDict(tagKeys="team"), b"")
    assert response.status == 200
    assert _call(ledgers, "GET", quoted).body["Tags"] == {}

    too_many = {f"k{i}": "v" for i in range(MAX_TAGS_PER_LEDGER + 1)}
    assert _code(_call(ledgers, "POST", quoted, {"Tags": too_many}))[0] == 400
    assert _code(_call(ledgers, "POST", quoted, {"Tags": {"aws:x": "v"}}))[0] == 400
    assert _code(_call(ledgers, "DELETE", quoted)) == (400, "InvalidParameterException")
    missing = "/tags/" + ledger_arn("nope")
    assert _code(_call(ledgers, "GET", missing)) == (404, "ResourceNotFoundException")
    for bad in ("arn:aws:s3:::bucket/thing", "short", "arn:aws:qldb:r:1:stream/t/abc"):
        assert _code(_call(ledgers, "GET", "/tags/" + bad)) == (400, "InvalidParameterException")


def test_export_routes_served_and_unknown_routes_refused(ledgers: EmbeddedLedgers) -> None:
    _call(ledgers, "POST", "/ledgers", {"Name": "s", "PermissionsMode": "STANDARD"})
    routes = [
        ("POST", "/ledgers/s/journal-s3-exports", (400, "InvalidParameterException")),
        ("GET", "/ledgers/s/journal-s3-exports", (200, "")),
        ("GET", "/ledgers/s/journal-s3-exports/" + "a" * 22, (404, "ResourceNotFoundException")),
        ("GET", "/ledgers/nope/journal-s3-exports", (404, "ResourceNotFoundException")),
        ("GET", "/journal-s3-exports", (200, "")),
    ]  # exports run in tests/test_gateway_export.py, streams in tests/test_streams.py
    for method, path, expected in routes:
        assert _code(_call(ledgers, method, path, {})) == expected, path
    for method, path in [("PUT", "/ledgers"), ("GET", "/nothing"), ("POST", "/ledgers/s/x")]:
        assert _code(_call(ledgers, method, path)) == (404, "UnknownOperationException")


def test_digest_block_revision_proofs(ledgers: EmbeddedLedgers) -> None:
    _call(ledgers, "POST", "/ledgers", {"Name": "vr", "PermissionsMode": "STANDARD"})
    doc_id, revision = _fill(ledgers.open("vr"))
    address = {"IonText": _ion(dict(revision["blockAddress"]))}

    digest = _call(ledgers, "POST", "/ledgers/vr/digest", {}).body
    digest_bytes = base64.b64decode(digest["Digest"])
    tip = digest["DigestTipAddress"]
    assert load_text(tip["IonText"])["sequenceNo"] == 4

    got = _call(
        ledgers,
        "POST",
        "/ledgers/vr/revision",
        {"BlockAddress": address, "DocumentId": doc_id, "DigestTipAddress": tip},
    ).body
    served = load_text(got["Revision"]["IonText"])
    proof = [bytes(h) for h in load_text(got["Proof"]["IonText"])]
    assert served["data"] == {"VIN": "1N4AL11D75C109151", "Year": 2012}
    assert verification.verify_revision(served, proof, digest_bytes)

    block = _call(
        ledgers, "POST", "/ledgers/vr/block", {"BlockAddress": address, "DigestTipAddress": tip}
    ).body
    served_block = load_text(block["Block"]["IonText"])
    block_proof = [bytes(h) for h in load_text(block["Proof"]["IonText"])]
    assert verification.verify_block(served_block, block_proof, digest_bytes)

    # without a tip: no proof, as QLDB
    plain = _call(ledgers, "POST", "/ledgers/vr/block", {"BlockAddress": address}).body
    assert set(plain) == {"Block"}

    bad_requests: list[tuple[str, dict[str, Any]]] = [
        ("block", {}),
        ("block", {"BlockAddress": {"IonText": "{strandId:"}}),
        ("block", {"BlockAddress": {"IonText": "[1]"}}),
        ("block", {"BlockAddress": {"IonText": '{strandId:"a",sequenceNo:-1}'}}),
        ("block", {"BlockAddress": {"IonText": '{strandId:"a",sequenceNo:1.5}'}}),
        ("block", {"BlockAddress": {"IonText": '{strandId:"a",sequenceNo:1,x:1}'}}),
        ("block", {"BlockAddress": {"IonText": '{strandId:"a",sequenceNo:1}'}}),
        ("block", {"BlockAddress": {"IonText": _ion({**revision["blockAddress"]}) + " 1"}}),
        ("block", {"BlockAddress": "text"}),
        ("block", {"BlockAddress": {"IonText": "x" * 1_048_577}}),  # the model's IonText max
        # a valid address padded past the size an address can need: refused unparsed
        ("block", {"BlockAddress": {"IonText": address["IonText"] + " " * 5000}}),
        ("revision", {"BlockAddress": address}),
        ("revision", {"BlockAddress": address, "DocumentId": "short"}),
        ("revision", {"BlockAddress": address, "DocumentId": "A" * 22}),
        (
            "block",
            {"BlockAddress": {"IonText": _ion({**revision["blockAddress"], "sequenceNo": 99})}},
        ),
    ]
    for route, body in bad_requests:
        response = _call(ledgers, "POST", f"/ledgers/vr/{route}", body)
        assert _code(response) == (400, "InvalidParameterException"), body
    bad_id = {"BlockAddress": address, "DocumentId": "not/an/id/of/22/chars!"}
    response = _call(ledgers, "POST", "/ledgers/vr/revision", bad_id)
    assert response.body["ParameterName"] == "DocumentId"  # refused by the model's rule
    assert _code(_call(ledgers, "POST", "/ledgers/nope/digest", {}))[0] == 404


def test_never_raises(ledgers: EmbeddedLedgers) -> None:
    _call(ledgers, "POST", "/ledgers", {"Name": "f", "PermissionsMode": "STANDARD"})
    rng = random.Random(7)
    methods = ["GET", "POST", "PATCH", "DELETE", "PUT", "get", ""]
    paths = [
        "/",
        "",
        "/ledgers",
        "/ledgers/f",
        "/ledgers/f/digest",
        "/ledgers/f/block",
        "/ledgers/f/revision",
        "/ledgers/f/permissions-mode",
        "/tags/" + ledger_arn("f"),
        "/tags/",
        "/ledgers/%ZZ",
        "/ledgers/f/../f",
        "//ledgers//f",
        "/ledgers/f?x=1",
    ]
    bodies = [
        b"",
        b"null",
        b"[]",
        b'"s"',
        b"\xff\xfe",
        b'{"Name": 5}',
        b'{"Tags": {"a": null}}',
        b'{"BlockAddress": {"IonText": 5}}',
        b'{"PermissionsMode": ["STANDARD"]}',
        b'{"DeletionProtection": null, "KmsKey": 7}',
    ]
    queries: list[dict[str, Any]] = [{}, {"max_results": "1e3"}, {"tagKeys": [""]}]
    for _ in range(400):
        response = handle_control(
            ledgers, rng.choice(methods), rng.choice(paths), rng.choice(queries), rng.choice(bodies)
        )
        assert response.status in (200, 400, 404, 409, 412, 501), response
        json.dumps(response.body)
    assert ledgers.names() == ["f"]  # deletion protection held throughout


def test_a_failing_ledger_set_is_an_internal_failure() -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("disk on fire")

            return fail

    for method, path in [("GET", "/ledgers"), ("GET", "/ledgers/x"), ("POST", "/ledgers/x/digest")]:
        response = handle_control(Broken(), method, path, {}, b"")  # type: ignore[arg-type]
        assert _code(response) == (500, "InternalFailure")
        assert response.headers == {"x-amzn-ErrorType": "InternalFailure"}


# ------------------------------------------------------------------ boto3 over HTTP
class _Adapter(BaseHTTPRequestHandler):
    """A minimal HTTP front for handle_control (no SigV4: control.py alone is under test)."""

    ledgers: EmbeddedLedgers

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(url.query).items()}
        response = handle_control(self.ledgers, self.command, url.path, query, body)
        data = json.dumps(response.body).encode()
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


CLIENT_SCRIPT = (
    BOTO3_CONTROL
    + r"""
from amazon.ion.simpleion import loads
from pyqldb.util.qldb_hash import QldbHash

doc_id, address_text = sys.argv[2:4]
out = {}

def error(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as exc:
        return [exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"],
                exc.response["Error"]["Message"]]
    return None

created = qldb.create_ledger(Name="made-by-boto3", PermissionsMode="ALLOW_ALL",
                             DeletionProtection=True, Tags={"team": "audit"})
out["create_state"] = created["State"]
out["describe"] = qldb.describe_ledger(Name="made-by-boto3")["State"]
out["exists"] = error(qldb.create_ledger, Name="made-by-boto3", PermissionsMode="STANDARD")
out["missing"] = error(qldb.describe_ledger, Name="nope")
ledgers, pages = all_pages(qldb.list_ledgers, "Ledgers", MaxResults=1)
out["names"] = [[item["Name"] for item in ledgers], pages]
arn = created["Arn"]
qldb.tag_resource(ResourceArn=arn, Tags={"env": "test", "gone": "soon"})
qldb.untag_resource(ResourceArn=arn, TagKeys=["gone", "team"])
out["tags"] = qldb.list_tags_for_resource(ResourceArn=arn)["Tags"]
out["protected"] = error(qldb.delete_ledger, Name="made-by-boto3")
out["update"] = qldb.update_ledger(Name="made-by-boto3", DeletionProtection=False)[
    "DeletionProtection"]
out["mode"] = qldb.update_ledger_permissions_mode(Name="made-by-boto3",
                                                  PermissionsMode="STANDARD")["PermissionsMode"]
qldb.delete_ledger(Name="made-by-boto3")
out["after_delete"] = error(qldb.describe_ledger, Name="made-by-boto3")
out["export"] = qldb.list_journal_s3_exports_for_ledger(Name="vr")["JournalS3Exports"]

# The auditor's path (DMV sample verifier.py): digest, revision with proof, block with proof.
def verify(leaf, proof_text, digest):
    current = QldbHash(leaf)
    for node in loads(proof_text):
        current = current.dot(QldbHash(node))
    return current.get_qldb_hash() == digest

digest = qldb.get_digest(Name="vr")
digest_bytes = digest["Digest"]
tip = digest["DigestTipAddress"]
got = qldb.get_revision(Name="vr", BlockAddress={"IonText": address_text}, DocumentId=doc_id,
                        DigestTipAddress=tip)
revision = loads(got["Revision"]["IonText"])
revision_hash = bytes(revision["hash"])
recomputed = QldbHash.to_qldb_hash(revision["metadata"]).dot(
    QldbHash.to_qldb_hash(revision["data"])).get_qldb_hash()
out["revision_hash_ok"] = recomputed == revision_hash
out["revision_proof_ok"] = verify(revision_hash, got["Proof"]["IonText"], digest_bytes)
tampered = bytearray(revision_hash); tampered[0] ^= 1
out["tampered_ok"] = verify(bytes(tampered), got["Proof"]["IonText"], digest_bytes)
out["revision_data"] = {"VIN": str(revision["data"]["VIN"]), "Year": int(revision["data"]["Year"])}

block_answer = qldb.get_block(Name="vr", BlockAddress={"IonText": address_text},
                              DigestTipAddress=tip)
block = loads(block_answer["Block"]["IonText"])
block_hash = bytes(block["blockHash"])
out["block_hash_ok"] = QldbHash(bytes(block["entriesHash"])).dot(
    QldbHash(bytes(block["previousBlockHash"]))).get_qldb_hash() == block_hash
out["block_proof_ok"] = verify(block_hash, block_answer["Proof"]["IonText"], digest_bytes)
out["bad_address"] = error(qldb.get_block, Name="vr",
                           BlockAddress={"IonText": "{strandId:\"x\",sequenceNo:0}"})
print(json.dumps(out))
"""
)


def _run_client(endpoint: str, doc_id: str, revision: dict[str, Any]) -> dict[str, Any]:
    run = subprocess.run(
        [str(qldb_python()), "-c", CLIENT_SCRIPT, endpoint, doc_id, _ion(revision["blockAddress"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, Any] = json.loads(run.stdout)
    return out


def test_boto3_qldb_client(tmp_path: Path) -> None:
    """boto3 against control.py behind a bare HTTP adapter."""
    qldb_python()  # built before the server starts
    with EmbeddedLedgers(tmp_path / "data") as ledgers:
        ledgers.create("vr", permissions_mode="STANDARD")
        doc_id, revision = _fill(ledgers.open("vr"))
        handler = type("Handler", (_Adapter,), {"ledgers": ledgers})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            out = _run_client(f"http://127.0.0.1:{server.server_address[1]}", doc_id, revision)
        finally:
            server.shutdown()
            server.server_close()
    _check_client_output(out)


@pytest.mark.skipif(
    importlib.util.find_spec("cluster.gateway.serve") is None, reason="no strand serve yet"
)
def test_boto3_qldb_client_through_strand_serve(tmp_path: Path) -> None:
    """boto3 against the real server: `strand serve --data DIR`, SigV4 and all."""
    qldb_python()
    data = tmp_path / "data"
    with EmbeddedLedgers(data) as ledgers:  # written in-process, closed before the server opens
        ledgers.create("vr", permissions_mode="STANDARD")
        doc_id, revision = _fill(ledgers.open("vr"))
    strand = Path(sys.executable).with_name("strand")
    server = subprocess.Popen(
        [str(strand), "serve", "--data", str(data), "--port", "0"]
        + ["--access-key", "AKIDEXAMPLE", "--secret-key", "secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = _wait_for_endpoint(server)
        out = _run_client(endpoint, doc_id, revision)
    finally:
        _stop_server(server)
    _check_client_output(out)


def _stop_server(server: subprocess.Popen[str]) -> None:
    """SIGTERM to `strand serve`, then SIGKILL if it has not stopped 20 s later."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _wait_for_endpoint(server: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    """The URL `strand serve` prints once it listens."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.stdout], [], [], 0.2)
        if ready:
            line = server.stdout.readline()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return match.group(1)
            if not line and server.poll() is not None:
                break
    stderr = server.stderr.read() if server.stderr and server.poll() is not None else ""
    raise AssertionError(f"strand serve did not start: {stderr[-2000:]}")


def _check_client_output(out: dict[str, Any]) -> None:
    assert out["create_state"] == "CREATING"
    assert out["describe"] == "ACTIVE"
    assert out["exists"][:2] == [409, "ResourceAlreadyExistsException"]
    assert out["missing"][:2] == [404, "ResourceNotFoundException"]
    assert out["names"] == [["made-by-boto3", "vr"], 2]
    assert out["tags"] == {"env": "test"}
    assert out["protected"][:2] == [412, "ResourcePreconditionNotMetException"]
    assert out["update"] is False
    assert out["mode"] == "STANDARD"
    assert out["after_delete"][:2] == [404, "ResourceNotFoundException"]
    assert out["export"] == []  # served (tests/test_gateway_export.py)
    assert out["revision_hash_ok"] is True
    assert out["revision_proof_ok"] is True
    assert out["tampered_ok"] is False
    assert out["revision_data"] == {"VIN": "1N4AL11D75C109151", "Year": 2012}
    assert out["block_hash_ok"] is True
    assert out["block_proof_ok"] is True
    assert out["bad_address"][:2] == [400, "InvalidParameterException"]
