"""Many ledgers on one Ray cluster (cluster/ledger_groups.py): each its own replicated group.

The Ray test runs two ledgers' groups (three nodes and a digest actor each) on the session's
Ray, shows their journals, digests and strand ids are independent, that a node lost by one
leaves the other alone, deletion protection, deletion, and a restarted server (a fresh
`ClusterLedgers` on the same config) re-attaching to the running group and, once the
groups' actors are gone, starting them again from their LevelDB directories.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.config import load_config
from cluster.ledger_groups import ClusterLedgers, GroupRecord, group_config
from cluster.ledgers import (
    DeletionProtectedError,
    InvalidLedgerParameterError,
    LedgerExistsError,
    LedgerLimitError,
    LedgerNotFoundError,
)
from core import verification
from core.errors import LedgerClosedError
from core.transaction import Transaction
from tests.conftest import private_cluster_config, wait_for

CLUSTER = "strand-groups"
PORT_SHIFT = 1200


@pytest.fixture
def base_config(tmp_path: Path) -> Path:
    return private_cluster_config(tmp_path, CLUSTER, PORT_SHIFT)


def _group_actors() -> list[str]:
    import ray

    return [name for name in ray.util.list_named_actors() if name.startswith(f"{CLUSTER}.")]


@pytest.fixture
def cleanup(ray_runtime: None, base_config: Path) -> Iterator[None]:
    """Whatever happens, stop every group the test started (its data is in tmp_path)."""
    yield
    ClusterLedgers(base_config).shutdown()
    assert _group_actors() == []


def test_groups_are_derived_without_collisions(base_config: Path, tmp_path: Path) -> None:
    """No Ray: the derived configs, the port blocks, the metadata file, parameter checks."""
    ledgers = ClusterLedgers(base_config)
    base = load_config(base_config)
    assert ledgers.data_root == tmp_path.resolve()
    records = []
    for name in ("one", "two"):  # records only: groups are started by a background thread
        with ledgers._lock:
            ledgers._records[name] = _record(ledgers, name)
            ledgers._save()
        records.append(ledgers._records[name])
    one, two = (group_config(base, r, ledgers.data_root) for r in records)
    ports = [
        port
        for cfg in (base, one, two)
        for node in cfg.nodes
        for port in (node.port, cfg.client_port(node.name))
    ]
    assert len(ports) == len(set(ports)) == 18
    assert one.cluster_name != two.cluster_name
    assert one.secret != two.secret != base.secret
    assert one.nodes[0].data_dir == str(tmp_path.resolve() / "ledgers" / "one" / "a")
    assert [n.az for n in one.nodes] == [n.az for n in base.nodes]
    assert one.peer_addresses("a")["b"] == ("127.0.0.1", one.nodes[1].port)
    saved = json.loads((tmp_path / "ledgers" / "ledgers.json").read_text())
    assert [r["name"] for r in saved["ledgers"]] == ["one", "two"]
    again = ClusterLedgers(base_config)  # the metadata survives a restart
    assert again.names() == ["one", "two"]
    assert again.config_of("one") == one
    for bad in ("a--b", "123", "-a", "a" * 33, "a_b"):
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create(bad, permissions_mode="STANDARD")
    with pytest.raises(InvalidLedgerParameterError):
        ledgers.create("ok", permissions_mode="SOME")
    with pytest.raises(InvalidLedgerParameterError):
        ledgers.create("ok", permissions_mode="STANDARD", tags={"aws:x": "y"})
    with pytest.raises(LedgerExistsError):
        ledgers.create("one", permissions_mode="STANDARD")
    ledgers.tag("one", {"team": "cars", "env": "test"})
    ledgers.untag("one", ["env"])
    info = ledgers.update("one", deletion_protection=False, kms_key="AWS_OWNED_KMS_KEY")
    assert (info.tags, info.deletion_protection, info.kms_key) == ({"team": "cars"}, False, None)
    assert ClusterLedgers(base_config).describe("one") == info
    with pytest.raises(LedgerNotFoundError):
        ledgers.describe("three")
    with pytest.raises(LedgerLimitError):
        ClusterLedgers(base_config, max_ledgers=2).create("three", permissions_mode="STANDARD")
    ledgers.close()
    with pytest.raises(LedgerClosedError):
        ledgers.update("one", deletion_protection=True)


def _record(ledgers: ClusterLedgers, name: str) -> GroupRecord:
    return GroupRecord(
        name=name, state="ACTIVE", creation_time=datetime.datetime.now(datetime.UTC),
        permissions_mode="STANDARD", deletion_protection=True, kms_key=None, tags={},
        cluster_name=f"{CLUSTER}.{name}.test", port_base=ledgers._free_port_block(),
    )  # fmt: skip


def _setup_cars(tx: Transaction) -> str:
    tx.create_table("Vehicle")
    return tx.insert("Vehicle", {"VIN": "1N4AL11D75C109151", "Year": 2011})


def _setup_bank(tx: Transaction) -> list[str]:
    tx.create_table("Account")
    return [tx.insert("Account", {"id": i, "balance": 100}) for i in range(3)]


@pytest.mark.slow  # CI time: run with -m slow
def test_two_ledgers_are_independent_groups(
    cleanup: None, base_config: Path, tmp_path: Path
) -> None:
    ledgers = ClusterLedgers(base_config)
    created = ledgers.create("cars", permissions_mode="STANDARD", tags={"team": "a"})
    assert created.state == "CREATING"
    ledgers.create("bank", permissions_mode="ALLOW_ALL", deletion_protection=False)
    assert ledgers.wait_active("cars").tags == {"team": "a"}
    assert ledgers.wait_active("bank").state == "ACTIVE"
    assert ledgers.names() == ["bank", "cars"]

    cars, bank = ledgers.open("cars"), ledgers.open("bank")
    assert ledgers.open("cars") is cars  # cached
    car_id = cars.execute_lambda(_setup_cars)
    account_ids = bank.execute_lambda(_setup_bank)
    assert cars.list_tables() == ["Vehicle"]
    assert [r["data"]["Year"] for r in cars.history("Vehicle", car_id)] == [2011]
    assert bank.list_tables() == ["Account"]
    car_digest = cars.get_digest()
    bank_digest = bank.get_digest()
    car_strand = car_digest["digestTipAddress"]["strandId"]
    assert car_strand != bank_digest["digestTipAddress"]["strandId"]
    assert car_digest["digest"] != bank_digest["digest"]
    for account_id in account_ids:  # bank's journal grows, cars' does not move

        def empty(tx: Transaction, account_id: str = account_id) -> None:
            tx.update("Account", account_id, {"balance": 0})

        bank.execute_lambda(empty)
    assert cars.get_digest() == car_digest
    later = bank.get_digest()
    grown = later["digestTipAddress"]["sequenceNo"] - bank_digest["digestTipAddress"]["sequenceNo"]
    assert grown == 3
    history = bank.history("Account", account_ids[0])
    assert [r["data"]["balance"] for r in history] == [100, 0]
    got = bank.get_revision(history[-1]["blockAddress"], account_ids[0])
    assert verification.verify_revision(got["revision"], got["proof"], later["digest"])
    assert bank.audit("get_digest")["digest"] == later["digest"]  # its own digest actor
    assert cars.audit("get_digest")["digest"] == car_digest["digest"]

    # One group loses a node: the other does not notice.
    cars.kill("b")
    bank.execute_lambda(lambda tx: tx.insert("Account", {"id": 9, "balance": 5}))
    assert len(bank.node_digests()) == 3
    assert cars.execute_lambda(lambda tx: tx.find("Vehicle", VIN="1N4AL11D75C109151"))
    wait_for(lambda: ledgers.heal("cars") == ["b"], 20, "the killed node's name to be free")
    wait_for(lambda: len(cars.node_digests()) == 3, 20, "the node to be back")

    # Deletion protection, then deletion: the data and the actors go, the name is free.
    with pytest.raises(DeletionProtectedError):
        ledgers.delete("cars")
    assert ledgers.names() == ["bank", "cars"]
    ledgers.update("cars", deletion_protection=False)
    ledgers.delete("cars")
    assert ledgers.names() == ["bank"]
    assert not (tmp_path / "ledgers" / "cars").exists()
    assert (tmp_path / "ledgers" / "bank" / "a").is_dir()
    assert not any(".cars." in name for name in _group_actors())
    with pytest.raises(LedgerNotFoundError):
        ledgers.open("cars")
    bank_pids = {s["node"]: s["pid"] for s in bank.nodes()}
    digest = bank.get_digest()

    # A restarted server re-attaches to the running group.
    ledgers.close()
    restarted = ClusterLedgers(base_config)
    assert restarted.names() == ["bank"]
    assert restarted.describe("bank").permissions_mode == "ALLOW_ALL"
    again = restarted.open("bank")
    assert {s["node"]: s["pid"] for s in again.nodes()} == bank_pids
    assert again.get_digest() == digest
    assert again.history("Account", account_ids[0])[-1]["data"]["balance"] == 0

    # Its actors gone (Ray restarted, say): the next server starts them from their data.
    restarted.shutdown()
    assert _group_actors() == []
    third = ClusterLedgers(base_config)
    revived = third.open("bank")
    assert revived.get_digest() == digest
    assert len(revived.execute_lambda(lambda tx: tx.find("Account"))) == 4
    assert car_strand not in {revived.get_digest()["digestTipAddress"]["strandId"]}
