"""What goes into and comes out of the commit machine (core/commit.py): frozen messages.

Clients send `Request`s (each with the client's own request id); the machine answers each
with one `Reply` carrying an `Outcome`. User code never runs inside the machine: it asks its
host to run a `Job` (a `Dispatch` duty) in a worker process and is told the `JobResult`.
Payloads and return values are opaque bytes to the machine: the client encodes them and
the worker decodes them (cluster/codec_client.py), the simulator uses its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import StrandError
from core.streams import StreamOp

# ----------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Run:
    """Run a whole transaction (a function, or statements) and commit it; retried on OCC
    conflict up to `retry_limit` times. Resending the same `transaction_id` never commits it
    twice: it joins the run in flight, or learns that it committed."""

    transaction_id: str
    payload: bytes
    retry_limit: int


@dataclass(frozen=True, slots=True)
class Begin:
    """Open an interactive transaction; the reply's `transaction_id` names it."""


@dataclass(frozen=True, slots=True)
class Execute:
    """Run one statement in an open interactive transaction; the reply's value is its rows."""

    transaction_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit an interactive transaction. `commit_digest` (QLDB's, computed by the client)
    must equal the server's when given; the reply carries the server's."""

    transaction_id: str
    commit_digest: bytes | None


@dataclass(frozen=True, slots=True)
class Abort:
    transaction_id: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """Did that transaction commit? Answered by the ready leader: `sequence_no` is its block,
    or None: it did not commit and never will (any earlier leader's proposal of it is void)."""

    transaction_id: str


@dataclass(frozen=True, slots=True)
class Read:
    """A read of committed state: `Serve` comes out once it may run (at once when stale;
    after a ReadIndex round confirms this node's leadership when linearizable)."""

    linearizable: bool


@dataclass(frozen=True, slots=True)
class UpdateStream:
    """Change a journal stream's replicated state (core/streams.py: create, checkpoint,
    status). Done once the change is applied under the term it was proposed in; every
    change is idempotent, so a client resends it after a lost reply or a leader change."""

    op: StreamOp


Request = Run | Begin | Execute | Commit | Abort | Resolve | Read | UpdateStream

# ----------------------------------------------------------------- worker jobs


@dataclass(frozen=True, slots=True)
class Job:
    """Run `payload` in transaction `transaction_id` (continuing `state`, if any: an
    interactive transaction's earlier statements) by `deadline_ms`, or be killed."""

    job_id: int
    transaction_id: str
    start_ms: int
    deadline_ms: int
    payload: bytes
    state: bytes | None


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job left: the transaction's state (core.transaction.encode_state; None when
    the function raised), its value, or what it raised: a typed `error` the engine's rules
    raised, or `user_error` (anything else, encoded by the host). `crashed`: the worker
    died running it (killed at the deadline: `expired`)."""

    state: bytes | None = None
    value: bytes | None = None
    error: StrandError | None = None
    user_error: bytes | None = None
    crashed: bool = False
    expired: bool = False


# ----------------------------------------------------------------- outcomes and duties


@dataclass(frozen=True, slots=True)
class Done:
    """Success: the transaction's value (opaque), its block (None: it wrote nothing), and
    QLDB's commit digest (for a commit)."""

    transaction_id: str | None = None
    value: bytes | None = None
    sequence_no: int | None = None
    commit_digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """Failure: `error` (typed, from Strand) or `user_error` (opaque, raised by user code).
    A `NotLeaderError` names the node to ask instead; nothing of the request happened."""

    error: StrandError | None = None
    user_error: bytes | None = None


Outcome = Done | Failed


@dataclass(frozen=True, slots=True)
class Reply:
    client: int
    request_id: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Dispatch:
    job: Job


@dataclass(frozen=True, slots=True)
class Serve:
    """A `Read` may run now against the committed state (which it reflects, at least)."""

    client: int
    request_id: int


Duty = Reply | Dispatch | Serve
