"""core.raft scenarios: a small synchronous harness delivers messages by hand.

Each test builds nodes over MemoryLogStores, drives ticks and deliveries explicitly, and
asserts on roles, terms, logs and commit indexes, including the corner cases: a stale log
cannot win, pre-vote keeps a returning node from disrupting a leader, check-quorum makes an
isolated leader step down, a conflicting uncommitted suffix is replaced, ReadIndex waits for
a majority, and the host's `accept` hook can refuse entries.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from core.raft import (
    Append,
    Entry,
    HardState,
    MemoryLogStore,
    Message,
    RaftConfig,
    RaftNode,
    ReadState,
    Role,
)

CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=2, max_entries_per_message=4)


class Net:
    """Nodes plus an outbox; `deliver` carries messages until quiet, except cut links."""

    def __init__(self, names: Iterable[str] = ("a", "b", "c"), **node_kwargs: object) -> None:
        self.names = list(names)
        self.stores = {n: MemoryLogStore() for n in self.names}
        self.hard = {n: HardState(0, None, 0) for n in self.names}
        self.applied: dict[str, list[Entry]] = {n: [] for n in self.names}
        self.reads: dict[str, list[ReadState]] = {n: [] for n in self.names}
        self.nodes = {
            n: RaftNode(
                n,
                self.names,
                self.stores[n],
                config=CONFIG,
                rng=random.Random(i),
                **node_kwargs,  # type: ignore[arg-type]
            )
            for i, n in enumerate(self.names)
        }
        self.outbox: list[Message] = []
        self.cut: set[frozenset[str]] = set()
        self.down: set[str] = set()

    def drain(self, name: str) -> None:
        node = self.nodes[name]
        while node.has_ready():
            rd = node.ready()
            if rd.hard_state is not None:
                self.hard[name] = rd.hard_state
            self.stores[name].append(rd.entries)
            self.outbox.extend(rd.messages)
            self.applied[name].extend(rd.committed)
            self.reads[name].extend(rd.read_states)
            node.advance(rd)

    def deliver(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.outbox:
                return
            m = self.outbox.pop(0)
            if m.to in self.down or m.sender in self.down:
                continue
            if frozenset((m.sender, m.to)) in self.cut:
                continue
            self.nodes[m.to].step(m)
            self.drain(m.to)
        raise AssertionError("messages never stopped")

    def tick(self, name: str, times: int = 1) -> None:
        for _ in range(times):
            if name not in self.down:
                self.nodes[name].tick()
                self.drain(name)
            self.deliver()

    def tick_all(self, times: int) -> None:
        for _ in range(times):
            for name in self.names:
                if name not in self.down:
                    self.nodes[name].tick()
                    self.drain(name)
            self.deliver()

    def isolate(self, name: str) -> None:
        for other in self.names:
            if other != name:
                self.cut.add(frozenset((name, other)))

    def heal(self) -> None:
        self.cut.clear()

    def leader(self) -> str:
        leaders = [
            n for n in self.names if self.nodes[n].role is Role.LEADER and n not in self.down
        ]
        assert len(leaders) == 1, leaders
        return leaders[0]

    def elect(self, name: str) -> None:
        """Make `name` time out first and win."""
        self.tick(name, 2 * CONFIG.election_ticks)
        assert self.nodes[name].role is Role.LEADER

    def propose(self, name: str, data: bytes) -> int:
        index = self.nodes[name].propose(data)
        assert index is not None
        self.drain(name)
        self.deliver()
        return index


def test_one_leader_is_elected_and_replicates_to_all() -> None:
    net = Net()
    net.tick_all(40)
    leader = net.leader()
    term = net.nodes[leader].term
    index = net.propose(leader, b"x")
    net.tick_all(3)  # heartbeats carry the commit index
    for name in net.names:
        assert net.nodes[name].term == term
        assert [e.data for e in net.applied[name]] == [b"", b"x"]
        assert net.applied[name][-1].index == index


def test_a_node_with_a_stale_log_cannot_win() -> None:
    net = Net()
    net.elect("a")
    net.down.add("c")
    net.propose("a", b"only-on-a-and-b")
    net.down.discard("c")
    net.down.add("a")  # the leader dies; c (stale log) times out first
    net.tick("c", 2 * CONFIG.election_ticks)
    assert net.nodes["c"].role is not Role.LEADER
    net.tick("b", 2 * CONFIG.election_ticks)
    assert net.leader() == "b"
    assert b"only-on-a-and-b" in [e.data for e in net.stores["b"].log]


def test_pre_vote_keeps_a_returning_node_from_disrupting_the_leader() -> None:
    net = Net()
    net.elect("a")
    term = net.nodes["a"].term
    net.isolate("c")
    for _ in range(5 * CONFIG.election_ticks):  # c keeps timing out alone
        net.tick_all(1)
    assert net.nodes["c"].term == term  # pre-vote never won, so the term never moved
    net.heal()
    net.tick_all(CONFIG.election_ticks)
    assert net.leader() == "a"
    assert net.nodes["a"].term == term


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    net = Net()
    net.elect("a")
    net.isolate("a")
    net.tick("a", 2 * CONFIG.election_ticks)
    assert net.nodes["a"].role is Role.FOLLOWER
    assert net.nodes["a"].propose(b"late") is None


def test_a_stale_leader_steps_down_when_it_hears_a_higher_term() -> None:
    net = Net()
    net.elect("a")
    net.isolate("a")
    net.tick_all(3 * CONFIG.election_ticks)  # b or c takes over in a later term
    new = [n for n in ("b", "c") if net.nodes[n].role is Role.LEADER]
    assert len(new) == 1
    net.heal()
    net.tick_all(2 * CONFIG.heartbeat_ticks)
    assert net.nodes["a"].role is Role.FOLLOWER
    assert net.nodes["a"].term == net.nodes[new[0]].term


def test_a_conflicting_uncommitted_suffix_is_replaced() -> None:
    net = Net()
    net.elect("a")
    net.propose("a", b"committed")
    net.isolate("a")
    for i in range(3):  # accepted by a alone: never committed
        assert net.nodes["a"].propose(f"lost-{i}".encode()) is not None
        net.drain("a")
    net.outbox.clear()
    net.tick_all(3 * CONFIG.election_ticks)
    new = net.leader()
    assert new != "a"
    net.propose(new, b"winner")
    net.heal()
    net.tick_all(4 * CONFIG.heartbeat_ticks)
    logs = {n: [e.data for e in net.stores[n].log] for n in net.names}
    assert logs["a"] == logs[new]
    assert b"committed" in logs["a"]
    assert b"winner" in logs["a"]
    assert not any(d.startswith(b"lost") for d in logs["a"])


def test_a_follower_far_behind_catches_up_in_bounded_messages() -> None:
    net = Net()
    net.elect("a")
    net.down.add("c")
    for i in range(50):
        net.propose("a", f"v{i}".encode())
    net.down.discard("c")
    net.tick_all(6 * CONFIG.heartbeat_ticks)
    assert [e.data for e in net.stores["c"].log] == [e.data for e in net.stores["a"].log]
    assert all(
        len(m.entries) <= CONFIG.max_entries_per_message
        for m in net.outbox
        if isinstance(m, Append)
    )
    assert len(net.applied["c"]) == len(net.applied["a"])


def test_read_index_waits_for_a_majority() -> None:
    net = Net()
    net.elect("a")
    assert not net.nodes["b"].read_index(1)  # followers do not serve reads
    net.isolate("a")
    assert net.nodes["a"].read_index(7)
    net.drain("a")
    net.deliver()
    assert net.reads["a"] == []  # nobody confirmed the leadership
    net.heal()
    net.tick("a", CONFIG.heartbeat_ticks)
    assert net.nodes["a"].read_index(8)
    net.drain("a")
    net.deliver()
    assert [r.request_id for r in net.reads["a"]] == [7, 8]
    assert all(r.index == net.nodes["a"].commit for r in net.reads["a"])


def test_a_read_round_whose_messages_were_lost_completes_at_the_next_heartbeat() -> None:
    """Found by the reset-peer chaos experiment: the round's acks were lost, and nothing
    asked again, so every read and read-only transaction waited for ever."""
    net = Net()
    net.elect("a")
    net.isolate("a")
    assert net.nodes["a"].read_index(7)
    net.drain("a")
    net.deliver()  # the round's messages are lost
    net.heal()
    assert net.reads["a"] == []
    net.tick("a", CONFIG.heartbeat_ticks)  # no new read is asked for
    assert [r.request_id for r in net.reads["a"]] == [7]


def test_the_accept_hook_refuses_entries() -> None:
    refused: list[int] = []

    def accept(after: int, entries: object) -> bool:
        refused.append(after)
        return False

    net = Net()
    net.nodes["c"] = RaftNode(
        "c", net.names, net.stores["c"], config=CONFIG, rng=random.Random(9), accept=accept
    )
    net.elect("a")
    net.propose("a", b"x")
    assert refused
    assert net.stores["c"].log == []  # c took nothing
    assert net.nodes["a"].commit == net.nodes["a"].last_index()  # a + b are a majority


def test_the_host_must_advance_before_driving_again() -> None:
    net = Net()
    node = net.nodes["a"]
    node.tick()
    for _ in range(3 * CONFIG.election_ticks):
        node.tick()
        if node.has_ready():
            break
    node.ready()
    with pytest.raises(RuntimeError):
        node.tick()


def test_a_restarted_node_keeps_its_term_and_vote() -> None:
    net = Net()
    net.elect("a")
    net.propose("a", b"x")
    hs = net.hard["b"]
    restarted = RaftNode(
        "b", net.names, net.stores["b"], config=CONFIG, rng=random.Random(5), hard_state=hs
    )
    assert (restarted.term, restarted.vote) == (hs.term, hs.vote)
    assert restarted.last_index() == net.nodes["a"].last_index()
    with pytest.raises(ValueError, match="voters"):
        RaftNode("z", net.names, MemoryLogStore(), config=CONFIG, rng=random.Random(1))


def test_a_damaged_leader_steps_down_and_never_campaigns_until_repaired() -> None:
    net = Net()
    net.elect("a")
    net.propose("a", b"x")
    net.nodes["a"].set_promotable(False)
    assert net.nodes["a"].role is Role.FOLLOWER
    assert net.nodes["a"].propose(b"refused") is None
    for _ in range(10):  # a times out first every round, yet never stands
        net.tick("a", 2 * CONFIG.election_ticks)
        assert net.nodes["a"].role is Role.FOLLOWER
    net.tick_all(4 * CONFIG.election_ticks)
    leader = net.leader()
    assert leader != "a"
    index = net.propose(leader, b"y")
    net.tick_all(3)
    assert net.applied["a"][-1].index == index  # it still follows and votes
    net.nodes["a"].set_promotable(True)  # repaired
    other = next(n for n in net.names if n not in ("a", leader))
    net.nodes[other].set_promotable(False)  # so that only a can stand
    net.down.add(leader)
    net.tick_all(4 * CONFIG.election_ticks)
    assert net.leader() == "a"
