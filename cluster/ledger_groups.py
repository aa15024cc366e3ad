"""ClusterLedgers: many ledgers on one Ray cluster, each its own replicated group of nodes.

`strand serve --cluster CONFIG` hosts its ledgers here (the `LedgerSet` protocol of
cluster/ledgers.py). The base config (e.g. configs/local-3az.toml) describes the cluster's
AZs, hosts, secret and timing; it is a template and never runs as a cluster of its own.
Each ledger `name` becomes a group of one `StorageNode` per base node (so one per AZ) and a
digest actor, described by a `ClusterConfig` derived from the base (`group_config`):

- cluster name `<base>.<name>.<incarnation>` (ledger names hold no dots; the incarnation
  is random, chosen at creation), so actor names never collide across ledgers or with a
  deleted ledger of the same name, and each ledger has its own genesis and strand id;
- secret HMAC-SHA256(base secret, "strand-ledger-group:" + cluster name);
- data under `<data root>/ledgers/<name>/<node>` (the data root: the common parent of the
  base nodes' directories, or `data_root=`);
- ports: a block of 2 x nodes consecutive ports chosen at creation (peer ports first, then
  the client ports, `client_port_base`), free when chosen, distinct from every other
  ledger's block and above the base config's own ports, and persisted, so a restarted
  server finds the same group at the same addresses. Link overrides of the base (proxies)
  are not carried over: a group's nodes dial each other directly.

The metadata (QLDB's LedgerInfo fields plus the cluster name and port block) lives in
`<data root>/ledgers/ledgers.json`, rewritten atomically (temporary file, fsync, rename) on
every change, so it survives a restart of the server.

Lifecycle. `create` records the ledger as CREATING and returns at once; a background
thread starts its group and records it ACTIVE once the group has a leader (`describe`
shows it; `wait_active` waits for it). `open` returns the group's `LedgerCluster` handle,
cached: the first `open` after a server restart re-attaches to the group's actors when they
run (as `LedgerCluster.connect` does), starts the missing ones from their LevelDB directories
otherwise (all of them when Ray itself was restarted), and waits for a leader; an `open`
while the group is being created waits for that. `delete` is synchronous: it refuses while
deletion protection is on (`DeletionProtectedError`) or while the group is being created
(`LedgerInUseError`), records DELETING, stops the group's actors, removes its data and then
the record (a DELETING record found at start-up is finished off). `heal` starts again the
actors of a group that Ray lost for good (Ray restarts a crashed one by itself). Ray: the
Ray of this process if initialised, else `ray_address=` or RAY_ADDRESS, else a local Ray
with one resource per AZ (shut down by `shutdown`). Actors are detached by default, so they
outlive the server process on a Ray cluster that does.

A group's actors take a small share of their AZ's resource (`GROUP_NODE_RESOURCE`,
`GROUP_HELPER_RESOURCE`; a lone cluster's nodes take half of it), so a hundred ledgers fit
on an AZ resource of 1; their placement is what pins one node of each group per AZ.

Invariants: a ledger's record is written before its group's first actor starts and
removed only after its actors are stopped and its data removed; no two ledgers' groups share
a cluster name, a port or a data directory; a record with deletion protection on is never
deleted; one lock guards the records, the handle cache and the metadata file, one lock per
ledger serialises starting, opening and deleting its group, and no thread waits for a
ledger's lock while it holds the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.client import LedgerCluster, init_ray
from cluster.common import DIGEST, NAMESPACE, actor_name
from cluster.config import ClusterConfig, LinkConfig, load_config
from cluster.ledgers import (
    DEFAULT_MAX_LEDGERS,
    DeletionProtectedError,
    LedgerInfo,
    LedgerInUseError,
    LedgerNotFoundError,
    check_create,
    check_room,
    check_tag_keys,
    check_tags,
    check_update,
    merged_tags,
    write_metadata,
)
from core.errors import LedgerClosedError, UnavailableError

log = logging.getLogger("strand.ledger_groups")

GROUP_NODE_RESOURCE = 0.01  # of its AZ's resource, per ledger node
GROUP_HELPER_RESOURCE = 0.001  # the digest actor's
METADATA_FILE = "ledgers.json"
METADATA_FORMAT = 1
PORT_SEARCH_SPAN = 4000  # how far above the base config's ports to look for free blocks
READY_TIMEOUT_S = 60.0  # a group's wait for a leader
OPEN_WAIT_S = 90.0  # how long `open` waits for a group another thread is starting


@dataclasses.dataclass(slots=True)
class GroupRecord:
    """One ledger's persisted metadata: its LedgerInfo fields and where its group lives."""

    name: str
    state: str
    creation_time: datetime.datetime
    permissions_mode: str
    deletion_protection: bool
    kms_key: str | None
    tags: dict[str, str]
    cluster_name: str
    port_base: int  # peer ports port_base + i, client ports port_base + nodes + i

    def info(self) -> LedgerInfo:
        return LedgerInfo(
            name=self.name,
            state=self.state,
            creation_time=self.creation_time,
            permissions_mode=self.permissions_mode,
            deletion_protection=self.deletion_protection,
            kms_key=self.kms_key,
            tags=dict(self.tags),
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["creation_time"] = self.creation_time.isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupRecord:
        values = dict(data)
        values["creation_time"] = datetime.datetime.fromisoformat(values["creation_time"])
        values["tags"] = {str(k): str(v) for k, v in values.get("tags", {}).items()}
        return cls(**values)


def secret_for(base: ClusterConfig, cluster_name: str) -> bytes:
    """A group's cluster secret: its own, derived from the base secret and its name."""
    message = b"strand-ledger-group:" + cluster_name.encode()
    return hmac.new(base.secret, message, hashlib.sha256).digest()


def group_config(base: ClusterConfig, record: GroupRecord, data_root: Path) -> ClusterConfig:
    """The `ClusterConfig` of ledger `record`'s group (see the module docstring)."""
    count = len(base.nodes)
    nodes = tuple(
        dataclasses.replace(
            node,
            port=record.port_base + i,
            data_dir=os.fspath(data_root / "ledgers" / record.name / node.name),
        )
        for i, node in enumerate(base.nodes)
    )
    links = tuple(
        LinkConfig(src=src.name, dst=dst.name, host=dst.host, port=dst.port)
        for src in nodes
        for dst in nodes
        if src.name != dst.name
    )
    return dataclasses.replace(
        base,
        cluster_name=record.cluster_name,
        secret=secret_for(base, record.cluster_name),
        nodes=nodes,
        links=links,
        client_links=(),
        client_port_base=record.port_base + count,
    )


def default_data_root(base: ClusterConfig) -> Path:
    """The common parent of the base nodes' data directories."""
    dirs = [node.data_dir for node in base.nodes]
    root = os.path.commonpath(dirs)
    if root in dirs:  # one node, or one directory inside another: its parent
        root = os.path.dirname(root)
    return Path(root)


class GroupCluster(LedgerCluster):
    """A `LedgerCluster` whose actors take a ledger group's small share of their AZ."""

    node_resource = GROUP_NODE_RESOURCE
    helper_resource = GROUP_HELPER_RESOURCE


class ClusterLedgers:
    """The ledgers of `strand serve --cluster CONFIG` (see the module docstring)."""

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        *,
        data_root: str | os.PathLike[str] | None = None,
        ray_address: str | None = None,
        detached: bool = True,
        port_range: tuple[int, int] | None = None,
        max_ledgers: int = DEFAULT_MAX_LEDGERS,
    ) -> None:
        """`port_range` (first, last): where port blocks are chosen (default: the
        PORT_SEARCH_SPAN ports above the base config's highest port); `max_ledgers`: more
        are refused (LedgerLimitError)."""
        self._max_ledgers = max_ledgers
        self.base = load_config(config_path)
        self.data_root = Path(data_root) if data_root is not None else default_data_root(self.base)
        self.data_root = self.data_root.resolve()
        self._dir = self.data_root / "ledgers"
        self._metadata = self._dir / METADATA_FILE
        self._ray_address = ray_address
        self._detached = detached
        if port_range is None:
            highest = max(
                max(node.port for node in self.base.nodes),
                (self.base.client_port_base or 0) + len(self.base.nodes) - 1,
            )
            port_range = (highest + 1, min(highest + PORT_SEARCH_SPAN, 65535))
        self._port_range = port_range
        self._lock = threading.Lock()  # the records, the handles, the metadata file
        self._group_locks: dict[str, threading.Lock] = {}
        self._records: dict[str, GroupRecord] = self._load()
        self._handles: dict[str, LedgerCluster] = {}
        self._errors: dict[str, str] = {}  # the last failure to start a group
        self._owns_ray = False
        self._closed = False
        if any(r.state in ("CREATING", "DELETING") for r in self._records.values()):
            self._ensure_ray_here()
        for record in list(self._records.values()):  # a server that stopped mid-way
            if record.state == "CREATING":
                self._in_background(self._create_group, record.name)
            elif record.state == "DELETING":
                self._in_background(self._finish_delete, record.name)

    # ----------------------------------------------------------------- metadata
    def _load(self) -> dict[str, GroupRecord]:
        try:
            data = json.loads(self._metadata.read_text())
        except FileNotFoundError:
            return {}
        if data.get("format") != METADATA_FORMAT:
            raise ValueError(f"{self._metadata}: unknown format {data.get('format')!r}")
        records = [GroupRecord.from_json(item) for item in data["ledgers"]]
        return {record.name: record for record in records}

    def _save(self) -> None:
        """Write every record atomically (caller holds `_lock`)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": METADATA_FORMAT,
            "ledgers": [self._records[name].to_json() for name in sorted(self._records)],
        }
        write_metadata(self._metadata, data)

    def _record(self, name: str) -> GroupRecord:
        """The record of `name` (caller holds `_lock`); LedgerNotFoundError."""
        record = self._records.get(name)
        if record is None:
            raise LedgerNotFoundError(f"no ledger named {name!r}")
        return record

    def _group_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._group_locks.setdefault(name, threading.Lock())

    def config_of(self, name: str) -> ClusterConfig:
        """The derived `ClusterConfig` of ledger `name`'s group."""
        with self._lock:
            record = self._record(name)
        return group_config(self.base, record, self.data_root)

    # ----------------------------------------------------------------- the LedgerSet API
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    def create(
        self,
        name: str,
        *,
        permissions_mode: str,
        deletion_protection: bool = True,
        kms_key: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> LedgerInfo:
        """Record the ledger (state CREATING) and start its group in the background; it is
        ACTIVE once its group has a leader (see `wait_active`)."""
        key, checked_tags = check_create(name, permissions_mode, deletion_protection, kms_key, tags)
        with self._lock:
            self._check_open()
            check_room(self._records.keys(), name, self._max_ledgers)
            record = GroupRecord(
                name=name,
                state="CREATING",
                creation_time=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
                permissions_mode=permissions_mode,
                deletion_protection=deletion_protection,
                kms_key=key,
                tags=checked_tags,
                cluster_name=f"{self.base.cluster_name}.{name}.{secrets.token_hex(4)}",
                port_base=self._free_port_block(),
            )
            self._records[name] = record
            self._save()
            info = record.info()
        self._ensure_ray_here()
        self._in_background(self._create_group, name)
        return info

    def describe(self, name: str) -> LedgerInfo:
        with self._lock:
            return self._record(name).info()

    def wait_active(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> LedgerInfo:
        """Wait until ledger `name` is ACTIVE; UnavailableError after `timeout_s` (with the
        reason its group failed to start, if it did)."""
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.describe(name)
            if info.state == "ACTIVE":
                return info
            if time.monotonic() > deadline:
                with self._lock:
                    error = self._errors.get(name, "still starting")
                raise UnavailableError(f"ledger {name!r} is {info.state}: {error}")
            time.sleep(0.05)

    def update(
        self,
        name: str,
        *,
        deletion_protection: bool | None = None,
        permissions_mode: str | None = None,
        kms_key: str | None = None,
    ) -> LedgerInfo:
        changes = check_update(deletion_protection, permissions_mode, kms_key)
        with self._lock:
            self._check_open()
            record = self._record(name)
            if record.state == "DELETING":
                raise LedgerInUseError(f"ledger {name!r} is being deleted")
            for field_name, value in changes.items():
                setattr(record, field_name, value)
            self._save()
            return record.info()

    def tag(self, name: str, tags: dict[str, str]) -> None:
        checked = check_tags(tags)
        with self._lock:
            self._check_open()
            record = self._record(name)
            record.tags = merged_tags(record.tags, checked)
            self._save()

    def untag(self, name: str, keys: list[str]) -> None:
        check_tag_keys(keys)
        with self._lock:
            self._check_open()
            record = self._record(name)
            record.tags = {k: v for k, v in record.tags.items() if k not in set(keys)}
            self._save()

    def delete(self, name: str) -> None:
        """Stop the ledger's group and remove its data, then its record (synchronous)."""
        with self._lock:
            record = self._record(name)
            if record.deletion_protection:
                raise DeletionProtectedError(
                    f"ledger {name!r} has deletion protection on; turn it off first"
                )
        lock = self._group_lock(name)
        if not lock.acquire(blocking=False):
            raise LedgerInUseError(f"ledger {name!r} is being created, opened or deleted")
        try:
            with self._lock:
                record = self._record(name)
                if record.deletion_protection:  # turned on meanwhile
                    raise DeletionProtectedError(f"ledger {name!r} has deletion protection on")
                record.state = "DELETING"
                self._save()
            self._stop_and_remove(name)
        finally:
            lock.release()

    def open(self, name: str) -> LedgerCluster:
        """The ledger's `LedgerCluster` handle (cached): attaches to its group, or starts
        the group's missing actors, and waits for a leader; waits for a group being created.
        LedgerNotFoundError; LedgerInUseError while it is being deleted."""
        with self._lock:
            self._check_open()
            record = self._record(name)
            if record.state == "DELETING":
                raise LedgerInUseError(f"ledger {name!r} is being deleted")
            handle = self._handles.get(name)
        if handle is not None:
            return handle
        self._ensure_ray_here()
        lock = self._group_lock(name)
        if not lock.acquire(timeout=OPEN_WAIT_S):
            raise LedgerInUseError(f"ledger {name!r} is still being started")
        try:
            return self._attach(name)
        finally:
            lock.release()

    def heal(self, name: str) -> list[str]:
        """Start again, from their LevelDB directories, the actors of ledger `name`'s group
        that Ray no longer has (killed for good, or lost with their Ray node); the roles
        started, in order. Ray itself restarts an actor that merely crashed."""
        handle = self.open(name)
        with self._group_lock(name):
            return self._spawn_missing(handle)

    def close(self) -> None:
        """Close every handle's connections, and this set (LedgerClosedError from then on);
        the groups keep running, the data stays (and a Ray this object started ends with the
        process, or with `shutdown`)."""
        with self._lock:
            self._closed = True
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()

    def shutdown(self) -> None:
        """Stop every group's actors (their data stays), and Ray if this object started it."""
        with self._lock:
            self._closed = True
            records = list(self._records.values())
            handles, self._handles = dict(self._handles), {}
        for record in records:
            handle = handles.get(record.name)
            if handle is None and self._ray_ready():
                handle = self._bare_handle(record)
            if handle is not None:
                try:
                    handle.shutdown()
                except Exception:  # noqa: BLE001 - stop the others regardless
                    log.exception("stopping the group of ledger %s", record.name)
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> ClusterLedgers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- groups
    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosedError("the ledger set is shut down")

    def _in_background(self, fn: Callable[[str], None], name: str) -> None:
        thread = threading.Thread(target=fn, args=(name,), name=f"strand-group-{name}")
        thread.daemon = True
        thread.start()

    def _create_group(self, name: str) -> None:
        """Start a CREATING ledger's group and mark it ACTIVE (a background thread)."""
        with self._group_lock(name):
            try:
                self._attach(name)
            except LedgerNotFoundError:
                return
            except Exception as exc:  # noqa: BLE001 - reported by wait_active and open
                log.exception("starting the group of ledger %s", name)
                with self._lock:
                    self._errors[name] = f"{type(exc).__name__}: {exc}"

    def _attach(self, name: str) -> LedgerCluster:
        """The group's handle: cached, re-attached or started (caller holds its lock)."""
        with self._lock:
            record = self._record(name)
            handle = self._handles.get(name)
        if handle is not None:
            return handle
        config = group_config(self.base, record, self.data_root)
        self._ensure_ray()
        handle = self._start_or_attach(config)
        with self._lock:
            if self._closed or name not in self._records:
                handle.close()
                raise LedgerNotFoundError(f"no ledger named {name!r}")
            self._handles[name] = handle
            self._errors.pop(name, None)
            record = self._records[name]
            if record.state == "CREATING":
                record.state = "ACTIVE"
                self._save()
        return handle

    def _start_or_attach(self, config: ClusterConfig) -> LedgerCluster:
        present = self._present(config)
        lifetime = "detached" if self._detached else None
        if not present:
            return GroupCluster.start(config, detached=self._detached)
        handle = GroupCluster(config)
        handle._lifetime = lifetime
        try:
            self._spawn_missing(handle, present)
            handle.wait_ready(READY_TIMEOUT_S)
        except BaseException:
            handle.close()
            raise
        return handle

    @staticmethod
    def _present(config: ClusterConfig) -> set[str]:
        """The roles of the group whose actors Ray knows by name."""
        import ray

        present = set()
        for role in (*config.node_names, DIGEST):
            with contextlib.suppress(ValueError):
                ray.get_actor(actor_name(config.cluster_name, role), namespace=NAMESPACE)
                present.add(role)
        return present

    def _spawn_missing(self, handle: LedgerCluster, present: set[str] | None = None) -> list[str]:
        config = handle.config
        if present is None:
            present = self._present(config)
        started = []
        for role in (*config.node_names, DIGEST):
            if role in present:
                continue
            log.info("group %s: starting %s again", config.cluster_name, role)
            if role == DIGEST:
                handle._spawn_digest()
            else:
                handle._spawn_node(role)
            started.append(role)
        return started

    def _bare_handle(self, record: GroupRecord) -> LedgerCluster:
        """A handle that waits for nothing (to stop a group that may not answer)."""
        handle = GroupCluster(group_config(self.base, record, self.data_root))
        handle._lifetime = "detached" if self._detached else None
        return handle

    def _stop_and_remove(self, name: str) -> None:
        """Stop a DELETING ledger's actors, remove its data, then its record."""
        with self._lock:
            record = self._record(name)
            handle = self._handles.pop(name, None)
        self._ensure_ray()
        if handle is None:
            handle = self._bare_handle(record)
        handle.shutdown()
        shutil.rmtree(self._dir / name, ignore_errors=True)
        if (self._dir / name).exists():
            raise OSError(f"could not remove {self._dir / name}")
        with self._lock:
            self._records.pop(name, None)
            self._errors.pop(name, None)
            self._save()

    def _finish_delete(self, name: str) -> None:
        with self._group_lock(name):
            try:
                self._stop_and_remove(name)
            except LedgerNotFoundError:
                return
            except Exception:  # noqa: BLE001 - retried at the next start
                log.exception("finishing the deletion of ledger %s", name)

    # ----------------------------------------------------------------- Ray and ports
    def _ray_ready(self) -> bool:
        import ray

        return bool(ray.is_initialized())

    def _ensure_ray_here(self) -> None:
        """Initialise Ray on the caller's thread (not a background one: Ray sets its signal
        handlers on the main thread) when it is not yet; a failure is left for the
        background work to meet and report."""
        try:
            self._ensure_ray()
        except Exception:  # noqa: BLE001 - met again (and reported) by the group's start
            log.exception("cannot initialise Ray")

    def _ensure_ray(self) -> None:
        with self._lock:
            if init_ray(self.base, self._ray_address):
                self._owns_ray = True

    def _free_port_block(self) -> int:
        """The first block of 2 x nodes ports in the range that no ledger holds and that are
        free now on every node host (caller holds `_lock`)."""
        size = 2 * len(self.base.nodes)
        taken = {
            port
            for record in self._records.values()
            for port in range(record.port_base, record.port_base + size)
        }
        hosts = sorted({node.host for node in self.base.nodes})
        first, last = self._port_range
        start = first
        while start + size - 1 <= last:
            block = range(start, start + size)
            busy = next((p for p in block if p in taken or not _port_free(hosts, p)), None)
            if busy is None:
                return start
            start = busy + 1
        raise UnavailableError(f"no {size} consecutive free ports in {first}..{last}")


def _port_free(hosts: list[str], port: int) -> bool:
    for host in hosts:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
    return True
