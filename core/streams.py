"""Journal streams' durable state: definitions, statuses and checkpoints, and the changes to them.

A journal stream (QLDB's StreamJournalToKinesis) delivers every committed block, in order
and at least once, from an inclusive start (a sequence number, or a time) to an optional
exclusive end, to a sink. What must survive a crash of whatever delivers it is a
`StreamState`: the stream's definition, its status (QLDB's ACTIVE, COMPLETED, CANCELED,
FAILED, IMPAIRED with an error cause) and its checkpoint, the last block the sink has
acknowledged. It is NOT a journal block: it never appears in the journal, in exports or in
streams, and it is not hashed. It is stored under `S<stream id>` (`stream_key`) in the
ledger's storage: written directly by an embedded ledger, and on a cluster replicated as a
Raft entry of its own kind (`core/raftlog.py`, applied by `core/replica.py` on every
replica, proposed by the commit machine for an `UpdateStream` request).

State changes (`StreamOp`) are idempotent and commute with duplicates, so a client may
resend one after a lost reply, and an old incarnation of a stream's runner that is still
alive cannot undo a newer one's progress:
- `CreateStream`: records the definition (ACTIVE, no checkpoint) unless the id exists;
- `CheckpointStream(seq)`: the checkpoint becomes max(checkpoint, seq) (never goes back);
- `SetStreamStatus(status, cause)`: ACTIVE <-> IMPAIRED freely; COMPLETED, CANCELED and
  FAILED are final: a change out of them is ignored.
`apply_op` is the one function that says how; the embedded store and every replica run it.

Delivery invariants (cluster/streams.py delivers, this module decides what state means):
checkpoint None means the CREATED control record has not been acknowledged; checkpoint c
means CREATED and every block from the start to c (inclusive) have been acknowledged by
the sink, so a runner resumes at c + 1: blocks after the checkpoint may be delivered again
(duplicates), none before it is skipped (no gaps).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from core import codec, keys
from core.errors import InvalidArgumentError
from core.storage import Storage

STREAM_PREFIX = b"S"
ACTIVE, COMPLETED, CANCELED, FAILED, IMPAIRED = (
    "ACTIVE", "COMPLETED", "CANCELED", "FAILED", "IMPAIRED",
)  # fmt: skip
STATUSES = (ACTIVE, COMPLETED, CANCELED, FAILED, IMPAIRED)
FINAL = frozenset({COMPLETED, CANCELED, FAILED})
MAX_ID_CHARS = 64
MAX_CAUSE_CHARS = 1000


def stream_key(stream_id: str) -> bytes:
    return STREAM_PREFIX + stream_id.encode("ascii")


def _check_id(stream_id: object) -> str:
    if (
        type(stream_id) is not str
        or not 0 < len(stream_id) <= MAX_ID_CHARS
        or not stream_id.isascii()
        or not stream_id.replace("-", "").replace("_", "").isalnum()
    ):
        raise InvalidArgumentError(f"a stream id is 1..{MAX_ID_CHARS} ASCII letters and digits")
    return stream_id


@dataclass(frozen=True, slots=True)
class StreamDefinition:
    """What a stream delivers and where. `sink` is a JSON object (text) that names the sink
    (cluster/stream_sinks.py: kinesis, jsonl, callback); `start_seq` and
    `inclusive_start_ms` are alternatives (neither: from block 0); the end is exclusive
    (a block at or after `exclusive_end_seq` or `exclusive_end_ms` is not delivered)."""

    stream_id: str
    stream_name: str
    ledger_name: str
    arn: str
    sink: str
    creation_ms: int
    start_seq: int | None = None
    inclusive_start_ms: int | None = None
    exclusive_end_seq: int | None = None
    exclusive_end_ms: int | None = None

    def sink_spec(self) -> dict[str, Any]:
        spec = json.loads(self.sink)
        assert isinstance(spec, dict)
        return spec

    def ends_before(self, seq: int, block_ms: int) -> bool:
        """Whether a block at `seq` stamped `block_ms` is past the stream's exclusive end."""
        if self.exclusive_end_seq is not None and seq >= self.exclusive_end_seq:
            return True
        return self.exclusive_end_ms is not None and block_ms >= self.exclusive_end_ms


@dataclass(frozen=True, slots=True)
class StreamState:
    definition: StreamDefinition
    status: str = ACTIVE
    error_cause: str | None = None
    checkpoint: int | None = None  # the last block acknowledged (None: CREATED not yet)

    @property
    def stream_id(self) -> str:
        return self.definition.stream_id

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def describe(self) -> dict[str, Any]:
        """QLDB's JournalKinesisStreamDescription shape (plus Strand's checkpoint)."""
        d = self.definition
        out: dict[str, Any] = {
            "LedgerName": d.ledger_name,
            "StreamId": d.stream_id,
            "StreamName": d.stream_name,
            "Arn": d.arn,
            "Status": self.status,
            "CreationTime": d.creation_ms / 1000,
            "Sink": d.sink_spec(),
            "Checkpoint": self.checkpoint,
        }
        if d.inclusive_start_ms is not None:
            out["InclusiveStartTime"] = d.inclusive_start_ms / 1000
        if d.start_seq is not None:
            out["InclusiveStartSequenceNo"] = d.start_seq
        if d.exclusive_end_ms is not None:
            out["ExclusiveEndTime"] = d.exclusive_end_ms / 1000
        if d.exclusive_end_seq is not None:
            out["ExclusiveEndSequenceNo"] = d.exclusive_end_seq
        if self.error_cause is not None:
            out["ErrorCause"] = self.error_cause
        return out


# ----------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class CreateStream:
    definition: StreamDefinition

    @property
    def stream_id(self) -> str:
        return self.definition.stream_id


@dataclass(frozen=True, slots=True)
class CheckpointStream:
    stream_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class SetStreamStatus:
    stream_id: str
    status: str
    cause: str | None = None


StreamOp = CreateStream | CheckpointStream | SetStreamStatus


def apply_op(state: StreamState | None, op: StreamOp) -> StreamState | None:
    """The state after `op` (see the module docstring); None: no such stream."""
    if isinstance(op, CreateStream):
        return state if state is not None else StreamState(op.definition)
    if state is None:
        return None
    if isinstance(op, CheckpointStream):
        if state.checkpoint is not None and state.checkpoint >= op.seq:
            return state
        return replace(state, checkpoint=op.seq)
    if state.final:
        return state
    return replace(state, status=op.status, error_cause=op.cause)


# ----------------------------------------------------------------- encodings

_DEF_FIELDS = (
    "stream_id", "stream_name", "ledger_name", "arn", "sink", "creation_ms", "start_seq",
    "inclusive_start_ms", "exclusive_end_seq", "exclusive_end_ms",
)  # fmt: skip
_CREATE, _CHECKPOINT, _STATUS = 1, 2, 3


def _definition_body(d: StreamDefinition) -> list[Any]:
    return [getattr(d, name) for name in _DEF_FIELDS]


def _maybe_int(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidArgumentError("a stream's bound is an integer")
    return value


def _definition(body: object) -> StreamDefinition:
    if not isinstance(body, list) or len(body) != len(_DEF_FIELDS):
        raise InvalidArgumentError("malformed stream definition")
    texts, numbers = body[:5], body[5:]
    if not all(type(x) is str for x in texts) or type(numbers[0]) is not int:
        raise InvalidArgumentError("malformed stream definition")
    sink = json.loads(texts[4])
    if not isinstance(sink, dict) or type(sink.get("kind")) is not str:
        raise InvalidArgumentError("a stream's sink is a JSON object with a kind")
    return StreamDefinition(
        _check_id(texts[0]), texts[1], texts[2], texts[3], texts[4], numbers[0],
        *(_maybe_int(x) for x in numbers[1:]),
    )  # fmt: skip


def op_body(op: StreamOp) -> list[Any]:
    """msgpack-able [kind, ...] of a change (the Raft entry and the client request carry it)."""
    if isinstance(op, CreateStream):
        return [_CREATE, _definition_body(op.definition)]
    if isinstance(op, CheckpointStream):
        return [_CHECKPOINT, op.stream_id, op.seq]
    return [_STATUS, op.stream_id, op.status, op.cause]


def op_from_body(body: object) -> StreamOp:
    """The change `op_body` made; InvalidArgumentError for anything else."""
    if not isinstance(body, list) or not body:
        raise InvalidArgumentError("malformed stream change")
    kind = body[0]
    try:
        if kind == _CREATE and len(body) == 2:
            return CreateStream(_definition(body[1]))
        if kind == _CHECKPOINT and len(body) == 3 and type(body[2]) is int and body[2] >= -1:
            return CheckpointStream(_check_id(body[1]), body[2])
        if kind == _STATUS and len(body) == 4 and body[2] in STATUSES:
            cause = body[3]
            if cause is not None and (type(cause) is not str or len(cause) > MAX_CAUSE_CHARS):
                raise InvalidArgumentError("an error cause is text")
            return SetStreamStatus(_check_id(body[1]), body[2], cause)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"malformed stream change: {exc}") from exc
    raise InvalidArgumentError("malformed stream change")


def encode_state(state: StreamState) -> bytes:
    body = [_definition_body(state.definition), state.status, state.error_cause, state.checkpoint]
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_state(data: bytes) -> StreamState:
    body = msgpack.unpackb(data, raw=False)
    if not isinstance(body, list) or len(body) != 4 or body[1] not in STATUSES:
        raise InvalidArgumentError("malformed stream state")
    return StreamState(_definition(body[0]), body[1], body[2], _maybe_int(body[3]))


# ----------------------------------------------------------------- where to start


def timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch of an Ion timestamp (a datetime)."""
    if not isinstance(value, datetime.datetime):
        raise InvalidArgumentError("a block timestamp is a datetime")
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return int(value.timestamp() * 1000)


def first_at_or_after(t_ms: int, tip: int, timestamp_of: Callable[[int], int]) -> int:
    """The first sequence number in 0..tip whose block is stamped at or after `t_ms`
    (tip + 1 when none is yet). Block times never go back, so a binary search finds it in
    O(log tip) reads of `timestamp_of(seq)`."""
    lo, hi = 0, tip + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if timestamp_of(mid) >= t_ms:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ----------------------------------------------------------------- in a ledger's storage


def read_state(storage: Storage, stream_id: str) -> StreamState | None:
    """The stored state of a stream (`S<id>`, framed), or None."""
    raw = storage.get(stream_key(_check_id(stream_id)))
    return None if raw is None else decode_state(codec.unframe(raw))


def list_states(storage: Storage) -> list[StreamState]:
    """Every stream stored, in id order."""
    end = keys.prefix_end(STREAM_PREFIX)
    return [decode_state(codec.unframe(raw)) for _, raw in storage.scan(STREAM_PREFIX, end)]


def state_put(state: StreamState) -> tuple[bytes, bytes]:
    """The storage put that records `state`."""
    return stream_key(state.stream_id), codec.frame(encode_state(state))


def apply_ops(storage: Storage, ops: Sequence[StreamOp]) -> list[tuple[bytes, bytes]]:
    """The puts that apply `ops` in order to what `storage` holds (nothing for a change that
    changes nothing). The caller writes them, atomically with whatever goes with them."""
    states: dict[str, StreamState | None] = {}
    changed: dict[str, StreamState] = {}
    for op in ops:
        sid = op.stream_id
        if sid not in states:
            states[sid] = read_state(storage, sid)
        new = apply_op(states[sid], op)
        if new is not None and new != states[sid]:
            changed[sid] = new
        states[sid] = new
    return [state_put(state) for state in changed.values()]
