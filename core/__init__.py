"""Strand's core: the embedded ledger engine.

`from core import Ledger` gives the embedded ledger. The auditor's module
`core.verification` (with core.ionhash and core.merkle) imports nothing but hashlib and
amazon-ion; importing it does not load the engine, LevelDB or msgpack, which is why the
names below are loaded lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.ledger import Ledger
    from core.transaction import Transaction

__all__ = ["Ledger", "Transaction"]


def __getattr__(name: str) -> Any:
    if name == "Ledger":
        from core.ledger import Ledger

        return Ledger
    if name == "Transaction":
        from core.transaction import Transaction

        return Transaction
    raise AttributeError(f"module 'core' has no attribute {name!r}")
