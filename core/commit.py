"""The commit path as one pure state machine: requests, worker results and Raft in; duties out.

Theory of operation. Every node hosts a `CommitMachine` beside its `Replica`; only the
leader's does anything but answer "not the leader". The host feeds it client requests
(`submit`), the results of jobs it asked workers to run (`ran`), time (`tick`) and what the
replica did in each `process_ready` (`observe`); after the inputs at hand it takes the
duties (`take_duties`, which first prepares and proposes what became ready, so inputs that
arrived together commit together) and carries them out: run a `Job` on a worker (user code
never runs here), send a `Reply`, serve a `Read`; a proposal leaves the replica with work,
so the host runs `process_ready` again until neither has any. No I/O, threads or clocks:
time comes in as `now_ms`, and randomness (retry backoff, interactive transaction ids) from
the `random.Random` passed in.

A transaction's life on the leader:
1. `Run` (or `Commit` of an interactive transaction) arrives. An id already in flight here
   joins that run (its caller gets the same outcome); an id already in the journal is
   answered `TransactionCommittedError` (it committed once; it is never run again); an id
   with a failure record in the log (its run crashed a worker) is refused.
2. A worker runs it (`Dispatch`) against the leader's committed state and returns its
   state: reads with their marks, buffered writes, statements (core.transaction).
3. Group commit: whatever is ready when fewer than `max_inflight_batches` batches are in
   flight is prepared as ONE batch on the engine's head (OCC against everything prepared,
   durable or not; a transaction id already in the journal or the head is refused there
   too), proposed to Raft as one entry (`Replica.propose_prepared`), and written as
   prepared when it commits. Conflicts are run again after a jittered backoff, up to the
   retry limit; read-only transactions wait for a ReadIndex round (so they are
   linearizable) instead of a log entry.
4. The entry at (index, term) is applied: if it is ours (same term), its transactions
   committed: each caller gets its own outcome. If another entry was applied at that index,
   ours is void forever: its transactions run again (still leading) or their callers are
   told to ask the leader, with the same ids.
A node that stops leading fails everything not yet proposed with `NotLeaderError` (the
caller resends to the new leader, same transaction id); what it proposed keeps waiting, and
is decided when that index is applied here, under whichever term. A caller that never hears
back resends to the new leader: once that leader is ready (its first entry committed), every
proposal of an earlier term is either in the journal or void, so the transaction id alone
decides, with no clocks and no fencing tokens.

A change to a journal stream's state (`UpdateStream`: create, checkpoint, status; see
core/streams.py) is proposed as an entry of its own, never a block, and answered Done once
that index is applied under the term it was proposed in (else "ask the leader": the change
is idempotent, so the client resends it).

A worker that dies running a transaction: the machine proposes a failure record for its id
(replicated: every later leader refuses that id) and then fails its caller with
`TransactionCrashedError`; a worker killed at the transaction's 30 s deadline fails it with
`TransactionExpiredError`.

Invariants (checked by chaos/ledger_sim.py over many seeds): a caller is told Done only
for a transaction whose block is applied under the term it was proposed in (durable on a
majority) or that is read-only and confirmed by a ReadIndex round; a transaction id is in
the journal at most once; a caller told Failed has nothing of it in the journal, except
`TransactionCommittedError` (it is there, once); every request gets exactly one reply while
the node is up; at most `max_pending` transactions are in flight (more are refused with
`CapacityExceededError`).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from core.engine import CommitResult
from core.errors import (
    CapacityExceededError,
    InvalidArgumentError,
    NotLeaderError,
    OccConflictError,
    StrandError,
    TransactionAbandonedError,
    TransactionCommittedError,
    TransactionCrashedError,
    TransactionExpiredError,
    TransactionNotFoundError,
)
from core.ids import IdSource
from core.raft import Role
from core.raftlog import CRASHED, RESOLVED, FailureRecord
from core.replica import Replica, ReplicaOutput
from core.requests import (
    Abort,
    Begin,
    Commit,
    Dispatch,
    Done,
    Duty,
    Execute,
    Failed,
    Job,
    JobResult,
    Outcome,
    Read,
    Reply,
    Request,
    Resolve,
    Run,
    Serve,
    UpdateStream,
)
from core.transaction import Transaction, decode_state

TRANSACTION_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class CommitConfig:
    max_batch_transactions: int = 256
    max_inflight_batches: int = 2
    max_pending: int = 10_000
    recent_outcomes: int = 10_000  # final outcomes of runs kept to answer resends
    backoff_base_ms: int = 10
    transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS


# transaction states
_HELD = "held"  # waiting for this leader to be ready (its first entry applied)
_RUNNING = "running"  # a worker runs it
_BACKOFF = "backoff"  # conflicted; runs again at `until_ms`
_READY = "ready"  # ran; waits to be prepared in a batch
_PROPOSED = "proposed"  # in the batch at log index `index`
_CONFIRMING = "confirming"  # read-only; waits for a ReadIndex round
_OPEN = "open"  # an interactive transaction between statements
_RECORDING = "recording"  # its failure record is being replicated

Waiter = tuple[int, int]  # (client, request id)


@dataclass(slots=True)
class _Tx:
    tx_id: str
    session: bool
    start_ms: int
    payload: bytes = b""
    retry_limit: int = 0
    status: str = _HELD
    waiters: list[Waiter] = field(default_factory=list)
    resolvers: list[Waiter] = field(default_factory=list)  # Resolve requests waiting on it
    owner: int | None = None  # the client that opened an interactive transaction
    attempts: int = 0
    state: bytes | None = None
    value: bytes | None = None
    job: int | None = None
    until_ms: int = 0
    index: int = 0
    commit_digest: bytes | None = None
    queue: deque[tuple[Waiter, Execute | Commit]] = field(default_factory=deque)
    seen: set[Waiter] = field(default_factory=set)  # requests already taken (duplicates)
    recorded: Outcome | None = None  # recording: what its callers get once it is applied


@dataclass(slots=True)
class _Batch:
    term: int
    transactions: list[_Tx]
    sequence_nos: list[int]


class CommitMachine:
    """The leader's commit path (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        replica: Replica,
        *,
        rng: random.Random,
        now_ms: int,
        config: CommitConfig | None = None,
    ) -> None:
        self.replica = replica
        self.config = config or CommitConfig()
        self._rng = rng
        self._ids = IdSource(rng.randbytes)
        self.now_ms = now_ms
        self._txs: dict[str, _Tx] = {}
        self._recent: OrderedDict[str, Outcome] = OrderedDict()
        self._jobs: dict[int, _Tx] = {}
        self._job_ids = 0
        self._ready: deque[_Tx] = deque()
        self._batches: dict[int, _Batch] = {}  # log index -> our batch there
        self._records: dict[int, tuple[int, _Tx]] = {}  # log index -> (term, tx)
        self._stream_ops: dict[int, tuple[int, list[Waiter]]] = {}  # log index -> (term, ...)
        self._reads: list[Waiter] = []  # linearizable reads for the next ReadIndex round
        self._confirm: list[_Tx] = []  # read-only transactions for the next round
        self._round: tuple[int, list[Waiter], list[_Tx]] | None = None  # in flight
        self._round_ids = 0
        self._held: list[tuple[Waiter, Request]] = []
        self._duties: list[Duty] = []
        self._term = replica.node.term
        self._leading = False
        self.stats = {"batches": 0, "transactions": 0, "conflicts": 0, "lost": 0, "crashes": 0}

    # ----------------------------------------------------------------- helpers
    @property
    def _leader_ready(self) -> bool:
        return self.replica.ready_to_serve

    def _not_leader(self) -> NotLeaderError:
        node = self.replica.node
        leader = node.leader if node.leader != self.replica.id else None
        return NotLeaderError(f"node {self.replica.id} does not lead", leader)

    def _reply(self, waiter: Waiter, outcome: Outcome) -> None:
        self._duties.append(Reply(waiter[0], waiter[1], outcome))

    def _finish(self, tx: _Tx, outcome: Outcome) -> None:
        """The transaction is over: every caller waiting on it gets `outcome`."""
        for waiter in tx.waiters:
            self._reply(waiter, outcome)
        tx.waiters = []
        if self._txs.get(tx.tx_id) is tx:
            del self._txs[tx.tx_id]
            if not tx.session and tx.status != _RECORDING and _final(outcome):
                self._remember(tx.tx_id, outcome)
        if tx.job is not None:
            self._jobs.pop(tx.job, None)
            tx.job = None
        for waiter, _ in tx.queue:
            self._reply(waiter, Failed(TransactionNotFoundError(f"transaction {tx.tx_id} ended")))
        tx.queue.clear()
        resolvers, tx.resolvers = tx.resolvers, []
        if not resolvers:
            return
        if isinstance(outcome, Done) and outcome.sequence_no is not None:
            for waiter in resolvers:
                self._reply(waiter, Done(tx.tx_id, sequence_no=outcome.sequence_no))
        elif self.replica.node.role is Role.LEADER and self._leader_ready:
            self._fence(tx.tx_id, resolvers)
        else:
            for waiter in resolvers:
                self._reply(waiter, Failed(self._not_leader()))

    def _remember(self, tx_id: str, outcome: Outcome) -> None:
        """Keep a run's final outcome, so that the same request resent (or delivered twice)
        is answered the same, with its value, and never runs again here."""
        self._recent[tx_id] = outcome
        if len(self._recent) > self.config.recent_outcomes:
            self._recent.popitem(last=False)

    def _dispatch(self, tx: _Tx, payload: bytes, state: bytes | None) -> None:
        if not tx.session:  # every attempt of a run is a new transaction, with its own 30 s
            tx.start_ms = self.now_ms
        self._job_ids += 1
        tx.job, tx.status = self._job_ids, _RUNNING
        self._jobs[self._job_ids] = tx
        deadline = tx.start_ms + self.config.transaction_timeout_ms
        job = Job(self._job_ids, tx.tx_id, tx.start_ms, deadline, payload, state)
        self._duties.append(Dispatch(job))

    def take_duties(self) -> list[Duty]:
        """What the host must do now. Transactions that became ready since the last call
        are prepared and proposed here, as one group commit: the host takes duties after
        the inputs at hand (a frame of requests, the results a worker sent together), so
        everything that arrived together commits together."""
        self._pump()
        duties, self._duties = self._duties, []
        return duties

    # ----------------------------------------------------------------- inputs
    def submit(self, client: int, request_id: int, request: Request, now_ms: int) -> None:
        """A client's request; exactly one Reply (or Serve) answers it, now or later."""
        self.now_ms = max(self.now_ms, now_ms)
        waiter = (client, request_id)
        if isinstance(request, Read) and not request.linearizable:
            self._duties.append(Serve(client, request_id))
            return
        if self.replica.node.role is not Role.LEADER:
            self._reply(waiter, Failed(self._not_leader()))
            return
        if not self._leader_ready:
            self._held.append((waiter, request))
            return
        self._accept(waiter, request)

    def _accept(self, waiter: Waiter, request: Request) -> None:
        if isinstance(request, Read):
            self._reads.append(waiter)
        elif isinstance(request, Run):
            self._accept_run(waiter, request)
        elif isinstance(request, Begin):
            self._begin(waiter)
        elif isinstance(request, Execute | Commit):
            self._session_request(waiter, request)
        elif isinstance(request, UpdateStream):
            index = self.replica.propose_stream(request.op)
            self._stream_ops[index] = (self.replica.node.term, [waiter])
        elif isinstance(request, Abort):
            tx = self._txs.get(request.transaction_id)
            if tx is not None and tx.session and tx.status in (_OPEN, _RUNNING):
                self._finish(tx, Failed(TransactionNotFoundError("the transaction was aborted")))
            self._reply(waiter, Done(request.transaction_id))
        else:
            self._resolve(waiter, request)

    def _known_outcome(self, tx_id: str) -> Outcome | None:
        """The outcome of a transaction id the log already decided, if any."""
        record = self.replica.failure(tx_id)
        if record is not None and record.kind == CRASHED:
            return Failed(TransactionCrashedError(record.message))
        if record is not None:
            return Failed(TransactionAbandonedError(record.message))
        seq = self.replica.engine.committed_seq(tx_id)
        if seq is not None:
            message = f"transaction {tx_id} is already in the journal (block {seq})"
            return Failed(TransactionCommittedError(message, tx_id, seq))
        return None

    def _accept_run(self, waiter: Waiter, request: Run) -> None:
        running = self._txs.get(request.transaction_id)
        if running is not None:
            if running.session:
                error = InvalidArgumentError(f"{request.transaction_id} is an open transaction")
                self._reply(waiter, Failed(error))
            elif running.status == _RECORDING and isinstance(running.recorded, Done):
                message = f"transaction {request.transaction_id} is being resolved as not committed"
                self._reply(waiter, Failed(TransactionAbandonedError(message)))
            else:
                running.waiters.append(waiter)
            return
        known = self._recent.get(request.transaction_id) or self._known_outcome(
            request.transaction_id
        )
        if known is not None:
            self._reply(waiter, known)
            return
        if len(self._txs) >= self.config.max_pending:
            self._reply(waiter, Failed(CapacityExceededError("too many transactions in flight")))
            return
        tx = _Tx(request.transaction_id, False, self.now_ms, request.payload, request.retry_limit)
        tx.waiters.append(waiter)
        self._txs[tx.tx_id] = tx
        self._dispatch(tx, tx.payload, None)

    def _begin(self, waiter: Waiter) -> None:
        if len(self._txs) >= self.config.max_pending:
            self._reply(waiter, Failed(CapacityExceededError("too many transactions in flight")))
            return
        tx = _Tx(self._ids.new_id(), True, self.now_ms, status=_OPEN, owner=waiter[0])
        self._txs[tx.tx_id] = tx
        self._reply(waiter, Done(tx.tx_id))

    def _session_request(self, waiter: Waiter, request: Execute | Commit) -> None:
        tx = self._txs.get(request.transaction_id)
        if tx is None or not tx.session:
            if isinstance(request, Commit):  # a commit resent after its reply was lost
                known = self._known_outcome(request.transaction_id)
                if isinstance(known, Failed) and isinstance(known.error, TransactionCommittedError):
                    seq = known.error.sequence_no
                    self._reply(waiter, Done(request.transaction_id, sequence_no=seq))
                    return
            error = TransactionNotFoundError(f"no open transaction {request.transaction_id}")
            self._reply(waiter, Failed(error))
            return
        if not self._first_delivery(tx, waiter):
            return  # the same request delivered twice: it runs once, and is answered once
        if tx.status != _OPEN:
            if isinstance(request, Commit) and tx.commit_digest is not None:
                tx.waiters.append(waiter)  # the same commit, resent: share its outcome
            else:
                tx.queue.append((waiter, request))
            return
        self._session_step(tx, waiter, request)

    @staticmethod
    def _first_delivery(tx: _Tx, waiter: Waiter) -> bool:
        """Whether this is the first time this (client, request id) reaches the transaction."""
        if waiter in tx.seen:
            return False
        tx.seen.add(waiter)
        return True

    def _session_step(self, tx: _Tx, waiter: Waiter, request: Execute | Commit) -> None:
        if self.now_ms - tx.start_ms > self.config.transaction_timeout_ms:
            tx.waiters.append(waiter)
            self._finish(tx, Failed(_expired(tx)))
            return
        tx.waiters = [waiter]
        if isinstance(request, Execute):
            self._dispatch(tx, request.payload, tx.state)
            return
        tx.commit_digest = request.commit_digest or b""
        tx.status = _READY
        self._ready.append(tx)

    def _resolve(self, waiter: Waiter, request: Resolve) -> None:
        """In flight here: its outcome answers. In the journal: its block. Otherwise it is
        fenced off: a RESOLVED record goes through the log (so no leader, now or later,
        commits it) and, once applied, the answer is "never committed" (sequence_no None)."""
        tx_id = request.transaction_id
        tx = self._txs.get(tx_id)
        if tx is not None and tx.session and tx.status == _OPEN:
            self._finish(tx, Failed(TransactionAbandonedError(f"transaction {tx_id} was resolved")))
        elif tx is not None and tx.status == _RECORDING and isinstance(tx.recorded, Done):
            tx.waiters.append(waiter)  # being fenced already
            return
        elif tx is not None:
            tx.resolvers.append(waiter)  # decided when that run ends (see _finish)
            return
        seq = self.replica.engine.committed_seq(tx_id)
        if seq is not None or self.replica.failure(tx_id) is not None:
            self._reply(waiter, Done(tx_id, sequence_no=seq))
            return
        self._fence(tx_id, [waiter])

    def _fence(self, tx_id: str, waiters: list[Waiter]) -> None:
        fence = _Tx(tx_id, False, self.now_ms, waiters=waiters)
        self._txs[tx_id] = fence
        message = f"transaction {tx_id} was resolved as never committed"
        self._record(fence, FailureRecord(tx_id, RESOLVED, message), Done(tx_id))

    def ran(self, job_id: int, result: JobResult, now_ms: int) -> None:
        """A worker finished (or died running) job `job_id`."""
        self.now_ms = max(self.now_ms, now_ms)
        tx = self._jobs.pop(job_id, None)
        if tx is None or tx.job != job_id:
            return  # the transaction ended meanwhile (this node stopped leading)
        tx.job = None
        if result.crashed and not result.expired:
            self._crashed(tx)
        elif result.expired:
            self._finish(tx, Failed(_expired(tx)))
        elif tx.session:
            if result.state is not None:
                tx.state = result.state
            outcome: Outcome = (
                Done(tx.tx_id, result.value)
                if result.error is None and result.user_error is None
                else Failed(result.error, result.user_error)
            )
            for waiter in tx.waiters:
                self._reply(waiter, outcome)
            tx.waiters, tx.status = [], _OPEN
            if tx.queue:
                waiter, request = tx.queue.popleft()
                self._session_step(tx, waiter, request)
        elif result.error is not None or result.user_error is not None:
            self._finish(tx, Failed(result.error, result.user_error))
        elif result.state is None:
            self._finish(tx, Failed(StrandError("the worker returned no transaction state")))
        else:
            tx.state, tx.value, tx.status = result.state, result.value, _READY
            self._ready.append(tx)

    def _crashed(self, tx: _Tx) -> None:
        self.stats["crashes"] += 1
        message = f"running transaction {tx.tx_id} crashed its worker process"
        outcome = Failed(TransactionCrashedError(message))
        if self.replica.node.role is not Role.LEADER:
            self._finish(tx, outcome)
            return
        self._record(tx, FailureRecord(tx.tx_id, CRASHED, message), outcome)

    def _record(self, tx: _Tx, record: FailureRecord, outcome: Outcome) -> None:
        index = self.replica.propose_failure(record)
        tx.status, tx.recorded = _RECORDING, outcome
        self._records[index] = (self.replica.node.term, tx)

    def tick(self, now_ms: int) -> None:
        """Time passes: conflicted transactions whose backoff ended run again; interactive
        transactions past their 30 s are dropped."""
        self.now_ms = max(self.now_ms, now_ms)
        limit = self.config.transaction_timeout_ms
        for tx in list(self._txs.values()):
            if tx.status == _BACKOFF and tx.until_ms <= self.now_ms:
                self._dispatch(tx, tx.payload, None)
            elif tx.session and tx.status == _OPEN and self.now_ms - tx.start_ms > limit:
                self._finish(tx, Failed(_expired(tx)))

    def next_due_ms(self) -> int | None:
        """When `tick` next has something to do (a backoff ending, an interactive transaction
        expiring), or None: the host need not call it before another input."""
        due: int | None = None
        limit = self.config.transaction_timeout_ms
        for tx in self._txs.values():
            at = None
            if tx.status == _BACKOFF:
                at = tx.until_ms
            elif tx.session and tx.status == _OPEN:
                at = tx.start_ms + limit + 1
            if at is not None and (due is None or at < due):
                due = at
        return due

    def client_gone(self, client: int) -> None:
        """A client disconnected: its interactive transactions end; runs go on (a resend
        with the same id finds them)."""
        for tx in list(self._txs.values()):
            if tx.session and tx.owner == client and tx.status == _OPEN:
                self._finish(tx, Failed(TransactionNotFoundError("the client went away")))
            tx.waiters = [w for w in tx.waiters if w[0] != client]
            tx.queue = deque(q for q in tx.queue if q[0][0] != client)

    def observe(self, out: ReplicaOutput) -> None:
        """What the replica's last `process_ready` applied, and its role and term."""
        for index, term in out.applied:
            stream_op = self._stream_ops.pop(index, None)
            if stream_op is not None:  # applied under our term: done; else lost, resend
                outcome: Outcome = Done() if stream_op[0] == term else Failed(self._not_leader())
                for waiter in stream_op[1]:
                    self._reply(waiter, outcome)
            batch = self._batches.pop(index, None)
            if batch is not None:
                self._decided(batch, committed=batch.term == term)
            record = self._records.pop(index, None)
            if record is not None:
                recorded_term, tx = record
                assert tx.recorded is not None
                if recorded_term == term or isinstance(tx.recorded, Failed):
                    self._finish(tx, tx.recorded)  # a crash fails its run either way
                else:  # the fence was lost: ask the leader
                    self._finish(tx, Failed(self._not_leader()))
        leading = out.role is Role.LEADER
        if not leading or out.term != self._term:
            self._step_down(leading)
        self._term, self._leading = out.term, leading
        if out.read_states:
            self._round_done(out.read_states[-1].request_id)
        if leading and self._leader_ready and self._held:
            held, self._held = self._held, []
            for waiter, request in held:
                self._accept(waiter, request)

    def _decided(self, batch: _Batch, *, committed: bool) -> None:
        if committed:
            self.stats["batches"] += 1
            self.stats["transactions"] += len(batch.transactions)
            for tx, seq in zip(batch.transactions, batch.sequence_nos, strict=True):
                self._finish(tx, Done(tx.tx_id, tx.value, seq, tx.commit_digest))
            return
        self.stats["lost"] += len(batch.transactions)
        leading = self.replica.node.role is Role.LEADER and self._leader_ready
        for tx in batch.transactions:  # void: nothing of it is in the journal, ever
            if tx.session:  # its statements ran on state that is gone: the client reruns it
                lost = f"transaction {tx.tx_id} was lost in a leader change; run it again"
                self._finish(tx, Failed(OccConflictError(lost)))
            elif leading:
                self._dispatch(tx, tx.payload, None)
            else:  # the caller resends it to the leader, with the same id
                self._finish(tx, Failed(self._not_leader()))

    def _step_down(self, leading: bool) -> None:
        """The term moved on or this node stopped leading: everything not yet proposed
        fails with NotLeaderError; proposals wait to be decided by what is applied."""
        del leading
        error = self._not_leader()
        for tx in list(self._txs.values()):
            if tx.status not in (_PROPOSED, _RECORDING):
                self._finish(tx, Failed(error))
        self._ready.clear()
        for waiter in self._reads:
            self._reply(waiter, Failed(error))
        self._reads, self._confirm = [], []
        if self._round is not None:
            for waiter in self._round[1]:
                self._reply(waiter, Failed(error))
            self._round = None
        for waiter, _ in self._held:
            self._reply(waiter, Failed(error))
        self._held = []

    # ----------------------------------------------------------------- the scheduler
    def _pump(self) -> None:
        """Prepare and propose what is ready; start a ReadIndex round for what waits on one."""
        if self.replica.node.role is not Role.LEADER or not self._leader_ready:
            return
        while self._ready and len(self._batches) < self.config.max_inflight_batches:
            self._prepare_batch()
        if self._round is None and (self._reads or self._confirm):
            self._round_ids += 1
            if self.replica.read_index(self._round_ids):
                self._round = (self._round_ids, self._reads, self._confirm)
                self._reads, self._confirm = [], []

    def _prepare_batch(self) -> None:
        count = min(len(self._ready), self.config.max_batch_transactions)
        taken = [self._ready.popleft() for _ in range(count)]
        txs: list[_Tx] = []
        decoded: list[Transaction] = []
        engine = self.replica.engine
        for tx in taken:
            try:
                state = self._transaction(tx)
            except InvalidArgumentError as exc:
                self._finish(tx, Failed(exc))
                continue
            if tx.session:
                digest = state.commit_digest()
                if tx.commit_digest and tx.commit_digest != digest:
                    message = "the commit digest does not match the statements the server ran"
                    self._finish(tx, Failed(InvalidArgumentError(message)))
                    continue
                tx.commit_digest = digest  # the server's, in the reply
            txs.append(tx)
            decoded.append(state)
        if not txs:
            return
        batch, outcomes = engine.prepare(decoded, self.now_ms)
        committing: list[_Tx] = []
        sequence_nos: list[int] = []
        for tx, outcome in zip(txs, outcomes, strict=True):
            if isinstance(outcome, CommitResult):
                if outcome.sequence_no is None:
                    tx.status = _CONFIRMING
                    self._confirm.append(tx)
                else:
                    committing.append(tx)
                    sequence_nos.append(outcome.sequence_no)
            elif isinstance(outcome, OccConflictError) and tx.attempts < tx.retry_limit:
                self.stats["conflicts"] += 1
                tx.attempts += 1
                backoff = self.config.backoff_base_ms * (2 ** (tx.attempts - 1))
                tx.status = _BACKOFF
                tx.until_ms = self.now_ms + int(self._rng.uniform(0, backoff))
                tx.state = None
            else:
                self._finish(tx, Failed(outcome))
        if batch.empty:
            return
        index = self.replica.propose_prepared(batch)
        for tx in committing:
            tx.status, tx.index = _PROPOSED, index
        self._batches[index] = _Batch(self.replica.node.term, committing, sequence_nos)

    def _transaction(self, tx: _Tx) -> Transaction:
        """The transaction a worker left (an interactive one that ran no statement: empty)."""
        engine = self.replica.engine
        if tx.state is None:
            return Transaction(engine, tx.tx_id, tx.start_ms, lambda: self.now_ms, self._ids.new_id)
        return decode_state(tx.state, engine, lambda: self.now_ms, self._ids.new_id)

    def _round_done(self, round_id: int) -> None:
        if self._round is None or round_id < self._round[0]:
            return
        _, reads, confirm = self._round
        self._round = None
        for waiter in reads:
            self._duties.append(Serve(*waiter))
        for tx in confirm:
            self._finish(tx, Done(tx.tx_id, tx.value, None, tx.commit_digest))


def _expired(tx: _Tx) -> TransactionExpiredError:
    # pyqldb recognises this wording (and then does not retry): keep it
    return TransactionExpiredError(f"Transaction {tx.tx_id} has expired")


def _final(outcome: Outcome) -> bool:
    """Whether an outcome is the run's own (not "ask another node" or "try later")."""
    return not isinstance(outcome, Failed) or not isinstance(
        outcome.error, NotLeaderError | CapacityExceededError
    )
