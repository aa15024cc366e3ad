"""Strand's cluster: Ray actors around core's replicated ledger (see docs/architecture.md).

`from cluster import LedgerCluster` imports Ray lazily, so `cluster.config` and
`cluster.transport` stay importable without starting anything.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LedgerCluster"]


def __getattr__(name: str) -> Any:
    if name == "LedgerCluster":
        from cluster.client import LedgerCluster

        return LedgerCluster
    raise AttributeError(name)
