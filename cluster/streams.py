"""Journal streams delivered: the loop that sends blocks to a sink, on a thread or a Ray actor.

A stream (core/streams.py has its durable state, core/stream_records.py its records) is run
by a `StreamRunner` over two things: a `StreamStore`, where its state lives, and a
`JournalReader`, where committed blocks come from.
- Embedded ledger: `LedgerStreamStore` writes the state to the ledger's own storage (key
  `S<id>`, synced, never a block) and `LedgerJournal` reads the engine's durable blocks;
  `StreamService.for_ledger(ledger)` runs each stream on a thread of this process (or of a
  `strand stream run --data DIR` process).
- Cluster: `ClusterStreamStore` replicates every change through the leader
  (`LedgerCluster.update_stream`: a Raft entry of its own kind, applied on every replica)
  and reads it back linearizably; `ClusterJournal` reads committed blocks from any replica
  (a replica holds only committed blocks, identical everywhere). `ClusterStreams` runs
  each stream as a `StreamActor` (Ray, restarted by Ray when it dies), and
  `StreamService.for_cluster(cluster)` runs one on a thread of the caller (callbacks).

The runner's loop: read the state (stop when it is final or gone); if the CREATED control
record was never acknowledged, send it and checkpoint the block before the start; else read
the blocks after the checkpoint (up to `batch_blocks`), turn them into records, `send` them
and only then checkpoint the last one. A block at or past the exclusive end ends the stream
(COMPLETED control record, then status COMPLETED); so does an end time that has passed by
`end_grace_ms` once every block before it was delivered.

Guarantees: every block from the start to the end reaches the sink, in order, at least
once. Duplicates: whatever was sent after the last replicated checkpoint is sent again by
the runner that resumes (at most one batch per interruption: a runner restarted, a leader
change that lost the checkpoint's reply, a sink that failed part-way). Gaps: never, because
the checkpoint moves only after the sink acknowledged every block up to it, the checkpoint
never goes back (core.streams.apply_op), and a resumed runner starts right after it.

Status: a sink failure makes the stream IMPAIRED with the failure as its cause; the runner
retries with exponential backoff (`backoff_base_s` doubling up to `backoff_max_s`) and
sets it ACTIVE again after its first successful send. A store or journal that is
unavailable (a leader election) is retried the same way without changing the status.
CANCELED (`cancel`) stops the runner at its next read of the state; no COMPLETED record
follows (QLDB's behaviour). A definition whose sink cannot even be built in this process
(an unknown callback) is IMPAIRED too.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.stream_sinks import OutRecord, Sink, SinkError, check_spec, sink_from_spec
from core import codec, stream_records
from core.errors import InvalidArgumentError, StrandError
from core.ids import IdSource
from core.journal import Block
from core.streams import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    IMPAIRED,
    CheckpointStream,
    CreateStream,
    SetStreamStatus,
    StreamDefinition,
    StreamOp,
    StreamState,
    apply_ops,
    decode_state,
    first_at_or_after,
    list_states,
    read_state,
    timestamp_ms,
)

log = logging.getLogger("strand.streams")
BLOCKS_PER_READ = 256  # the cluster's raw_blocks read takes at most this many


class StreamStore(Protocol):
    def get(self, stream_id: str) -> StreamState | None: ...

    def list(self) -> list[StreamState]: ...

    def apply(self, op: StreamOp) -> None:
        """Make the change durable (replicated, on a cluster) before returning."""


class JournalReader(Protocol):
    def tip(self) -> int:
        """The last committed block's sequence number."""

    def blocks(self, first: int, last: int) -> list[Block]:
        """Committed blocks first..last (fewer if the tip is before `last`)."""


# ----------------------------------------------------------------- embedded ledger


class LedgerStreamStore:
    """Stream states in an embedded ledger's storage (synced writes, never blocks)."""

    def __init__(self, ledger: Any) -> None:
        self._storage = ledger.engine.storage
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> StreamState | None:
        return read_state(self._storage, stream_id)

    def list(self) -> list[StreamState]:
        return list_states(self._storage)

    def apply(self, op: StreamOp) -> None:
        with self._lock:  # read-modify-write of one key
            puts = apply_ops(self._storage, [op])
            if puts:
                self._storage.write(puts, sync=True)


class LedgerJournal:
    def __init__(self, ledger: Any) -> None:
        self._engine = ledger.engine

    def tip(self) -> int:
        return int(self._engine.durable_seq)

    def blocks(self, first: int, last: int) -> list[Block]:
        last = min(last, self.tip())
        return [self._engine.read_block(seq) for seq in range(first, last + 1)]


# ----------------------------------------------------------------- cluster


class ClusterStreamStore:
    """Stream states replicated through the cluster's Raft log (see the module docstring)."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster

    def get(self, stream_id: str) -> StreamState | None:
        raw, _ = self._cluster.query("stream", stream_id)
        return None if raw is None else decode_state(bytes(raw))

    def list(self) -> list[StreamState]:
        raws, _ = self._cluster.query("streams")
        return [decode_state(bytes(raw)) for raw in raws]

    def apply(self, op: StreamOp) -> None:
        self._cluster.update_stream(op)


class ClusterJournal:
    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster

    def tip(self) -> int:
        seq, _ = self._cluster.query("durable_seq", consistency="stale")
        return int(seq)

    def blocks(self, first: int, last: int) -> list[Block]:
        out: list[Block] = []
        for start in range(first, last + 1, BLOCKS_PER_READ):
            seqs = list(range(start, min(last, start + BLOCKS_PER_READ - 1) + 1))
            got, _ = self._cluster.query("raw_blocks", seqs, consistency="stale")
            chunk = [codec.decode(bytes(raw)) for _, raw in sorted(got)]
            out.extend(chunk)
            if len(chunk) < len(seqs):
                break
        for offset, block in enumerate(out):  # contiguous from `first`, or cut
            if block["blockAddress"]["sequenceNo"] != first + offset:
                return out[:offset]
        return out


# ----------------------------------------------------------------- the loop


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    batch_blocks: int = 256
    poll_s: float = 0.05
    backoff_base_s: float = 0.1
    backoff_max_s: float = 5.0
    end_grace_ms: int = 1000


@dataclass(slots=True)
class RunnerStats:
    sends: int = 0
    records: int = 0
    blocks: int = 0
    failures: int = 0
    last_error: str | None = None
    resumed_at: int | None = None  # the first block this runner sent (its checkpoint + 1)
    delivered: list[int] = field(default_factory=list)  # first..last of each send (tests)


class StreamRunner:
    """Delivers one stream until it is final or `stop` is set (see the module docstring)."""

    def __init__(
        self,
        stream_id: str,
        store: StreamStore,
        journal: JournalReader,
        *,
        sink_factory: Callable[[dict[str, Any]], Sink] = sink_from_spec,
        clock_ms: Callable[[], int] = wall_clock_ms,
        config: RunnerConfig | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.store = store
        self.journal = journal
        self.sink_factory = sink_factory
        self.clock_ms = clock_ms
        self.config = config or RunnerConfig()
        self.stats = RunnerStats()
        self._sink: Sink | None = None

    def run(self, stop: threading.Event) -> StreamState | None:
        """Deliver until the stream is final (its state returned), gone (None) or `stop`."""
        backoff = self.config.backoff_base_s
        state: StreamState | None = None
        try:
            while not stop.is_set():
                try:
                    state = self.store.get(self.stream_id)
                    if state is None or state.final:
                        return state
                    moved = self.step(state)
                except SinkError as exc:
                    self._failed(state, str(exc))
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                except StrandError as exc:  # the ledger is unavailable for now
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.info("stream %s: %s; retrying", self.stream_id, self.stats.last_error)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                backoff = self.config.backoff_base_s
                if not moved:
                    stop.wait(self.config.poll_s)
            return state
        finally:
            self._close_sink()

    def _close_sink(self) -> None:
        if self._sink is not None:
            with contextlib.suppress(Exception):
                self._sink.close()
            self._sink = None

    def _failed(self, state: StreamState | None, cause: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = cause
        self._close_sink()  # a new connection next time
        log.warning("stream %s is impaired: %s", self.stream_id, cause)
        if state is not None and (state.status != IMPAIRED or state.error_cause != cause):
            with contextlib.suppress(StrandError):
                self.store.apply(SetStreamStatus(self.stream_id, IMPAIRED, cause))

    def _send(self, state: StreamState, records: list[stream_records.Record]) -> None:
        if self._sink is None:
            try:
                self._sink = self.sink_factory(state.definition.sink_spec())
            except (InvalidArgumentError, KeyError, ValueError) as exc:
                raise SinkError(f"the sink cannot be built: {exc}") from exc
        out = [OutRecord(r, stream_records.encode(r)) for r in records]
        self._sink.send(out)
        self.stats.sends += 1
        self.stats.records += len(out)
        if state.status == IMPAIRED:
            self.store.apply(SetStreamStatus(self.stream_id, ACTIVE))

    def _complete(self, state: StreamState) -> None:
        arn = state.definition.arn
        self._send(state, [stream_records.control_record(arn, stream_records.COMPLETED)])
        self.store.apply(SetStreamStatus(self.stream_id, COMPLETED))

    def _start_seq(self, definition: StreamDefinition) -> int:
        if definition.start_seq is not None:
            return definition.start_seq
        if definition.inclusive_start_ms is None:
            return 0
        tip = self.journal.tip()

        def stamp(seq: int) -> int:
            [block] = self.journal.blocks(seq, seq)
            return timestamp_ms(block["blockTimestamp"])

        return first_at_or_after(definition.inclusive_start_ms, tip, stamp)

    def step(self, state: StreamState) -> bool:
        """One round of the loop; whether it did anything."""
        definition = state.definition
        if state.checkpoint is None:
            start = self._start_seq(definition)
            self._send(state, [stream_records.control_record(definition.arn, "CREATED")])
            self.store.apply(CheckpointStream(self.stream_id, start - 1))
            return True
        first = state.checkpoint + 1
        if self.stats.resumed_at is None:
            self.stats.resumed_at = first
        end_seq = definition.exclusive_end_seq
        if end_seq is not None and first >= end_seq:
            self._complete(state)
            return True
        tip = self.journal.tip()
        if first > tip:
            end_ms = definition.exclusive_end_ms
            if end_ms is not None and self.clock_ms() >= end_ms + self.config.end_grace_ms:
                self._complete(state)
                return True
            return False
        blocks = self.journal.blocks(first, min(tip, first + self.config.batch_blocks - 1))
        records: list[stream_records.Record] = []
        last, ended = state.checkpoint, False
        start_ms = definition.inclusive_start_ms
        for block in blocks:
            seq = int(block["blockAddress"]["sequenceNo"])
            block_ms = timestamp_ms(block["blockTimestamp"])
            if definition.ends_before(seq, block_ms):
                ended = True
                break
            if start_ms is None or block_ms >= start_ms:
                records += stream_records.block_records(definition.arn, block)
            last = seq
        if records:
            self._send(state, records)
            self.stats.blocks += last - state.checkpoint
            self.stats.delivered += [first, last]
        if last != state.checkpoint:
            self.store.apply(CheckpointStream(self.stream_id, last))
        if ended:
            self._complete(state)
        return bool(blocks)


# ----------------------------------------------------------------- creating and managing


def _ms(value: datetime.datetime | int | float | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return timestamp_ms(value)
    return int(value * 1000)  # epoch seconds, as QLDB's API takes them


def new_definition(
    ledger_name: str,
    sink: dict[str, Any],
    *,
    stream_name: str = "stream",
    start_seq: int | None = None,
    inclusive_start_time: datetime.datetime | float | None = None,
    exclusive_end_time: datetime.datetime | float | None = None,
    exclusive_end_seq: int | None = None,
    stream_id: str | None = None,
    region: str = stream_records.DEFAULT_REGION,
    now_ms: int | None = None,
) -> StreamDefinition:
    """A new stream's definition (checked; a fresh id unless given)."""
    if start_seq is not None and inclusive_start_time is not None:
        raise InvalidArgumentError("a stream starts at a sequence number or a time, not both")
    if start_seq is not None and start_seq < 0:
        raise InvalidArgumentError("a start sequence number is at least 0")
    start_ms, end_ms = _ms(inclusive_start_time), _ms(exclusive_end_time)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidArgumentError("the exclusive end time must be after the start time")
    stream_id = stream_id or IdSource(os.urandom).new_id()
    return StreamDefinition(
        stream_id=stream_id,
        stream_name=stream_name,
        ledger_name=ledger_name,
        arn=stream_records.stream_arn(ledger_name, stream_id, region),
        sink=check_spec(sink),
        creation_ms=now_ms if now_ms is not None else wall_clock_ms(),
        start_seq=start_seq,
        inclusive_start_ms=start_ms,
        exclusive_end_seq=exclusive_end_seq,
        exclusive_end_ms=end_ms,
    )


class StreamService:
    """The streams of one ledger, run on threads of this process: create, list, describe,
    cancel, and `start`/`resume` their runners (see the module docstring)."""

    def __init__(
        self,
        store: StreamStore,
        journal: JournalReader,
        ledger_name: str,
        *,
        config: RunnerConfig | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.ledger_name = ledger_name
        self.config = config
        self._runs: dict[str, tuple[threading.Thread, threading.Event, StreamRunner]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_ledger(cls, ledger: Any, ledger_name: str = "ledger", **kw: Any) -> StreamService:
        return cls(LedgerStreamStore(ledger), LedgerJournal(ledger), ledger_name, **kw)

    @classmethod
    def for_cluster(cls, cluster: Any, **kw: Any) -> StreamService:
        name = cluster.config.cluster_name
        return cls(ClusterStreamStore(cluster), ClusterJournal(cluster), name, **kw)

    def create(self, sink: dict[str, Any], *, start: bool = True, **kw: Any) -> StreamState:
        """Record a new stream (ACTIVE) and, with `start`, run it on a thread here."""
        definition = new_definition(self.ledger_name, sink, **kw)
        self.store.apply(CreateStream(definition))
        if start:
            self.start(definition.stream_id)
        state = self.store.get(definition.stream_id)
        assert state is not None
        return state

    def describe(self, stream_id: str) -> StreamState:
        state = self.store.get(stream_id)
        if state is None:
            raise InvalidArgumentError(f"no stream {stream_id!r:.80}")
        return state

    def list(self) -> list[StreamState]:
        return self.store.list()

    def cancel(self, stream_id: str) -> StreamState:
        """CANCELED (final); the runner stops at its next read of the state."""
        self.describe(stream_id)
        self.store.apply(SetStreamStatus(stream_id, CANCELED))
        return self.describe(stream_id)

    def start(self, stream_id: str) -> StreamRunner:
        """Run the stream on a thread of this process (again, if it ran before)."""
        with self._lock:
            running = self._runs.get(stream_id)
            if running is not None and running[0].is_alive():
                return running[2]
            runner = StreamRunner(stream_id, self.store, self.journal, config=self.config)
            stop = threading.Event()
            thread = threading.Thread(
                target=runner.run, args=(stop,), name=f"strand-stream-{stream_id}", daemon=True
            )
            self._runs[stream_id] = (thread, stop, runner)
            thread.start()
            return runner

    def resume(self) -> builtins.list[str]:
        """Start a runner for every stream that is not final (after a restart)."""
        ids = [s.stream_id for s in self.list() if not s.final]
        for stream_id in ids:
            self.start(stream_id)
        return ids

    def runner(self, stream_id: str) -> StreamRunner | None:
        running = self._runs.get(stream_id)
        return None if running is None else running[2]

    def stop(self, stream_id: str | None = None, timeout_s: float = 10.0) -> None:
        """Stop this process's runners (the streams stay as they are, to resume later)."""
        with self._lock:
            ids = [stream_id] if stream_id is not None else list(self._runs)
            runs = [self._runs.pop(i) for i in ids if i in self._runs]
        for _, stop, _ in runs:
            stop.set()
        for thread, _, _ in runs:
            thread.join(timeout_s)

    def wait(
        self, stream_id: str, condition: Callable[[StreamState], bool], timeout_s: float = 30.0
    ) -> StreamState:
        """Poll the stream's state until `condition` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.describe(stream_id)
            if condition(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.05)


# ----------------------------------------------------------------- the Ray actor


def _stream_actor_class() -> Any:
    import ray

    @ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
    class StreamActor:
        """One stream of a cluster, delivered from this actor's thread; Ray restarts the
        actor when it dies and the new one resumes from the replicated checkpoint."""

        def __init__(self, config: Any, stream_id: str, runner_config: Any = None) -> None:
            from cluster.client import LedgerCluster

            logging.basicConfig(level=logging.WARNING)
            self.cluster = LedgerCluster(config)
            self.runner = StreamRunner(
                stream_id, ClusterStreamStore(self.cluster), ClusterJournal(self.cluster),
                config=runner_config,
            )  # fmt: skip
            self.stop_event = threading.Event()
            self.final: StreamState | None = None
            self.thread = threading.Thread(target=self._run, name="strand-stream", daemon=True)
            self.thread.start()

        def _run(self) -> None:
            self.final = self.runner.run(self.stop_event)

        def status(self) -> dict[str, Any]:
            stats = self.runner.stats
            return {
                "pid": os.getpid(),
                "running": self.thread.is_alive(),
                "sends": stats.sends,
                "records": stats.records,
                "blocks": stats.blocks,
                "failures": stats.failures,
                "last_error": stats.last_error,
                "resumed_at": stats.resumed_at,
            }

        def stop(self) -> None:
            self.stop_event.set()
            self.thread.join(10)
            self.cluster.close()

    return StreamActor


_actor_class: Any = None


def stream_actor_class() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = _stream_actor_class()
    return _actor_class


class ClusterStreams(StreamService):
    """A cluster's streams, each run by a `StreamActor` on Ray (placed with the digest
    actor's share of the first AZ); `create` starts one, `resume` starts one for every
    stream that is not final and has none, `cancel` also stops its actor."""

    def __init__(self, cluster: Any, *, config: RunnerConfig | None = None) -> None:
        super().__init__(
            ClusterStreamStore(cluster), ClusterJournal(cluster), cluster.config.cluster_name,
            config=config,
        )  # fmt: skip
        self.cluster = cluster
        self._handles: dict[str, Any] = {}  # actors started here live while held (or detached)

    def _name(self, stream_id: str) -> str:
        from cluster.common import actor_name

        return actor_name(self.cluster.config.cluster_name, f"stream-{stream_id}")

    def actor(self, stream_id: str) -> Any:
        """The stream's actor (ValueError if it has none)."""
        import ray

        from cluster.common import NAMESPACE

        return ray.get_actor(self._name(stream_id), namespace=NAMESPACE)

    def start(self, stream_id: str) -> Any:  # type: ignore[override]
        from cluster.common import HELPER_RESOURCE, NAMESPACE

        with contextlib.suppress(ValueError):
            return self.actor(stream_id)
        az = self.cluster.config.nodes[0].az
        self._handles[stream_id] = handle = (
            stream_actor_class()
            .options(
                name=self._name(stream_id),
                namespace=NAMESPACE,
                resources={az: HELPER_RESOURCE / 10},
                lifetime=getattr(self.cluster, "_lifetime", None),
                get_if_exists=True,
            )
            .remote(self.cluster.config, stream_id, self.config)
        )
        return handle

    def cancel(self, stream_id: str) -> StreamState:
        state = super().cancel(stream_id)
        self.stop(stream_id)
        return state

    def stop(self, stream_id: str | None = None, timeout_s: float = 10.0) -> None:
        """Stop the actors of these streams (all this cluster's with None); the streams
        stay as they are (resume starts them again)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        ids = [stream_id] if stream_id is not None else [s.stream_id for s in self.list()]
        for sid in ids:
            try:
                actor = self.actor(sid)
            except ValueError:
                continue
            with contextlib.suppress(RayError, GetTimeoutError):
                ray.get(actor.stop.remote(), timeout=timeout_s)
            ray.kill(actor, no_restart=True)
            self._handles.pop(sid, None)

    def kill_actor(self, stream_id: str) -> None:
        """Kill the stream's actor the hard way; Ray restarts it (experiments, tests)."""
        import ray

        ray.kill(self.actor(stream_id), no_restart=False)

    def actor_status(self, stream_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        import ray

        return ray.get(self.actor(stream_id).status.remote(), timeout=timeout_s)  # type: ignore[no-any-return]


# ----------------------------------------------------------------- QLDB's control plane

_services: dict[tuple[int, str], StreamService] = {}
_services_lock = threading.Lock()
_ERROR_CAUSES = (("ResourceNotFound", "KINESIS_STREAM_NOT_FOUND"),
                 ("AccessDenied", "IAM_PERMISSION_REVOKED"))  # fmt: skip


def service_for(ledgers: Any, name: str) -> StreamService:
    """The stream service of ledger `name` of a gateway's ledger set (one per process; the
    first use resumes the ledger's unfinished streams: threads for an embedded ledger,
    actors for a cluster)."""
    key = (id(ledgers), name)
    with _services_lock:
        service = _services.get(key)
        if service is None:
            handle = ledgers.open(name)
            if hasattr(handle, "engine"):
                service = StreamService.for_ledger(handle, name)
            else:
                service = ClusterStreams(handle)
                service.ledger_name = name
            service.resume()
            _services[key] = service
        return service


def _description(state: StreamState) -> dict[str, Any]:
    d, spec = state.definition, state.definition.sink_spec()
    out: dict[str, Any] = {
        "LedgerName": d.ledger_name, "StreamId": d.stream_id, "StreamName": d.stream_name,
        "Arn": d.arn, "Status": state.status, "CreationTime": d.creation_ms / 1000,
        "RoleArn": spec.get("role_arn", ""),
        "KinesisConfiguration": {
            "StreamArn": spec.get("stream_arn") or spec.get("stream_name", ""),
            "AggregationEnabled": bool(spec.get("aggregation", True)),
        },
    }  # fmt: skip
    if d.inclusive_start_ms is not None:
        out["InclusiveStartTime"] = d.inclusive_start_ms / 1000
    if d.exclusive_end_ms is not None:
        out["ExclusiveEndTime"] = d.exclusive_end_ms / 1000
    if state.error_cause is not None:
        cause = state.error_cause
        out["ErrorCause"] = next((c for k, c in _ERROR_CAUSES if k in cause), cause)
    return out


def control_operation(
    ledgers: Any, name: str, operation: str, body: dict[str, Any], stream_id: str | None
) -> dict[str, Any]:
    """QLDB's StreamJournalToKinesis, Describe/List/CancelJournalKinesisStream(s) on ledger
    `name` (cluster/gateway/control.py routes them here); InvalidArgumentError for bad input."""
    service = service_for(ledgers, name)
    if operation == "StreamJournalToKinesis":
        kinesis = body.get("KinesisConfiguration")
        if not isinstance(kinesis, dict) or not isinstance(kinesis.get("StreamArn"), str):
            raise InvalidArgumentError("KinesisConfiguration.StreamArn is required")
        for key in ("RoleArn", "StreamName", "InclusiveStartTime"):
            if body.get(key) is None:
                raise InvalidArgumentError(f"{key} is required")
        sink = {"kind": "kinesis", "stream_arn": kinesis["StreamArn"],
                "aggregation": bool(kinesis.get("AggregationEnabled", True)),
                "role_arn": str(body["RoleArn"])}  # fmt: skip
        if ":" in kinesis["StreamArn"].split("/")[0]:
            region = kinesis["StreamArn"].split(":")[3]
            if region:
                sink["region"] = region
        state = service.create(
            sink, stream_name=str(body["StreamName"]),
            inclusive_start_time=float(body["InclusiveStartTime"]),
            exclusive_end_time=(
                None if body.get("ExclusiveEndTime") is None else float(body["ExclusiveEndTime"])
            ),
        )  # fmt: skip
        return {"StreamId": state.stream_id}
    if operation == "ListJournalKinesisStreamsForLedger":
        return {"Streams": [_description(s) for s in service.list()]}
    if stream_id is None:
        raise InvalidArgumentError("a stream id is required")
    if operation == "DescribeJournalKinesisStream":
        return {"Stream": _description(service.describe(stream_id))}
    if operation == "CancelJournalKinesisStream":
        return {"StreamId": service.cancel(stream_id).stream_id}
    raise InvalidArgumentError(f"unknown stream operation {operation}")
