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
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import StrandError

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
