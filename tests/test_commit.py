"""core.commit.CommitMachine, sans-I/O: three replicas with their machines in one process.

The harness is the host's duty loop of cluster/node.py in miniature: after every input,
process_ready, deliver the messages (through core.wire), observe, carry out the duties;
jobs run at once through chaos.sim_clients.run_job (the real Transaction). Each test is a
scenario of the module docstring of core/commit.py.
"""

from __future__ import annotations

import random

import msgpack

from chaos.sim_clients import Accounts, payload, run_job
from core import wire
from core.commit import CommitConfig, CommitMachine
from core.engine import Genesis
from core.errors import (
    CapacityExceededError,
    InvalidArgumentError,
    NotLeaderError,
    TransactionAbandonedError,
    TransactionCommittedError,
    TransactionCrashedError,
    TransactionExpiredError,
    TransactionNotFoundError,
)
from core.ids import IdSource
from core.raft import RaftConfig
from core.replica import Replica
from core.requests import (
    Abort,
    Begin,
    Commit,
    Dispatch,
    Done,
    Execute,
    Failed,
    Job,
    JobResult,
    Outcome,
    Read,
    Reply,
    Resolve,
    Run,
    Serve,
)
from core.storage import MemoryStorage

GENESIS = Genesis("0" * 21 + "A", "0" * 21 + "B", 1_700_000_000_000)
NAMES = ("a", "b", "c")
T0 = 1_700_000_000_000


class Trio:
    def __init__(self, config: CommitConfig | None = None, *, run_jobs: bool = True) -> None:
        self.now_ms = T0
        self.replicas = {
            n: Replica(n, NAMES, MemoryStorage(), config=RaftConfig(election_ticks=10),
                       rng=random.Random(i), genesis=GENESIS, now_ms=T0)
            for i, n in enumerate(NAMES)
        }  # fmt: skip
        self.machines = {
            n: CommitMachine(r, rng=random.Random(10 + i), now_ms=T0, config=config)
            for i, (n, r) in enumerate(self.replicas.items())
        }
        self.replies: list[Reply] = []
        self.served: list[Serve] = []
        self.jobs: list[tuple[str, Job]] = []
        self.run_jobs = run_jobs
        self.accounts = Accounts([])
        self.ids = IdSource(random.Random(99).randbytes)
        self.blocked: set[tuple[str, str]] = set()  # (sender, to) links that drop everything
        self.drop_appends = False

    def clock(self) -> int:
        return self.now_ms

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            for name, replica in self.replicas.items():
                machine = self.machines[name]
                out = replica.process_ready()
                if out is not None:
                    moved = True
                    for m in out.messages:
                        dropped = self.drop_appends and type(m).__name__ == "Append"
                        if (m.sender, m.to) not in self.blocked and not dropped:
                            self.replicas[m.to].step(wire.decode(wire.encode(m)))
                    machine.observe(out)
                duties = machine.take_duties()  # may propose: the replica has work again
                moved = moved or replica.has_ready()
                for duty in duties:
                    moved = True
                    if isinstance(duty, Reply):
                        self.replies.append(duty)
                    elif isinstance(duty, Serve):
                        self.served.append(duty)
                    else:
                        assert isinstance(duty, Dispatch)
                        self.jobs.append((name, duty.job))
            if self.run_jobs:
                jobs, self.jobs = self.jobs, []
                for name, job in jobs:
                    moved = True
                    self.finish(name, job, self.execute(name, job))
            if not moved:
                return
        raise AssertionError("the trio did not settle")

    def execute(self, name: str, job: Job) -> JobResult:
        engine = self.replicas[name].engine
        return run_job(engine, job, self.accounts, self.clock, self.ids.new_id)

    def finish(self, name: str, job: Job, result: JobResult) -> None:
        self.machines[name].ran(job.job_id, result, self.now_ms)

    def tick(self, ms: int = 10) -> None:
        self.now_ms += ms
        for name, replica in self.replicas.items():
            replica.tick()
            self.machines[name].tick(self.now_ms)
        self.pump()

    def elect(self) -> str:
        for _ in range(100):
            self.tick()
            ready = [n for n, r in self.replicas.items() if r.ready_to_serve]
            if ready:
                return ready[0]
        raise AssertionError("no leader")

    def submit(self, name: str, request_id: int, request: object, client: int = 1) -> None:
        self.machines[name].submit(client, request_id, request, self.now_ms)  # type: ignore[arg-type]
        self.pump()

    def outcome(self, request_id: int, client: int = 1) -> Outcome:
        found = [
            r.outcome for r in self.replies if (r.client, r.request_id) == (client, request_id)
        ]
        assert len(found) == 1, found
        return found[0]

    def setup_accounts(self, leader: str) -> None:
        self.submit(leader, 1000, Run(self.ids.new_id(), payload("setup", 4, 100), 0))
        assert isinstance(self.outcome(1000), Done)
        tx = self.replicas[leader].engine.begin(self.now_ms, self.clock)
        found = sorted((d["name"], i) for i, d in tx.find("Account"))
        self.accounts.ids = [i for _, i in found]


def transfer(source: int = 0, target: int = 1, amount: int = 5) -> bytes:
    return payload("transfer", source, target, amount)


def test_a_follower_names_the_leader() -> None:
    trio = Trio()
    leader = trio.elect()
    follower = next(n for n in NAMES if n != leader)
    trio.submit(follower, 1, Run(trio.ids.new_id(), transfer(), 0))
    outcome = trio.outcome(1)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, NotLeaderError)
    assert outcome.error.leader == leader


def test_a_run_commits_and_its_resend_gets_the_same_outcome() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Run(tx_id, transfer(), 0))
    first = trio.outcome(1)
    assert isinstance(first, Done)
    assert first.sequence_no is not None
    assert msgpack.unpackb(first.value) is True  # the transfer moved the money
    trio.submit(leader, 2, Run(tx_id, transfer(), 0))  # a resend: answered, not run again
    assert trio.outcome(2) == first
    assert len(trio.jobs) == 0
    trio.tick()  # the followers learn the commit index
    for name in NAMES:
        assert trio.replicas[name].engine.committed_seq(tx_id) == first.sequence_no


def test_a_committed_id_is_refused_by_any_later_leader() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Run(tx_id, transfer(), 0))
    trio.machines[leader]._recent.clear()  # noqa: SLF001  (only the journal knows now)
    trio.submit(leader, 2, Run(tx_id, transfer(), 0))
    outcome = trio.outcome(2)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, TransactionCommittedError)
    assert outcome.error.sequence_no == trio.outcome(1).sequence_no  # type: ignore[union-attr]


def test_requests_wait_for_the_new_leaders_first_entry() -> None:
    trio = Trio()
    trio.drop_appends = True  # a leader gets elected, but its first entry commits nowhere
    for _ in range(100):
        trio.tick()
        leaders = [n for n, r in trio.replicas.items() if r.node.role.value == "leader"]
        if leaders:
            break
    [leader] = leaders
    assert not trio.replicas[leader].ready_to_serve
    trio.submit(leader, 7, Run(trio.ids.new_id(), payload("insert", 1), 0))
    assert not [r for r in trio.replies if r.request_id == 7]  # held
    trio.drop_appends = False
    trio.tick()
    trio.tick()
    assert isinstance(trio.outcome(7), Failed)  # it ran, once ready: there is no table yet
    assert "Event" in str(trio.outcome(7).error)  # type: ignore[union-attr]


def test_a_resend_joins_the_run_in_flight() -> None:
    trio = Trio(run_jobs=False)
    leader = trio.elect()
    trio.run_jobs = True
    trio.setup_accounts(leader)
    trio.run_jobs = False
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Run(tx_id, transfer(), 0))
    trio.submit(leader, 2, Run(tx_id, transfer(), 0), client=2)
    assert len(trio.jobs) == 1  # one run for both
    trio.run_jobs = True
    trio.pump()
    assert trio.outcome(1) == trio.outcome(2, client=2)
    assert isinstance(trio.outcome(1), Done)


def test_resolve_fences_off_a_transaction_that_never_ran_here() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Resolve(tx_id))
    answer = trio.outcome(1)
    assert isinstance(answer, Done)
    assert answer.sequence_no is None  # never committed, and now never will
    trio.tick()
    for name in NAMES:  # the record is replicated
        assert trio.replicas[name].failure(tx_id) is not None
    trio.submit(leader, 2, Run(tx_id, transfer(), 0))
    refused = trio.outcome(2)
    assert isinstance(refused, Failed)
    assert isinstance(refused.error, TransactionAbandonedError)


def test_resolve_waits_for_a_run_in_flight_and_reports_its_block() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.run_jobs = False
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Run(tx_id, transfer(), 0))
    trio.submit(leader, 2, Resolve(tx_id), client=2)
    assert not [r for r in trio.replies if r.request_id == 2]
    trio.run_jobs = True
    trio.pump()
    done = trio.outcome(1)
    assert isinstance(done, Done)
    assert trio.outcome(2, client=2) == Done(tx_id, sequence_no=done.sequence_no)


def test_a_crashed_job_is_recorded_and_refused_from_then_on() -> None:
    trio = Trio()
    leader = trio.elect()
    tx_id = trio.ids.new_id()
    trio.submit(leader, 1, Run(tx_id, payload("poison"), 3))
    crashed = trio.outcome(1)
    assert isinstance(crashed, Failed)
    assert isinstance(crashed.error, TransactionCrashedError)
    trio.tick()
    for name in NAMES:
        record = trio.replicas[name].failure(tx_id)
        assert record is not None
        assert record.kind == "crashed"
    trio.machines[leader]._recent.clear()  # noqa: SLF001
    trio.submit(leader, 2, Run(tx_id, transfer(), 0))
    assert isinstance(trio.outcome(2).error, TransactionCrashedError)  # type: ignore[union-attr]


def test_a_read_only_run_waits_for_a_readindex_round() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    seq = trio.replicas[leader].engine.durable_seq
    trio.submit(leader, 1, Run(trio.ids.new_id(), payload("read", 0, 1), 0))
    done = trio.outcome(1)
    assert isinstance(done, Done)
    assert done.sequence_no is None
    assert msgpack.unpackb(done.value) == [100, 100]
    assert trio.replicas[leader].engine.durable_seq == seq  # nothing was written


def test_a_conflict_runs_again_after_its_backoff() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.run_jobs = False
    trio.submit(leader, 1, Run(trio.ids.new_id(), transfer(0, 1), 2))
    [(name, stale_job)] = trio.jobs
    trio.jobs = []
    stale = trio.execute(name, stale_job)  # reads the accounts now ...
    trio.run_jobs = True
    trio.submit(leader, 2, Run(trio.ids.new_id(), transfer(0, 1), 0))  # ... which change
    assert isinstance(trio.outcome(2), Done)
    trio.finish(name, stale_job, stale)
    trio.pump()
    assert not [r for r in trio.replies if r.request_id == 1]  # backing off
    machine = trio.machines[leader]
    due = machine.next_due_ms()
    assert due is not None
    assert machine.stats["conflicts"] == 1
    trio.tick(max(1, due - trio.now_ms))
    assert isinstance(trio.outcome(1), Done)


def test_an_interactive_transaction_checks_qldbs_commit_digest() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.submit(leader, 1, Begin())
    tx_id = trio.outcome(1).transaction_id  # type: ignore[union-attr]
    assert tx_id is not None
    trio.submit(leader, 2, Execute(tx_id, payload("read", 0, 1)))
    assert isinstance(trio.outcome(2), Done)
    trio.submit(leader, 3, Execute(tx_id, transfer()))
    trio.submit(leader, 4, Commit(tx_id, b"\x00" * 32))
    wrong = trio.outcome(4)
    assert isinstance(wrong, Failed)
    assert isinstance(wrong.error, InvalidArgumentError)
    trio.submit(leader, 5, Begin())
    good = trio.outcome(5).transaction_id  # type: ignore[union-attr]
    assert good is not None
    trio.submit(leader, 6, Execute(good, transfer()))
    trio.submit(leader, 7, Commit(good, None))
    done = trio.outcome(7)
    assert isinstance(done, Done)
    assert done.sequence_no is not None
    assert done.commit_digest is not None
    trio.submit(leader, 8, Execute(good, transfer()))  # it ended
    assert isinstance(trio.outcome(8).error, TransactionNotFoundError)  # type: ignore[union-attr]
    trio.submit(leader, 9, Abort(good))
    assert isinstance(trio.outcome(9), Done)


def test_an_interactive_transaction_expires() -> None:
    trio = Trio(CommitConfig(transaction_timeout_ms=1_000))
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.submit(leader, 1, Begin())
    tx_id = trio.outcome(1).transaction_id  # type: ignore[union-attr]
    assert tx_id is not None
    trio.tick(1_100)
    trio.submit(leader, 2, Execute(tx_id, transfer()))
    assert isinstance(trio.outcome(2).error, TransactionNotFoundError)  # type: ignore[union-attr]
    trio.submit(leader, 3, Begin())
    other = trio.outcome(3).transaction_id  # type: ignore[union-attr]
    trio.now_ms += 1_100
    trio.submit(leader, 4, Execute(other, transfer()))  # type: ignore[arg-type]
    expired = trio.outcome(4)
    assert isinstance(expired.error, TransactionExpiredError)  # type: ignore[union-attr]
    assert "has expired" in str(expired.error)  # type: ignore[union-attr]


def test_too_many_transactions_in_flight_are_refused() -> None:
    trio = Trio(CommitConfig(max_pending=2), run_jobs=False)
    leader = trio.elect()
    for request_id in (1, 2, 3):
        trio.submit(leader, request_id, Run(trio.ids.new_id(), transfer(), 0))
    refused = trio.outcome(3)
    assert isinstance(refused, Failed)
    assert isinstance(refused.error, CapacityExceededError)


def test_a_linearizable_read_is_served_after_a_readindex_round() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.submit(leader, 1, Read(True))
    assert [(s.client, s.request_id) for s in trio.served] == [(1, 1)]
    follower = next(n for n in NAMES if n != leader)
    trio.submit(follower, 2, Read(False))  # stale: served at once, anywhere
    trio.submit(follower, 3, Read(True))
    assert (1, 2) in [(s.client, s.request_id) for s in trio.served]
    assert isinstance(trio.outcome(3).error, NotLeaderError)  # type: ignore[union-attr]


def test_a_deposed_leader_fails_what_it_had_not_proposed() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.run_jobs = False
    trio.submit(leader, 1, Run(trio.ids.new_id(), transfer(), 0))
    others = [n for n in NAMES if n != leader]
    trio.blocked = {(leader, n) for n in others} | {(n, leader) for n in others}
    for _ in range(100):  # the others elect one of them
        trio.tick()
        if any(trio.replicas[n].ready_to_serve for n in others):
            break
    trio.blocked = set()
    trio.tick()  # the old leader hears of the new term
    outcome = trio.outcome(1)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, NotLeaderError)
    assert outcome.error.leader in others
