"""Journal streams delivered (cluster/streams.py, cluster/stream_sinks.py).

Against a real Kinesis API served locally (moto's server mode on 127.0.0.1, started here):
records are read back, deaggregated with aws-kinesis-agg's deaggregator and checked with
core.stream_records.ChainVerifier (every block at least once, in order, the chain whole).
JSON Lines and callback sinks; an embedded stream that resumes after its thread and its
ledger were closed; IMPAIRED while the sink is missing and ACTIVE again once it exists;
cancel. On a cluster of its own (port shift 1500): a stream survives a leader kill and a
stream-actor kill with no gap while transactions commit continuously.
The pure parts (replicated state, records, the verifier) are in tests/test_streams_core.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.stream_sinks import read_jsonl, read_kinesis, register_callback
from cluster.streams import RunnerConfig, StreamService
from core import Ledger
from core.errors import StrandError
from core.stream_records import ChainVerifier
from core.streams import ACTIVE, CANCELED, COMPLETED, IMPAIRED, StreamState, decode_state
from tests.conftest import wait_for

FAST = RunnerConfig(poll_s=0.01, backoff_base_s=0.05, backoff_max_s=0.2)


@pytest.fixture(scope="module")
def kinesis_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def kinesis(kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint,  # boto3 finds it by itself
    }.items():
        monkeypatch.setenv(name, value)
    return boto3.client("kinesis")


def _create_kinesis_stream(kinesis: Any, name: str) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            == "ACTIVE"
        ),
        what="the Kinesis stream",
    )


def _commit(ledger: Ledger, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        ledger.execute_lambda(lambda tx, i=i: tx.insert("Car", {"VIN": f"V{i}", "n": i}))


def _verified(records: list[dict[str, Any]], **kw: Any) -> ChainVerifier:
    verifier = ChainVerifier(**kw)
    verifier.feed_all(records)
    return verifier


def _caught_up(service: StreamService, stream_id: str, tip: int) -> StreamState:
    state = service.wait(stream_id, lambda s: (s.checkpoint or -1) >= tip or s.final)
    assert state.checkpoint == tip, state
    return state


def test_kinesis_stream_delivers_every_block_in_order_aggregated(
    tmp_path: Path, kinesis: Any
) -> None:
    _create_kinesis_stream(kinesis, "journal")
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 40)
        service = StreamService.for_ledger(ledger, "vehicles", config=FAST)
        started = time.perf_counter()
        state = service.create({"kind": "kinesis", "stream_name": "journal"}, stream_name="feed")
        _commit(ledger, 40, 40)  # while it streams
        _caught_up(service, state.stream_id, ledger.engine.durable_seq)
        elapsed_s = time.perf_counter() - started
        runner = service.runner(state.stream_id)
        assert runner is not None
        service.stop()
        tip = ledger.engine.durable_seq
    got = list(read_kinesis("journal"))
    verifier = _verified(got, first_seq=0)
    assert verifier.blocks == tip + 1
    assert verifier.duplicates == 0
    assert verifier.controls == ["CREATED"]
    assert got[0]["qldbStreamArn"].startswith("arn:aws:qldb:us-east-1:")
    assert got[0]["qldbStreamArn"].endswith(f":stream/vehicles/{state.stream_id}")
    # KPL aggregation: far fewer Kinesis records than stream records, each with the magic
    shard = kinesis.list_shards(StreamName="journal")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="journal", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    raw = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert raw
    assert all(r["Data"][:4] == b"\xf3\x89\x9a\xc2" for r in raw)
    assert len(raw) < len(got)
    print(f"\n{runner.stats.records / elapsed_s:.0f} records/s to the local Kinesis")


def test_jsonl_from_a_start_to_an_exclusive_end_completes(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 10)
        service = StreamService.for_ledger(ledger, config=FAST)
        state = service.create(
            {"kind": "jsonl", "path": str(path)}, start_seq=3, exclusive_end_seq=9
        )
        done = service.wait(state.stream_id, lambda s: s.final)
        assert done.status == COMPLETED
        assert done.checkpoint == 8
        anchor = ledger.engine.read_block(2)["blockHash"]
        service.stop()
    records = read_jsonl(path)
    verifier = _verified(records, trusted=(2, anchor), check_transaction_info=False)
    assert verifier.blocks == 6  # 3..8
    assert verifier.controls == ["CREATED", "COMPLETED"]


def test_a_callback_gets_records_from_a_start_time(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []
    register_callback("collect", got.append)
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 3)
        time.sleep(1.1)  # block times have millisecond precision: a clear boundary
        first = ledger.engine.durable_seq + 1
        _commit(ledger, 3, 3)
        start = ledger.engine.read_block(first)["blockTimestamp"]
        service = StreamService.for_ledger(ledger, config=FAST)
        state = service.create({"kind": "callback", "name": "collect"}, inclusive_start_time=start)
        _caught_up(service, state.stream_id, ledger.engine.durable_seq)
        service.stop()
        anchor = ledger.engine.read_block(first - 1)["blockHash"]
    verifier = _verified(got, trusted=(first - 1, anchor))
    assert verifier.blocks == 3
    assert verifier.revisions == 3


def test_an_embedded_stream_resumes_after_a_restart_without_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        service = StreamService.for_ledger(ledger, config=RunnerConfig(batch_blocks=4, poll_s=0.01))
        state = service.create({"kind": "jsonl", "path": str(path)})
        _commit(ledger, 30)
        wait_for(lambda: (service.describe(state.stream_id).checkpoint or 0) >= 8, what="progress")
        service.stop()  # the process's thread stops mid-stream
        stopped_at = service.describe(state.stream_id).checkpoint
        _commit(ledger, 30, 30)  # committed while nothing streams
    with Ledger.open(tmp_path / "ledger") as ledger:  # the ledger's process starts again
        service = StreamService.for_ledger(ledger, config=FAST)
        assert service.resume() == [state.stream_id]
        _caught_up(service, state.stream_id, ledger.engine.durable_seq)
        runner = service.runner(state.stream_id)
        assert runner is not None
        assert runner.stats.resumed_at == (stopped_at or 0) + 1  # right after the checkpoint
        service.stop()
        tip = ledger.engine.durable_seq
        assert ledger.verify_journal().ok  # the stream's state is no block
    verifier = _verified(read_jsonl(path), first_seq=0, check_transaction_info=False)
    assert verifier.blocks == tip + 1
    assert verifier.duplicates <= 4 * 4  # at most one batch (of 4 blocks) again


def test_a_missing_sink_impairs_the_stream_until_it_exists(tmp_path: Path, kinesis: Any) -> None:
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 5)
        service = StreamService.for_ledger(ledger, config=FAST)
        state = service.create({"kind": "kinesis", "stream_name": "later"})
        impaired = service.wait(state.stream_id, lambda s: s.status == IMPAIRED)
        assert impaired.status == IMPAIRED
        assert "ResourceNotFound" in (impaired.error_cause or "")
        _create_kinesis_stream(kinesis, "later")
        state = service.wait(state.stream_id, lambda s: s.status == ACTIVE)
        assert state.status == ACTIVE
        assert state.error_cause is None
        _caught_up(service, state.stream_id, ledger.engine.durable_seq)
        canceled = service.cancel(state.stream_id)
        assert canceled.status == CANCELED
        wait_for(lambda: not service._runs[state.stream_id][0].is_alive(), what="the runner")
        _commit(ledger, 3, 5)
        assert service.describe(state.stream_id).status == CANCELED
        assert [s.status for s in service.list()] == [CANCELED]
        service.stop()
        tip = ledger.engine.durable_seq
    verifier = _verified(list(read_kinesis("later")), first_seq=0)
    assert verifier.blocks == tip - 3 + 1  # nothing after the cancel
    assert verifier.controls == ["CREATED"]  # no COMPLETED after a cancel


def test_a_send_that_fails_part_way_is_sent_again_from_the_checkpoint(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []
    calls = [0]

    def flaky(record: dict[str, Any]) -> None:
        calls[0] += 1
        if calls[0] in (5, 12, 19, 30, 41):  # part-way through a send: its start landed
            raise ConnectionError("the consumer hung up")
        got.append(record)

    register_callback("flaky", flaky)
    with Ledger.open(tmp_path / "ledger") as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 20)
        service = StreamService.for_ledger(
            ledger, config=RunnerConfig(batch_blocks=3, poll_s=0.01, backoff_base_s=0.01)
        )
        state = service.create({"kind": "callback", "name": "flaky"})
        state = _caught_up(service, state.stream_id, ledger.engine.durable_seq)
        assert state.status == ACTIVE  # impaired on every failure, active again after
        runner = service.runner(state.stream_id)
        assert runner is not None
        assert runner.stats.failures >= 5
        assert "the consumer hung up" in (runner.stats.last_error or "")
        service.stop()
        tip = ledger.engine.durable_seq
    verifier = _verified(got, first_seq=0)
    assert verifier.blocks == tip + 1
    assert verifier.duplicates > 0


# ----------------------------------------------------------------- the cluster

PORT_SHIFT = 1500


def _writer(cluster: Any, stop: threading.Event, counter: list[int]) -> None:
    while not stop.is_set():
        n = counter[0]
        try:
            cluster.execute_lambda(lambda tx, n=n: tx.insert("Car", {"VIN": f"W{n}", "n": n}))
        except StrandError:
            time.sleep(0.05)  # a leader change, told as such: the next one goes on
        counter[0] += 1


def _checkpoint(streams: Any, stream_id: str) -> int:
    try:
        return int(streams.describe(stream_id).checkpoint or -1)
    except StrandError:
        return -1


def _replica_checkpoint(cluster: Any, stream_id: str, node: str) -> int:
    raw, _ = cluster.query("stream", stream_id, consistency="stale", node=node)
    return -2 if raw is None else int(decode_state(bytes(raw)).checkpoint or -1)


def test_a_cluster_stream_survives_a_leader_kill_and_an_actor_kill_with_no_gap(
    ray_runtime: None, tmp_path: Path
) -> None:
    from cluster import LedgerCluster
    from cluster.config import load_config
    from cluster.streams import ClusterStreams
    from tests.conftest import private_cluster_config

    config = load_config(private_cluster_config(tmp_path, "strand-streams", PORT_SHIFT))
    cluster = LedgerCluster.start(config)
    streams = ClusterStreams(cluster, config=RunnerConfig(batch_blocks=8, poll_s=0.02))
    path = tmp_path / "stream.jsonl"
    stop = threading.Event()
    counters = [[i * 1_000_000] for i in range(3)]
    threads = [
        threading.Thread(target=_writer, args=(cluster, stop, c), daemon=True) for c in counters
    ]
    try:
        cluster.execute_lambda(lambda tx: tx.create_table("Car"))
        for thread in threads:
            thread.start()
        state = streams.create({"kind": "jsonl", "path": str(path)})
        sid = state.stream_id
        wait_for(lambda: _checkpoint(streams, sid) >= 10, what="a first delivery")
        leader = cluster.leader()
        assert leader is not None
        cluster.kill(leader, restart=True)  # Ray restarts it from its LevelDB
        mark = _checkpoint(streams, sid)
        wait_for(lambda: _checkpoint(streams, sid) >= mark + 10, 60, "progress after the kill")
        pid = streams.actor_status(sid)["pid"]
        streams.kill_actor(sid)
        mark = _checkpoint(streams, sid)
        wait_for(lambda: _checkpoint(streams, sid) >= mark + 10, 60, "progress after the actor")
        assert streams.actor_status(sid)["pid"] != pid
        stop.set()
        for thread in threads:
            thread.join(60)
        tip = int(cluster.query("durable_seq")[0])
        wait_for(lambda: _checkpoint(streams, sid) >= tip, 60, "the stream to catch up")
        for node in config.node_names:  # the checkpoint is on every replica, never a block
            wait_for(lambda node=node: _replica_checkpoint(cluster, sid, node) >= tip, 30, node)
        assert cluster.verify_journal().ok
        streams.cancel(sid)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        streams.stop()
        cluster.shutdown()
    records = read_jsonl(path)
    verifier = _verified(records, first_seq=0, check_transaction_info=False)
    assert verifier.blocks == tip + 1  # block 0..tip, each at least once, in order
    assert verifier.duplicates <= 3 * 8 * 2 + 10, verifier.duplicates  # a batch per interruption
    print(f"\n{tip + 1} blocks, {verifier.duplicates} duplicate records")


def test_stream_journal_to_kinesis_through_the_control_plane(tmp_path: Path, kinesis: Any) -> None:
    from cluster.gateway.control import handle_control
    from cluster.ledgers import EmbeddedLedgers

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = handle_control(ledgers, method, path, {}, json.dumps(body or {}).encode())
        assert response.status == 200, response.body
        return response.body

    _create_kinesis_stream(kinesis, "qldb")
    arn = kinesis.describe_stream_summary(StreamName="qldb")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    with EmbeddedLedgers(tmp_path / "data") as ledgers:
        call("POST", "/ledgers", {"Name": "cars", "PermissionsMode": "STANDARD"})
        ledger = ledgers.open("cars")
        ledger.execute_lambda(lambda tx: tx.create_table("Car"))
        _commit(ledger, 5)
        stream_id = call("POST", "/ledgers/cars/journal-kinesis-streams", {
            "RoleArn": "arn:aws:iam::000000000000:role/streams", "StreamName": "feed",
            "InclusiveStartTime": 0, "KinesisConfiguration": {"StreamArn": arn},
        })["StreamId"]  # fmt: skip
        tip = ledger.engine.durable_seq

        def described() -> dict[str, Any]:
            return call("GET", f"/ledgers/cars/journal-kinesis-streams/{stream_id}")["Stream"]  # type: ignore[no-any-return]

        wait_for(lambda: len(list(read_kinesis("qldb"))) >= 2 * tip + 1, what="the records")
        assert described()["Status"] == ACTIVE
        assert described()["RoleArn"].endswith("role/streams")
        listed = call("GET", "/ledgers/cars/journal-kinesis-streams")["Streams"]
        assert [s["StreamId"] for s in listed] == [stream_id]
        call("DELETE", f"/ledgers/cars/journal-kinesis-streams/{stream_id}")
        assert described()["Status"] == CANCELED
        from cluster.streams import service_for

        service_for(ledgers, "cars").stop()
    verifier = _verified(list(read_kinesis("qldb")), first_seq=0)
    assert verifier.blocks == tip + 1
