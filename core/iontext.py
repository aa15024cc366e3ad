"""Ion text that users supply, read without amazon-ion's C extension.

amazon-ion 0.15's C extension reads Ion text quickly, but it is C code handed whatever a user
typed, and its Python glue has crashed the whole process on values it could not convert (it
segfaults writing an integer of more than 4,300 digits). Text that comes from users (Ion
literals in statements, TO_TIMESTAMP and CAST arguments, digests and proofs given to the
verifier) is read with amazon-ion's pure-Python reader instead: slower, but a failure is a
Python exception. Values the engine stores are never read back from Ion text.

Invariant: `load_text` returns exactly one Ion value or raises IonTextError; it never raises
anything else, whatever the text.
"""

from __future__ import annotations

import io
from typing import Any

from amazon.ion import simpleion

__all__ = ["IonTextError", "load_text"]


class IonTextError(ValueError):
    """The text is not exactly one Ion value amazon-ion can read."""


def load_text(text: str) -> Any:
    """The single Ion value `text` holds (amazon-ion's value model: IonPy* values)."""
    try:
        return simpleion.load_python(io.StringIO(text))
    except RecursionError:
        raise IonTextError("Ion containers nested too deeply") from None
    except Exception as exc:  # amazon-ion raises IonException, ValueError, TypeError, ...
        raise IonTextError(str(exc) or type(exc).__name__) from None
