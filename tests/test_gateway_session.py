"""The HTTP gateway's QLDB Session protocol, driven by the real pyqldb 3.2.4 driver.

Gateways run in this process (cluster.gateway.server.GatewayThread) in front of embedded
ledgers; driver programs (tests/gateway_drivers.py) run in pyqldb's own virtual environment
(tests/qldb_venv.py) as subprocesses against them. Hostile requests are sent raw, signed
with botocore's signer. One test starts `strand serve` itself (TLS, SIGTERM).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cluster import ledgers as ledgers_module
from cluster.gateway.server import SESSION_TARGET, GatewayConfig, GatewayThread
from cluster.gateway.session import SessionConfig
from cluster.ledgers import LedgerInfo, LedgerNotFoundError
from core.ionhash import dot, ion_hash
from core.ledger import Ledger
from core.qldb_session import (
    OpenTransaction,
    QldbSessionError,
    Session,
    SessionLimits,
    SessionTable,
    paginate,
)
from tests import gateway_drivers
from tests.qldb_venv import qldb_python

ACCESS_KEY, SECRET_KEY = "AKIDSTRAND", "strand-secret"
KEYS = {ACCESS_KEY: SECRET_KEY}
ROOT = Path(__file__).resolve().parent.parent
# A valid value with a few bytes changed, on which amazon-ion 0.15's C extension never returns
CEXT_HANG = bytes.fromhex(
    "e00100eaeb8183d887b6816181622374de9e8abe5121014840040000000000008178d28b0f8c69c00fe4"
    "8181808056c6"
)


class MemoryLedgers:
    """A LedgerSet of in-memory ledgers for tests; `open_delay_s` makes opening slow."""

    def __init__(self, names: list[str], open_delay_s: float = 0.0) -> None:
        self._ledgers = {name: Ledger.in_memory() for name in names}
        self._delay_s = open_delay_s

    def describe(self, name: str) -> LedgerInfo:
        if name not in self._ledgers:
            raise LedgerNotFoundError(f"no ledger {name}")
        return LedgerInfo(name, "ACTIVE", datetime.datetime.now(datetime.UTC))

    def open(self, name: str) -> Ledger:
        time.sleep(self._delay_s)
        self.describe(name)
        return self._ledgers[name]

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.close()


def _ledger_set(root: Path, names: list[str]) -> Any:
    """Embedded ledgers under `root` (cluster.ledgers.EmbeddedLedgers) when it exists."""
    embedded = getattr(ledgers_module, "EmbeddedLedgers", None)
    if embedded is None:
        return MemoryLedgers(names)
    ledger_set = embedded(root)
    for name in names:
        ledger_set.create(name, permissions_mode="STANDARD", deletion_protection=False)
    return ledger_set


def _gateway(ledger_set: Any, limits: SessionLimits, max_inflight: int = 64) -> GatewayThread:
    config = GatewayConfig(
        keys=KEYS, session=SessionConfig(limits=limits, max_inflight=max_inflight)
    )
    return GatewayThread(ledger_set, config).start()


@pytest.fixture(scope="module")
def qpy() -> str:
    return str(qldb_python())


@pytest.fixture(scope="module")
def main_gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("gw-main")
    gw = _gateway(_ledger_set(root, ["vehicle-registration", "counters"]), SessionLimits())
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def short_gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("gw-short")
    limits = SessionLimits(idle_timeout_ms=2000, max_lifetime_ms=0, transaction_timeout_ms=1500)
    gw = _gateway(_ledger_set(root, ["short"]), limits)
    yield gw
    gw.stop()


def _drive(qpy: str, script: str, *args: str, timeout_s: float = 120) -> dict[str, Any]:
    proc = subprocess.run(
        [qpy, "-c", script, *args], capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise AssertionError(f"driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------- through pyqldb
def test_vehicle_registration_pages_history_redaction_and_ion(qpy: str, main_gw: Any) -> None:
    out = _drive(qpy, gateway_drivers.FUNCTIONAL, main_gw.url, "vehicle-registration")
    assert out["tables"] == ["DriversLicense", "Person", "Vehicle", "VehicleRegistration"]
    assert out["lewis_vehicles"] == ["1N4AL11D75C109151"]
    assert out["transfer_rows"] == 1
    assert out["logan_vehicles"] == ["1N4AL11D75C109151", "KM8SRDHF6EU074761"]
    assert out["deleted"] == 1
    assert out["licenses_left"] == ["LEWISR261LL"]
    assert out["history_versions"] == [0, 1, 2]
    assert out["history_secondary"] == [0, 0, 1]
    assert out["license_history_has_data"] == [True, False]
    assert out["committed_keys"] == ["blockAddress", "data", "hash", "metadata"]
    assert out["committed_version"] == 2
    assert out["redacted"] == [False, True, True]
    assert out["redacted_hash_kept"]
    assert out["interop_equal"], (out.get("interop_sent"), out.get("interop_got"))
    assert out["interop_param_equal"]
    assert out["bulk_count"] == 480
    assert out["bulk_sum"] == sum(range(480))
    assert out["read_ahead_count"] == 480
    assert out["big_ok"]
    assert [n for n, _ in out["bulk_pages"]] == [200, 200, 80]
    big_pages = out["big_pages"]
    assert sum(n for n, _ in big_pages) == 12
    assert len(big_pages) >= 2
    assert all(b64_bytes * 3 / 4 <= 1 << 20 for _, b64_bytes in big_pages)
    assert out["syntax_error"] == ["BadRequestException", 400]
    assert out["syntax_error_calls"] == 1
    assert out["commits"] >= 40  # every commit's digest accepted by the driver


def test_occ_conflicts_retried_and_concurrent_drivers(qpy: str, main_gw: Any) -> None:
    out = _drive(qpy, gateway_drivers.CONTENTION, main_gw.url, "counters", "4", "6")
    assert out["forced_attempts"] == 2  # the forced conflict was retried once
    assert out["errors"] == []
    assert out["final"] == out["expected"]  # every increment once, none lost or doubled
    assert out["occ"]
    assert set(out["occ"]) == {"OccConflictException"}


def test_transaction_and_session_expiry_and_protocol_errors(qpy: str, short_gw: Any) -> None:
    out = _drive(qpy, gateway_drivers.EXPIRY_AND_ERRORS, short_gw.url, "short")
    code, status, message = out["expired"]
    assert (code, status) == ("InvalidSessionException", 400)
    assert message.startswith("Transaction ")
    assert "has expired" in message
    assert out["expired_calls"] == 1  # pyqldb does not retry an expired transaction
    assert out["late_rows"] == 0
    assert out["after_idle"] == 1  # the driver replaced its expired sessions by itself
    assert out["idle_session"] == ["InvalidSessionException", 400]
    assert out["wrong_digest"] == ["BadRequestException", 400]
    assert out["wrong_digest_rows"] == 0  # nothing of the refused commit
    assert out["bad_page_token"] == ["BadRequestException", 400]
    assert out["other_txid"] == ["BadRequestException", 400]
    assert out["bad_ion"] == ["BadRequestException", 400]
    assert out["no_session"] == ["InvalidSessionException", 400]
    assert out["no_ledger"] == ["BadRequestException", 400]
    assert out["wrong_secret"] == ["InvalidSignatureException", 403]
    assert out["unknown_key"] == ["UnrecognizedClientException", 403]


# --------------------------------------------------------------------- raw requests
def _send(
    url: str,
    body: bytes,
    *,
    target: str | None = "QLDBSession.SendCommand",
    sign: bool = True,
    secret: str = SECRET_KEY,
    tamper: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
) -> tuple[int, dict[str, Any]]:
    """One request, signed with botocore's signer; (status, JSON body)."""
    all_headers = {"Content-Type": "application/x-amz-json-1.0", **(headers or {})}
    if target is not None:
        all_headers["X-Amz-Target"] = target
    request = AWSRequest(method=method, url=url + path, data=body, headers=all_headers)
    if sign:
        SigV4Auth(Credentials(ACCESS_KEY, secret), "qldb", "ap-south-1").add_auth(request)
    prepared = request.prepare()
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            method,
            path,
            body=tamper if tamper is not None else body,
            headers=dict(prepared.headers),
        )
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else {}


def _command(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _send(url, json.dumps(payload).encode())


def test_sigv4_refusals(main_gw: Any) -> None:
    body = json.dumps({"StartSession": {"LedgerName": "vehicle-registration"}}).encode()
    status, reply = _send(main_gw.url, body)
    assert status == 200
    assert len(reply["StartSession"]["SessionToken"]) >= 4
    assert _send(main_gw.url, body, sign=False) == (
        403,
        {
            "__type": "MissingAuthenticationTokenException",
            "Message": "Missing Authentication Token",
        },
    )
    status, reply = _send(main_gw.url, body, secret="wrong")
    assert (status, reply["__type"]) == (403, "InvalidSignatureException")
    tampered = body.replace(b"vehicle-registration", b"vehicle-registratioN")
    status, reply = _send(main_gw.url, body, tamper=tampered)
    assert (status, reply["__type"]) == (403, "InvalidSignatureException")
    stale = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)).strftime(
        "%Y%m%dT%H%M%SZ"
    )
    request = AWSRequest(
        method="POST",
        url=main_gw.url + "/",
        data=body,
        headers={"X-Amz-Target": "QLDBSession.SendCommand"},
    )
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "qldb", "us-east-1")
    request.context["timestamp"] = stale
    request.headers["X-Amz-Date"] = stale
    request.headers["host"] = main_gw.url.removeprefix("http://")
    signature = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    headers = dict(request.headers)
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{stale[:8]}/us-east-1/qldb/aws4_request, "
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
        f"Signature={signature}"
    )
    status, reply = _send(main_gw.url, body, sign=False, headers=headers)
    assert (status, reply["__type"]) == (403, "InvalidSignatureException")
    assert "expired" in reply["Message"]
    # a claimed payload hash must be the body's: else a signature would not cover the body
    claimed = {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    status, reply = _send(main_gw.url, body, headers=claimed, tamper=tampered)
    assert (status, reply["__type"]) == (403, "IncompleteSignatureException")
    assert _send(main_gw.url, body, headers=claimed)[0] == 200
    # the operation header must be signed (a signature made without it is refused)
    request = AWSRequest(method="POST", url=main_gw.url + "/", data=body)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "qldb", "us-east-1").add_auth(request)
    unsigned_target = {**dict(request.prepare().headers), "X-Amz-Target": SESSION_TARGET}
    status, reply = _send(main_gw.url, body, sign=False, headers=unsigned_target)
    assert (status, reply["__type"]) == (403, "IncompleteSignatureException")
    # the control plane is signed too
    status, reply = _send(main_gw.url, b"", target=None, sign=False, method="GET", path="/ledgers")
    assert (status, reply["__type"]) == (403, "MissingAuthenticationTokenException")


def test_hostile_commands_are_refused_quickly_and_change_nothing(main_gw: Any) -> None:
    url = main_gw.url
    started = time.monotonic()
    status, reply = _send(url, b"{not json")
    assert (status, reply["__type"]) == (400, "SerializationException")
    status, reply = _send(url, b"[" * 100_000 + b"]" * 100_000)
    assert (status, reply["__type"]) == (400, "SerializationException")
    assert _command(url, {"Nope": {}})[1]["__type"] == "BadRequestException"
    assert (
        _command(url, {"StartSession": {"LedgerName": "vehicle-registration"}, "EndSession": {}})[
            1
        ]["__type"]
        == "BadRequestException"
    )
    assert _command(url, {"StartSession": "x"})[1]["__type"] == "BadRequestException"
    status, reply = _send(url, b"{}", target="QLDBSession.DropEverything")
    assert (status, reply["__type"]) == (400, "UnknownOperationException")
    _, reply = _command(url, {"StartSession": {"LedgerName": "vehicle-registration"}})
    token = reply["StartSession"]["SessionToken"]
    _, reply = _command(url, {"SessionToken": token, "StartTransaction": {}})
    txid = reply["StartTransaction"]["TransactionId"]
    assert len(txid) == 22
    assert txid.isalnum()

    def execute(statement: str, *params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _command(
            url,
            {
                "SessionToken": token,
                "ExecuteStatement": {
                    "TransactionId": txid,
                    "Statement": statement,
                    "Parameters": list(params),
                },
            },
        )

    for parameter in (
        {"IonBinary": "%%% not base64"},
        {"IonBinary": base64.b64encode(b"\xe0\x01\x00\xea" + b"\xde\x8f").decode()},
        {"IonBinary": base64.b64encode(b"\xe0\x01\x00\xea" + b"\xb1" * 50_000).decode()},
        {"IonBinary": base64.b64encode(b"\x00" * (128 * 1024 + 1)).decode()},
        {"IonBinary": base64.b64encode(CEXT_HANG).decode()},  # hangs amazon-ion's C reader
        {"IonText": "{unclosed: "},
        {"IonText": "[" * 5000},
        {"Other": "x"},
    ):
        status, reply = execute("SELECT * FROM Person WHERE a = ?", parameter)
        assert (status, reply["__type"]) == (400, "BadRequestException"), parameter
    status, reply = execute("x" * 100_001)
    assert (status, reply["__type"]) == (400, "BadRequestException")
    status, reply = execute("INSERT INTO NoSuchTable ?", {"IonText": "{a: 1}"})
    assert (status, reply["__type"]) == (400, "BadRequestException")
    # the transaction is still usable after every refusal, and commits nothing extra
    status, reply = execute("SELECT VALUE ? FROM << 1 >>", {"IonText": "5.00"})
    assert status == 200
    assert len(reply["ExecuteStatement"]["FirstPage"]["Values"]) == 1
    _command(url, {"SessionToken": token, "EndSession": {}})
    # a body over the limit is refused from its Content-Length, before it is read
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("X-Amz-Target", "QLDBSession.SendCommand")
    conn.putheader("Content-Length", str(500 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"{" * 1024)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["__type"] == "RequestEntityTooLargeException"
    conn.close()
    # ... and one sent in chunks is cut off once it passes the limit
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b" " * (1 << 20) for _ in range(8))
    conn.request(
        "POST",
        "/",
        body=chunks,
        headers={"X-Amz-Target": "QLDBSession.SendCommand"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    assert time.monotonic() - started < 20


def test_overlapping_commands_of_one_session_are_serialised(main_gw: Any) -> None:
    """A commit sent while the session's slow statement runs waits for it (pyqldb's
    read-ahead thread overlaps commands on one session the same way)."""
    url = main_gw.url
    _, reply = _command(url, {"StartSession": {"LedgerName": "vehicle-registration"}})
    token = reply["StartSession"]["SessionToken"]
    _, reply = _command(url, {"SessionToken": token, "StartTransaction": {}})
    txid = reply["StartTransaction"]["TransactionId"]
    bag = "<<" + ",".join(str(i) for i in range(250)) + ">>"
    statement = f"SELECT COUNT(*) AS n FROM {bag} AS a, {bag} AS b"
    digest = dot(ion_hash(txid), ion_hash(statement))
    answers: list[tuple[int, dict[str, Any]]] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            _command(
                url,
                {
                    "SessionToken": token,
                    "ExecuteStatement": {
                        "TransactionId": txid,
                        "Statement": statement,
                        "Parameters": [],
                    },
                },
            )
        )
    )
    slow.start()
    time.sleep(0.3)  # the statement is running now
    status, reply = _command(
        url,
        {
            "SessionToken": token,
            "CommitTransaction": {
                "TransactionId": txid,
                "CommitDigest": base64.b64encode(digest).decode(),
            },
        },
    )
    slow.join()
    assert answers[0][0] == 200
    assert (status, base64.b64decode(reply["CommitTransaction"]["CommitDigest"])) == (200, digest)
    _command(url, {"SessionToken": token, "EndSession": {}})


def test_session_and_concurrency_caps() -> None:
    limits = SessionLimits(max_sessions=2)
    gw = _gateway(MemoryLedgers(["capped"], open_delay_s=0.5), limits, max_inflight=1)
    try:
        start = {"StartSession": {"LedgerName": "capped"}}
        results: list[tuple[int, dict[str, Any]]] = []
        threads = [
            threading.Thread(target=lambda: results.append(_command(gw.url, start)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 503]  # one ledger call at a time: the other is told to retry
        assert [r["__type"] for s, r in results if s == 503] == ["CapacityExceededException"]
        assert _command(gw.url, start)[0] == 200
        status, reply = _command(gw.url, start)
        assert (status, reply["__type"]) == (400, "LimitExceededException")
    finally:
        gw.stop()


# --------------------------------------------------------------------- strand serve
def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(
    not hasattr(ledgers_module, "EmbeddedLedgers"), reason="needs cluster.ledgers.EmbeddedLedgers"
)
def test_strand_serve_tls_and_sigterm(qpy: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ledger_set = ledgers_module.EmbeddedLedgers(data)
    ledger_set.create("served", permissions_mode="STANDARD", deletion_protection=False)
    ledger_set.close()
    cert, key = _self_signed(tmp_path)
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys]\n{ACCESS_KEY} = "{SECRET_KEY}"\n')
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cluster.cli",
            "serve",
            "--data",
            str(data),
            "--port",
            "0",
            "--keys",
            str(keys),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--stop-grace-s",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("strand serve: listening on https://127.0.0.1:"), line
        url = line.split()[-1]
        driver = subprocess.Popen(
            [qpy, "-c", gateway_drivers.TLS, url, "served", str(cert)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert driver.stdout is not None
        assert driver.stdin is not None
        assert driver.stdout.readline().strip() == "OPEN", driver.stderr
        server.send_signal(signal.SIGTERM)  # a transaction is open: it is aborted
        assert server.wait(timeout=30) == 0
        driver.stdin.write("\n")
        driver.stdin.flush()
        out, err = driver.communicate(timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        assert result["rows"] == 1
        assert result["ledgers"] == ["made-by-api", "served"]
        assert result["digest_bytes"] == 32
        assert result["tags"] == {"team": "dmv"}
        assert result["held"] != "committed"
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ledger_set = ledgers_module.EmbeddedLedgers(data)
    try:
        rows = ledger_set.open("served").execute_statement("SELECT * FROM T")
        assert [r["a"] for r in rows] == [1]  # the open transaction left nothing
    finally:
        ledger_set.close()


def test_strand_serve_usage_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "serve", "--data", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "access-key" in proc.stderr


# --------------------------------------------------------------------- pure rules
def test_paginate_by_count_and_bytes() -> None:
    assert paginate([], 10, 2) == [[]]
    assert paginate([b"a"] * 5, 100, 2) == [[b"a", b"a"], [b"a", b"a"], [b"a"]]
    assert paginate([b"x" * 6, b"x" * 6, b"x" * 20, b"y"], 10, 5) == [
        [b"x" * 6],
        [b"x" * 6],
        [b"x" * 20],
        [b"y"],
    ]


def test_session_table_expiry_and_orphans() -> None:
    table = SessionTable(
        SessionLimits(
            idle_timeout_ms=100, max_lifetime_ms=1000, transaction_timeout_ms=50, max_sessions=2
        )
    )

    def session(token: str, now_ms: int) -> Session:
        return Session(token, "sid-" + token, "l", None, "AK", now_ms, now_ms)

    a = session("tok-a", 0)
    table.add(a, 0)
    with pytest.raises(QldbSessionError) as caught:
        table.lookup("tok-a", "OTHER-KEY", 10)  # bound to the key that started it
    assert caught.value.code == "InvalidSessionException"
    table.begin(a, "T" * 22, "handle-1", 0)
    assert isinstance(table.transaction(a, "T" * 22, 40), OpenTransaction)
    with pytest.raises(QldbSessionError, match="Transaction T+ has expired"):
        table.transaction(a, "T" * 22, 60)
    assert table.take_orphans() == ["handle-1"]
    assert table.take_orphans() == []
    table.touch(a, 60)
    table.begin(a, "U" * 22, "handle-2", 60)
    table.sweep(200)  # idle since 60: gone, its transaction orphaned
    assert len(table) == 0
    assert table.take_orphans() == ["handle-2"]
    with pytest.raises(QldbSessionError, match="No such session"):
        table.lookup("tok-a", "AK", 200)
    b, c, d = session("b", 0), session("c", 0), session("d", 0)
    table.add(b, 0)
    table.add(c, 0)
    with pytest.raises(QldbSessionError) as caught:
        table.add(d, 50)
    assert caught.value.code == "LimitExceededException"
    table.touch(b, 1050)
    with pytest.raises(QldbSessionError, match="has expired"):
        table.check_lifetime(b, 1050)  # lived past its maximum lifetime


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", *sys.argv[1:]]))
