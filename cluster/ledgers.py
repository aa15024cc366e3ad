"""Many ledgers behind one server: the set of ledgers `strand serve` hosts, by name.

A `LedgerSet` creates, opens, describes, updates and deletes named ledgers, and keeps each
ledger's control-plane metadata (QLDB's: state, creation time, permissions mode, deletion
protection, KMS key, tags). Two implementations share this protocol:

- `EmbeddedLedgers` (this module): one embedded `core.ledger.Ledger` directory per ledger
  under a root directory (`strand serve --data DIR`);
- `ClusterLedgers` (cluster/ledger_groups.py): each ledger its own replicated group of node
  actors, one per AZ, on the same Ray cluster (`strand serve --cluster CONFIG`).

What `open(name)` returns has the API the embedded `Ledger` and the `LedgerCluster` client
share (`begin_transaction`, `execute_lambda`, `get_digest`, `get_block`, `get_revision`,
`history`, ...), so the gateway serves both the same way.

Invariants: a ledger's name is unique in its set and matches QLDB's rule (1..32 characters,
letters, digits and hyphens, not all digits, no double hyphen, not starting or ending with a
hyphen); a ledger with deletion protection on is never deleted; a deleted ledger's data is
gone and its name may be used again; metadata survives a restart of the server.
`EmbeddedLedgers` keeps its metadata in `root/ledgers.json`, replaced atomically on every
change by `write_metadata` (which `ClusterLedgers` uses for its own file too; see the class
for crash safety). The `check_*` functions are the model's input rules, shared by both
implementations and the gateway; `merged_tags` is the per-ledger tag limit.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cluster.files import fsync_dir, write_atomically
from core.errors import CorruptLedgerError, LedgerClosedError, StrandError
from core.ledger import Ledger

LEDGER_NAME = re.compile(r"(?!^.*--)(?!^[0-9]+$)(?!^-)(?!.*-$)^[A-Za-z0-9-]{1,32}$")
PERMISSIONS_MODES = ("ALLOW_ALL", "STANDARD")
STATES = ("CREATING", "ACTIVE", "DELETING", "DELETED")


class LedgerNotFoundError(StrandError):
    """No ledger of that name (QLDB: ResourceNotFoundException, 404)."""


class LedgerExistsError(StrandError):
    """A ledger of that name already exists (QLDB: ResourceAlreadyExistsException, 409)."""


class LedgerInUseError(StrandError):
    """The ledger cannot be changed now, e.g. it is still being created (ResourceInUse, 409)."""


class DeletionProtectedError(StrandError):
    """Deletion protection is on (QLDB: ResourcePreconditionNotMetException, 412)."""


class InvalidLedgerParameterError(StrandError):
    """A bad name, permissions mode or tag (QLDB: InvalidParameterException, 400)."""


class LedgerLimitError(StrandError):
    """The server holds as many ledgers as it may (QLDB: LimitExceededException, 400)."""


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """A ledger's control-plane description (QLDB's DescribeLedger fields)."""

    name: str
    state: str
    creation_time: datetime.datetime
    permissions_mode: str = "STANDARD"
    deletion_protection: bool = True
    kms_key: str | None = None  # None: AWS_OWNED_KMS_KEY
    tags: dict[str, str] = field(default_factory=dict)


class LedgerSet(Protocol):
    """The ledgers one server hosts (see the module docstring)."""

    def names(self) -> list[str]:
        """Every ledger's name, sorted."""
        ...

    def create(
        self,
        name: str,
        *,
        permissions_mode: str,
        deletion_protection: bool = True,
        kms_key: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> LedgerInfo:
        """Create a ledger; LedgerExistsError or InvalidLedgerParameterError."""
        ...

    def describe(self, name: str) -> LedgerInfo:
        """LedgerNotFoundError when there is none."""
        ...

    def update(
        self,
        name: str,
        *,
        deletion_protection: bool | None = None,
        permissions_mode: str | None = None,
        kms_key: str | None = None,
    ) -> LedgerInfo: ...

    def tag(self, name: str, tags: dict[str, str]) -> None: ...

    def untag(self, name: str, keys: list[str]) -> None: ...

    def delete(self, name: str) -> None:
        """DeletionProtectedError while protection is on; the data is removed."""
        ...

    def open(self, name: str) -> Any:
        """The ledger's handle (Ledger or LedgerCluster API); LedgerNotFoundError."""
        ...

    def close(self) -> None:
        """Close every open handle (the data stays)."""
        ...


# ------------------------------------------------------------------ validation (shared)
TAG_KEY_MAX_CHARS = 128
TAG_VALUE_MAX_CHARS = 256
MAX_TAGS_PER_REQUEST = 200  # the model's Tags map and TagKeyList
MAX_TAGS_PER_LEDGER = 50  # AWS's tagging quota per resource
KMS_KEY_MAX_CHARS = 1600
AWS_OWNED_KMS_KEY = "AWS_OWNED_KMS_KEY"
DEFAULT_MAX_LEDGERS = 1000


def check_name(name: object) -> str:
    """`name` if it is a valid ledger name, else InvalidLedgerParameterError."""
    if not isinstance(name, str) or not LEDGER_NAME.match(name):
        raise InvalidLedgerParameterError(
            f"invalid ledger name {name!r}: 1 to 32 letters, digits and hyphens, not all "
            "digits, no double hyphen, not starting or ending with a hyphen"
        )
    return name


def check_permissions_mode(mode: object) -> str:
    if mode not in PERMISSIONS_MODES:
        raise InvalidLedgerParameterError(
            f"invalid permissions mode {mode!r}: one of {', '.join(PERMISSIONS_MODES)}"
        )
    assert isinstance(mode, str)
    return mode


def check_kms_key(key: object) -> str | None:
    """None for AWS's own key (None or "AWS_OWNED_KMS_KEY"), else the key as given."""
    if key is None or key == AWS_OWNED_KMS_KEY:
        return None
    if not isinstance(key, str) or not key or len(key) > KMS_KEY_MAX_CHARS:
        raise InvalidLedgerParameterError(
            f"invalid KMS key: a string of 1 to {KMS_KEY_MAX_CHARS} characters"
        )
    return key


def check_tag_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX_CHARS:
        raise InvalidLedgerParameterError(
            f"invalid tag key {key!r}: a string of 1 to {TAG_KEY_MAX_CHARS} characters"
        )
    if key.lower().startswith("aws:"):
        raise InvalidLedgerParameterError(f"tag key {key!r}: the prefix 'aws:' is reserved")
    return key


def check_tags(tags: object) -> dict[str, str]:
    """A copy of `tags` if every key and value is valid and there are not too many."""
    if not isinstance(tags, dict):
        raise InvalidLedgerParameterError("tags must be a map of strings to strings")
    if len(tags) > MAX_TAGS_PER_REQUEST:
        raise InvalidLedgerParameterError(
            f"{len(tags)} tags in one request; at most {MAX_TAGS_PER_REQUEST}"
        )
    for key, value in tags.items():
        check_tag_key(key)
        if not isinstance(value, str) or len(value) > TAG_VALUE_MAX_CHARS:
            raise InvalidLedgerParameterError(
                f"invalid value for tag {key!r}: a string of at most "
                f"{TAG_VALUE_MAX_CHARS} characters"
            )
    return dict(tags)


def check_tag_keys(keys: object) -> list[str]:
    """`keys` if it is a list of valid tag keys (UntagResource's), not too many of them."""
    if not isinstance(keys, list):
        raise InvalidLedgerParameterError(
            f"tag keys: a list of at most {MAX_TAGS_PER_REQUEST} keys"
        )
    if len(keys) > MAX_TAGS_PER_REQUEST:
        raise InvalidLedgerParameterError(f"at most {MAX_TAGS_PER_REQUEST} tag keys")
    for key in keys:
        if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX_CHARS:
            raise InvalidLedgerParameterError(
                f"tag keys are 1 to {TAG_KEY_MAX_CHARS} characters, got {key!r}"
            )
    return keys


def check_deletion_protection(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidLedgerParameterError("deletion protection must be true or false")
    return value


def merged_tags(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """A ledger's tags with `new` added (or replaced); not more than a ledger may hold."""
    merged = {**old, **new}
    if len(merged) > MAX_TAGS_PER_LEDGER:
        raise InvalidLedgerParameterError(
            f"a ledger has at most {MAX_TAGS_PER_LEDGER} tags; this would make {len(merged)}"
        )
    return merged


def check_create(
    name: object,
    permissions_mode: object,
    deletion_protection: object,
    kms_key: object,
    tags: object,
) -> tuple[str | None, dict[str, str]]:
    """Check `LedgerSet.create`'s arguments; the KMS key to store (None: AWS's own) and a
    copy of the tags (None: none)."""
    check_name(name)
    check_permissions_mode(permissions_mode)
    check_deletion_protection(deletion_protection)
    key = check_kms_key(kms_key)
    return key, merged_tags({}, check_tags(tags if tags is not None else {}))


def check_update(
    deletion_protection: object, permissions_mode: object, kms_key: object
) -> dict[str, Any]:
    """Check `LedgerSet.update`'s arguments; the changed `LedgerInfo` fields (an argument
    None changes nothing) and their new values."""
    changes: dict[str, Any] = {}
    if deletion_protection is not None:
        changes["deletion_protection"] = check_deletion_protection(deletion_protection)
    if permissions_mode is not None:
        changes["permissions_mode"] = check_permissions_mode(permissions_mode)
    if kms_key is not None:
        changes["kms_key"] = check_kms_key(kms_key)
    return changes


def check_room(names: Collection[str], name: str, max_ledgers: int) -> None:
    """A new ledger `name` next to `names`: LedgerExistsError, or LedgerLimitError when the
    set already holds `max_ledgers`."""
    if name in names:
        raise LedgerExistsError(f"a ledger named {name!r} already exists")
    if len(names) >= max_ledgers:
        raise LedgerLimitError(f"this server holds at most {max_ledgers} ledgers; delete one first")


# ------------------------------------------------------------------ metadata files (shared)
def write_metadata(path: Path, document: Any) -> None:
    """Replace the metadata file `path` with `document` as JSON, atomically
    (`cluster.files.write_atomically`: a crash leaves the old version or the new one)."""
    write_atomically(path, json.dumps(document, indent=1, sort_keys=True).encode("utf-8"))


# ------------------------------------------------------------------ EmbeddedLedgers
METADATA_FILE = "ledgers.json"  # not a valid ledger name (a dot), so never a ledger's directory
_METADATA_FORMAT = "strand-ledgers-1"
_TRASH_PREFIX = ".deleting-"  # a directory being removed (a leading dot: never a ledger name)


def _info_to_json(info: LedgerInfo) -> dict[str, Any]:
    return {
        "state": info.state,
        "creation_time_us": _epoch_us(info.creation_time),
        "permissions_mode": info.permissions_mode,
        "deletion_protection": info.deletion_protection,
        "kms_key": info.kms_key,
        "tags": dict(info.tags),
    }


def _epoch_us(moment: datetime.datetime) -> int:
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return delta // datetime.timedelta(microseconds=1)


def _info_from_json(name: str, raw: dict[str, Any]) -> LedgerInfo:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return LedgerInfo(
        name=name,
        state=raw["state"],
        creation_time=epoch + datetime.timedelta(microseconds=int(raw["creation_time_us"])),
        permissions_mode=raw["permissions_mode"],
        deletion_protection=bool(raw["deletion_protection"]),
        kms_key=raw["kms_key"],
        tags=dict(raw["tags"]),
    )


class EmbeddedLedgers:
    """Ledgers as embedded `core.ledger.Ledger` directories under one root directory.

    `root/<name>/` is ledger `name`'s LevelDB; `root/ledgers.json` holds every ledger's
    metadata and is replaced atomically (temp file, fsync, rename, fsync of the directory)
    on every change, so a crash leaves the old or the new version, never a mix.

    Crash safety of the two multi-step changes:
    - create writes the metadata as CREATING, then opens (creates) the directory, then
      writes ACTIVE; a ledger found CREATING at start-up is finished the same way;
    - delete renames the directory to `root/.deleting-<name>-<n>` (atomic), writes the
      metadata without the ledger, then removes the renamed directory; leftovers are
      removed at start-up.
    A directory under root that the metadata does not name is left alone, and its name
    cannot be used for a new ledger (LedgerInUseError) until an operator moves it away.

    Thread-safe: one lock guards the metadata and the cache of open handles; `open` opens
    each ledger once and returns the same `Ledger` to every caller until delete or close.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_ledgers: int = DEFAULT_MAX_LEDGERS):
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._max_ledgers = max_ledgers
        self._lock = threading.RLock()
        self._open: dict[str, Ledger] = {}
        self._closed = False
        self._infos = self._load()
        for leftover in self._root.glob(_TRASH_PREFIX + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for name, info in list(self._infos.items()):
            if info.state == "CREATING":
                self._finish_create(name)

    # ---------------------------------------------------------------- metadata file
    @property
    def root(self) -> Path:
        return self._root

    def _load(self) -> dict[str, LedgerInfo]:
        path = self._root / METADATA_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CorruptLedgerError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != _METADATA_FORMAT:
            raise CorruptLedgerError(f"{path}: unknown format {raw.get('format')!r}")
        try:
            return {name: _info_from_json(name, item) for name, item in raw["ledgers"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptLedgerError(f"{path}: malformed ledger entry: {exc!r}") from exc

    def _save(self, infos: dict[str, LedgerInfo]) -> None:
        """Replace the metadata file atomically; only then adopt `infos` in memory."""
        document = {
            "format": _METADATA_FORMAT,
            "ledgers": {name: _info_to_json(info) for name, info in sorted(infos.items())},
        }
        write_metadata(self._root / METADATA_FILE, document)
        self._infos = infos

    # ---------------------------------------------------------------- LedgerSet
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._infos)

    def create(
        self,
        name: str,
        *,
        permissions_mode: str,
        deletion_protection: bool = True,
        kms_key: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> LedgerInfo:
        key, checked_tags = check_create(name, permissions_mode, deletion_protection, kms_key, tags)
        with self._lock:
            self._check_usable()
            check_room(self._infos.keys(), name, self._max_ledgers)
            if (self._root / name).exists():
                raise LedgerInUseError(
                    f"{self._root / name} exists but is not a ledger of this server; "
                    "move it away to use the name"
                )
            info = LedgerInfo(
                name=name,
                state="CREATING",
                creation_time=datetime.datetime.now(datetime.UTC),
                permissions_mode=permissions_mode,
                deletion_protection=deletion_protection,
                kms_key=key,
                tags=checked_tags,
            )
            self._save({**self._infos, name: info})
            try:
                return self._finish_create(name)
            except BaseException:
                remaining = dict(self._infos)
                del remaining[name]
                self._save(remaining)
                shutil.rmtree(self._root / name, ignore_errors=True)
                raise

    def _finish_create(self, name: str) -> LedgerInfo:
        if name not in self._open:
            self._open[name] = Ledger.open(self._root / name)
        info = dataclasses.replace(self._infos[name], state="ACTIVE")
        self._save({**self._infos, name: info})
        return _copy(info)

    def describe(self, name: str) -> LedgerInfo:
        with self._lock:
            return _copy(self._info(name))

    def _info(self, name: str) -> LedgerInfo:
        info = self._infos.get(name)
        if info is None:
            raise LedgerNotFoundError(f"no ledger named {name!r}")
        return info

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
            self._check_usable()
            info = dataclasses.replace(self._info(name), **changes)
            if changes:
                self._save({**self._infos, name: info})
            return _copy(info)

    def tag(self, name: str, tags: dict[str, str]) -> None:
        checked = check_tags(tags)
        with self._lock:
            self._check_usable()
            info = self._info(name)
            merged = merged_tags(info.tags, checked)
            self._save({**self._infos, name: dataclasses.replace(info, tags=merged)})

    def untag(self, name: str, keys: list[str]) -> None:
        check_tag_keys(keys)
        with self._lock:
            self._check_usable()
            info = self._info(name)
            dropped = set(keys)
            kept = {k: v for k, v in info.tags.items() if k not in dropped}
            if kept != info.tags:
                self._save({**self._infos, name: dataclasses.replace(info, tags=kept)})

    def delete(self, name: str) -> None:
        with self._lock:
            self._check_usable()
            info = self._info(name)
            if info.deletion_protection:
                raise DeletionProtectedError(
                    f"ledger {name!r} has deletion protection on; turn it off with "
                    "UpdateLedger first"
                )
            handle = self._open.pop(name, None)
            if handle is not None:
                handle.close()  # waits for commits in flight; later calls: LedgerClosedError
            trash = self._root / f"{_TRASH_PREFIX}{name}-{time.time_ns()}"
            directory = self._root / name
            if directory.exists():
                os.replace(directory, trash)  # atomic: the name's data is gone from here on
                fsync_dir(self._root)
            remaining = dict(self._infos)
            del remaining[name]
            self._save(remaining)
        shutil.rmtree(trash, ignore_errors=True)

    def open(self, name: str) -> Ledger:
        with self._lock:
            self._check_usable()
            self._info(name)
            handle = self._open.get(name)
            if handle is None:
                handle = Ledger.open(self._root / name, create_if_missing=False)
                self._open[name] = handle
            return handle

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles = list(self._open.values())
            self._open.clear()
        for handle in handles:
            handle.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerClosedError("the ledger set is closed")

    def __enter__(self) -> EmbeddedLedgers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _copy(info: LedgerInfo) -> LedgerInfo:
    """A copy whose tags the caller may change without changing the set's."""
    return dataclasses.replace(info, tags=dict(info.tags))
