"""PartiQL value semantics over Strand's Ion values: types, equality, ordering, operators.

Values are what `core/codec.py` describes (plain Python values or amazon-ion `simple_types`)
plus `data.MISSING`, `data.Bag`, the `datetimes.Date` / `datetimes.Time` of SQL literals and the
`intervals.IntervalYM` / `IntervalDT` of INTERVAL values (stored in documents as annotated Ion,
`$date::...`, `$time::{...}`, `$interval_ym::{...}`: sqltime.py, whose `lift` reads them back
wherever a value is compared, grouped or ordered).
Every function accepts both plain and IonPy* values and returns plain Python values (or
amazon-ion Timestamps, symbols and structs with repeated names where plain ones cannot say it).

Rules, decided by the official PartiQL conformance suite (tests/vectors/partiql-tests):
- Unknowns: operators and functions return MISSING when an operand is MISSING, else NULL when
  one is null. Comparisons (`=`, `<`, ...) give NULL when either side is null (also
  `MISSING = NULL`) and MISSING when one side is MISSING and the other is known. NOT, AND
  and OR treat MISSING as NULL (`NOT MISSING` is null, `FALSE AND MISSING` is false).
- Type errors: an operand of the wrong type (a string in `+`, a number in LIKE) is checked
  before unknowns, and `fail(mode, ...)` either raises PartiQLEvaluationError ("error" mode)
  or gives MISSING ("coerce" mode). `=` between values of different types is simply false.
- Numbers: int, decimal and float compare by exact value (1 = 1.0 = 1e0), as Decimals (in
  time bounded by their digits, never by their exponents). Arithmetic
  promotes int < float < decimal (a decimal operand makes the result decimal); decimal
  results use 34 significant digits (38 for division), integer division and `%` truncate
  toward zero, division by zero is an error, and int64 overflow of int64 operands is an error.
- `equivalent` / `group_key` is the structural equality of DISTINCT, GROUP BY and set
  operations: nulls of every Ion type and MISSING are one value (GROUP BY puts them in one
  group; `[NULL] = [MISSING]` is true); numbers by value; string and symbol by text;
  timestamps (and dates) by instant; intervals of one kind by length; structs as multisets
  of fields; bags as multisets; lists and sexps in order. `equals` on known values is `equivalent`.
- `order_compare` is a total preorder: bool < number < date < time < timestamp < interval < text <
  lob < list < sexp < struct < bag; NaN sorts before every other number; nested nulls sort
  after everything (ASC NULLS LAST inside collections).
No function here keeps state or reads the clock.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict, IonPyNull
from amazon.ion.symbols import SymbolToken

from core.errors import PartiQLEvaluationError
from core.partiql.data import MISSING, Bag
from core.partiql.datetimes import Date, Time, instant, time_instant
from core.partiql.intervals import IntervalDT, IntervalYM

__all__ = [
    "DECIMAL_CONTEXT",
    "NO_ESCAPE",
    "DIVISION_CONTEXT",
    "arithmetic",
    "between",
    "can_cast",
    "can_lossless_cast",
    "cast",
    "compare",
    "concat",
    "elements",
    "equals",
    "equivalent",
    "fail",
    "get_field",
    "group_key",
    "in_collection",
    "is_collection",
    "is_missing",
    "is_null",
    "is_number",
    "is_sequence",
    "is_struct",
    "is_text",
    "is_type",
    "is_unknown",
    "lift",
    "like",
    "logical_and",
    "logical_not",
    "logical_or",
    "make_struct",
    "negate",
    "not_equals",
    "null_type",
    "order_compare",
    "struct_items",
    "text_of",
    "to_decimal",
    "truth",
    "type_name",
    "unary_plus",
]

DECIMAL_CONTEXT = decimal.Context(
    prec=34,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
DIVISION_CONTEXT = DECIMAL_CONTEXT.copy()
DIVISION_CONTEXT.prec = 38

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

NUMERIC = frozenset({"int", "decimal", "float"})
TEXT = frozenset({"string", "symbol"})


def fail(mode: str, message: str) -> Any:
    """Raise PartiQLEvaluationError in "error" mode; return MISSING in "coerce" mode."""
    if mode == "error":
        raise PartiQLEvaluationError(message)
    return MISSING


# ============================================================================ types

_PLAIN_TYPES: dict[type, str] = {
    dict: "struct",
    list: "list",
    tuple: "list",
    str: "string",
    int: "int",
    float: "float",
    bool: "bool",
    Decimal: "decimal",
    type(None): "null",
    bytes: "blob",
    Bag: "bag",
    Date: "date",
    Time: "time",
    IntervalYM: "interval",
    IntervalDT: "interval",
}

_ION_NAMES = {
    IonType.NULL: "null",
    IonType.BOOL: "bool",
    IonType.INT: "int",
    IonType.FLOAT: "float",
    IonType.DECIMAL: "decimal",
    IonType.TIMESTAMP: "timestamp",
    IonType.SYMBOL: "symbol",
    IonType.STRING: "string",
    IonType.CLOB: "clob",
    IonType.BLOB: "blob",
    IonType.LIST: "list",
    IonType.SEXP: "sexp",
    IonType.STRUCT: "struct",
}


def type_name(v: Any) -> str:
    """The PartiQL type of a value: "missing", "null", "bool", "int", "decimal", "float",
    "string", "symbol", "timestamp", "date", "time", "clob", "blob", "list", "sexp",
    "struct" or "bag". Raises PartiQLEvaluationError for a value that is not PartiQL's."""
    name = _PLAIN_TYPES.get(type(v))
    if name is not None:
        return name
    if v is MISSING:
        return "missing"
    if isinstance(v, IonPyNull):
        return "null"
    ion_type = getattr(v, "ion_type", None)
    if ion_type is not None and ion_type in _ION_NAMES:
        return _ION_NAMES[ion_type]
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, Decimal):
        return "decimal"
    if isinstance(v, SymbolToken):
        return "symbol"
    if isinstance(v, str):
        return "string"
    if isinstance(v, datetime.datetime):
        return "timestamp"
    if isinstance(v, (bytes, bytearray)):
        return "blob"
    if isinstance(v, Bag):
        return "bag"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "struct"
    raise PartiQLEvaluationError(f"not a PartiQL value: {type(v).__name__}")


def null_type(v: Any) -> str | None:
    """The Ion type of a typed null ("int" for null.int, "null" for plain null); None when
    `v` is not null."""
    if v is None:
        return "null"
    if isinstance(v, IonPyNull):
        return _ION_NAMES.get(getattr(v, "ion_type", None) or IonType.NULL, "null")
    return None


def is_missing(v: Any) -> bool:
    return v is MISSING


def is_null(v: Any) -> bool:
    return v is None or isinstance(v, IonPyNull)


def is_unknown(v: Any) -> bool:
    return v is None or v is MISSING or isinstance(v, IonPyNull)


def is_struct(v: Any) -> bool:
    return type_name(v) == "struct"


def is_sequence(v: Any) -> bool:
    return type_name(v) in ("list", "sexp")


def is_collection(v: Any) -> bool:
    return type_name(v) in ("list", "sexp", "bag")


def is_number(v: Any) -> bool:
    return type_name(v) in NUMERIC


def is_text(v: Any) -> bool:
    return type_name(v) in TEXT


def text_of(v: Any) -> str:
    """The text of a string or symbol (`$0` for a symbol without text)."""
    if isinstance(v, SymbolToken):
        return v.text if v.text is not None else "$0"
    return str(v)


def elements(v: Any) -> list[Any]:
    """The elements of a list, sexp or bag (the values of a struct)."""
    if isinstance(v, Mapping):
        return [x for _, x in struct_items(v)]
    return list(v)


# ============================================================================ structs


def struct_items(v: Any) -> list[tuple[str, Any]]:
    """Every (name, value) of a struct, repeated names included; [] for a non-struct."""
    if type(v) is dict:
        return list(v.items())
    if isinstance(v, IonPyDict):
        return [(text_of(k), x) for k, x in v.items()]
    if isinstance(v, Mapping) and not isinstance(v, IonPyNull):
        return [(text_of(k), x) for k, x in v.items()]
    return []


def get_field(v: Any, name: str, case_sensitive: bool) -> Any:
    """The value of field `name` (the first one when repeated); MISSING when absent or `v` is
    not a struct. Not case-sensitive: an exact match wins, else the first that matches
    ignoring case."""
    if type(v) is dict:
        found = v.get(name, MISSING)
        if found is not MISSING or case_sensitive:
            return found
    elif not isinstance(v, Mapping) or isinstance(v, IonPyNull):
        return MISSING
    items = struct_items(v)
    for k, x in items:
        if k == name:
            return x
    if not case_sensitive:
        low = name.lower()
        for k, x in items:
            if k.lower() == low:
                return x
    return MISSING


def make_struct(items: Iterable[tuple[Any, Any]]) -> Any:
    """A struct from (name, value) pairs: a dict, or an IonPyDict when a name repeats.
    Fields whose value is MISSING are left out."""
    pairs = [(text_of(k), v) for k, v in items if v is not MISSING]
    names = {k for k, _ in pairs}
    if len(names) == len(pairs):
        return dict(pairs)
    out = IonPyDict()
    for k, v in pairs:
        out.add_item(k, v)
    return out


# ============================================================================ equality


def _num_key(v: Any) -> Any:
    """A number's exact value as a Decimal (an int and a float convert exactly), or "nan",
    "inf", "-inf". Decimals compare and hash by value in time bounded by their digits,
    whatever their exponents: unlike a Fraction, `Decimal("1E+999999999")` never becomes
    the integer it denotes."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return Decimal(v)
    if isinstance(v, Decimal):
        if not v.is_finite():
            return "nan" if v.is_nan() else ("inf" if v > 0 else "-inf")
        return v
    return Decimal(int(v))


def _key(v: Any) -> Hashable:
    """A canonical hashable form: two values have equal keys iff they are equivalent."""
    v = _lift(v)
    t = type_name(v)
    if t in ("null", "missing"):
        return ("null",)
    if t == "bool":
        return ("bool", bool(v))
    if t in NUMERIC:
        return ("num", _num_key(v))
    if t in TEXT:
        return ("text", text_of(v))
    if t in ("timestamp", "date"):
        return ("ts", instant(v))
    if t == "time":
        return ("time", time_instant(v))
    if t == "interval":
        return ("ym", v.months) if isinstance(v, IntervalYM) else ("dt", v.nanos)
    if t in ("blob", "clob"):
        return ("lob", bytes(v))
    if t in ("list", "sexp"):
        return (t, tuple(_key(x) for x in v))
    if t == "struct":
        fields = Counter((k, _key(x)) for k, x in struct_items(v) if x is not MISSING)
        return ("struct", frozenset(fields.items()))
    return ("bag", frozenset(Counter(_key(x) for x in v).items()))


def equivalent(a: Any, b: Any) -> bool:
    """Structural equality (DISTINCT, GROUP BY, set operations): see the module docstring."""
    return _key(a) == _key(b)


def group_key(v: Any) -> Hashable:
    """A hashable key: group_key(a) == group_key(b) iff equivalent(a, b)."""
    return _key(v)


def _unknown_result(a: Any, b: Any) -> Any:
    """None when either is null, else MISSING (caller checked one is unknown)."""
    return None if is_null(a) or is_null(b) else MISSING


def equals(a: Any, b: Any, mode: str) -> Any:
    """SQL `=`: True/False, None when either is null, MISSING when one is MISSING and the
    other is known. Values of different types are unequal (never an error)."""
    kind = type(a)
    if kind is type(b) and (kind is int or kind is str):  # the common case, exactly
        return a == b
    if is_unknown(a) or is_unknown(b):
        return _unknown_result(a, b)
    return _key(a) == _key(b)


def not_equals(a: Any, b: Any, mode: str) -> Any:
    r = equals(a, b, mode)
    return (not r) if isinstance(r, bool) else r


def _category(t: str) -> str:
    if t in NUMERIC:
        return "number"
    if t in TEXT:
        return "text"
    if t in ("timestamp", "date"):
        return "timestamp"
    if t in ("blob", "clob"):
        return "lob"
    return t


def _interval_category(v: Any) -> str:
    return "interval_ym" if isinstance(v, IntervalYM) else "interval_dt"


def _interval_order(v: Any) -> tuple[int, int]:
    return (0, v.months) if isinstance(v, IntervalYM) else (1, v.nanos)


def lift(v: Any) -> Any:
    """A stored SQL datetime value (annotated Ion) as its in-memory value, else `v`."""
    return _lift(v)


def _lift(v: Any) -> Any:
    """A stored SQL datetime value (annotated Ion) as its in-memory value (sqltime.lift)."""
    if type(v) in _PLAIN_TYPES or not getattr(v, "ion_annotations", None):
        return v
    return sqltime.lift(v)


def _cmp_num(a: Any, b: Any) -> int | None:
    if type(a) is int and type(b) is int:
        return (a > b) - (a < b)
    ka, kb = _num_key(a), _num_key(b)
    if ka == "nan" or kb == "nan":
        return None
    fa = ka if isinstance(ka, Decimal) else (math.inf if ka == "inf" else -math.inf)
    fb = kb if isinstance(kb, Decimal) else (math.inf if kb == "inf" else -math.inf)
    return (fa > fb) - (fa < fb)


def _cmp3(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _scalar_cmp(cat: str, a: Any, b: Any) -> int | None:
    """Three-way comparison of two known values of one comparable category."""
    if cat == "number":
        return _cmp_num(a, b)
    if cat == "text":
        return _cmp3(text_of(a), text_of(b))
    if cat == "timestamp":
        return _cmp3(instant(a), instant(b))
    if cat == "time":
        return _cmp3(time_instant(a), time_instant(b))
    if cat == "bool":
        return _cmp3(bool(a), bool(b))
    if cat == "interval_ym":
        return _cmp3(a.months, b.months)
    if cat == "interval_dt":
        return _cmp3(a.nanos, b.nanos)
    if cat == "lob":
        return _cmp3(bytes(a), bytes(b))
    raise AssertionError(cat)


_COMPARABLE = frozenset(
    {"number", "text", "timestamp", "time", "bool", "lob", "interval_ym", "interval_dt"}
)


def compare(op: str, a: Any, b: Any, mode: str) -> Any:
    """SQL `<`, `<=`, `>`, `>=`: True/False; None/MISSING for unknowns as `equals`; values
    of types that do not compare (1 < 'a', lists, structs) fail(mode)."""
    if is_unknown(a) or is_unknown(b):
        return _unknown_result(a, b)
    a, b = _lift(a), _lift(b)
    ca, cb = _category(type_name(a)), _category(type_name(b))
    if ca == "interval":
        ca = _interval_category(a)
    if cb == "interval":
        cb = _interval_category(b)
    if ca != cb or ca not in _COMPARABLE:
        return fail(mode, f"cannot compare {type_name(a)} and {type_name(b)} with {op}")
    c = _scalar_cmp(ca, a, b)
    if c is None:  # NaN
        return False
    if op == "<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    if op == ">=":
        return c >= 0
    raise ValueError(f"unknown comparison operator {op!r}")


# ============================================================================ ordering

_ORDER_RANK = {
    "bool": 0,
    "int": 1,
    "decimal": 1,
    "float": 1,
    "date": 2,
    "time": 3,
    "timestamp": 4,
    "interval": 5,
    "string": 6,
    "symbol": 6,
    "clob": 7,
    "blob": 7,
    "list": 8,
    "sexp": 9,
    "struct": 10,
    "bag": 11,
}


def _num_order_key(v: Any) -> tuple[int, Any]:
    k = _num_key(v)
    if k == "nan":
        return (0, 0)
    if k == "inf":
        return (1, math.inf)
    if k == "-inf":
        return (1, -math.inf)
    return (1, k)


def _seq_cmp(xs: list[Any], ys: list[Any]) -> int:
    for x, y in zip(xs, ys, strict=False):
        c = order_compare(x, y, False)
        if c:
            return c
    return _cmp3(len(xs), len(ys))


def _field_cmp(a: tuple[str, Any], b: tuple[str, Any]) -> int:
    return _cmp3(a[0], b[0]) or order_compare(a[1], b[1], False)


_NESTED_KEY = functools.cmp_to_key(lambda x, y: order_compare(x, y, False))
_FIELD_KEY = functools.cmp_to_key(_field_cmp)


def order_compare(a: Any, b: Any, nulls_first: bool) -> int:
    """-1, 0 or 1: the ORDER BY order (ascending; the caller reverses for DESC). null and
    MISSING are equal to each other and first or last as asked; see the module docstring
    for the order of types. Inside collections, nulls sort last."""
    ua, ub = is_unknown(a), is_unknown(b)
    if ua or ub:
        if ua and ub:
            return 0
        return (-1 if ua else 1) if nulls_first else (1 if ua else -1)
    a, b = _lift(a), _lift(b)
    ta, tb = type_name(a), type_name(b)
    ra, rb = _ORDER_RANK[ta], _ORDER_RANK[tb]
    if ra != rb:
        return _cmp3(ra, rb)
    if ra == 1:
        return _cmp3(_num_order_key(a), _num_order_key(b))
    if ra in (8, 9):
        return _seq_cmp(list(a), list(b))
    if ra == 10:
        return _seq_cmp(
            sorted(struct_items(a), key=_FIELD_KEY), sorted(struct_items(b), key=_FIELD_KEY)
        )  # type: ignore[arg-type]
    if ra == 11:
        return _seq_cmp(sorted(a, key=_NESTED_KEY), sorted(b, key=_NESTED_KEY))
    if ta == "interval":  # year-month before day-time, then by length
        return _cmp3(_interval_order(a), _interval_order(b))
    c = _scalar_cmp(_category(ta), a, b)
    return c or 0


# ============================================================================ logic


def _logic_operand(v: Any) -> bool | None:
    """True/False for a bool, None for an unknown; raises TypeError otherwise."""
    if is_unknown(v):
        return None
    if type_name(v) != "bool":
        raise TypeError(type_name(v))
    return bool(v)


def logical_and(a: Any, b: Any, mode: str) -> Any:
    """Three-valued AND; MISSING counts as null; a non-bool operand fails(mode)."""
    try:
        x, y = _logic_operand(a), _logic_operand(b)
    except TypeError as e:
        return fail(mode, f"AND needs bool operands, not {e}")
    if x is False or y is False:
        return False
    if x is None or y is None:
        return None
    return True


def logical_or(a: Any, b: Any, mode: str) -> Any:
    """Three-valued OR; MISSING counts as null; a non-bool operand fails(mode)."""
    try:
        x, y = _logic_operand(a), _logic_operand(b)
    except TypeError as e:
        return fail(mode, f"OR needs bool operands, not {e}")
    if x is True or y is True:
        return True
    if x is None or y is None:
        return None
    return False


def logical_not(a: Any, mode: str) -> Any:
    try:
        x = _logic_operand(a)
    except TypeError as e:
        return fail(mode, f"NOT needs a bool operand, not {e}")
    return None if x is None else not x


def truth(v: Any) -> bool:
    """True only for the bool true (what WHERE, HAVING and CASE WHEN keep)."""
    if v is True:
        return True
    return v is not False and not is_unknown(v) and type_name(v) == "bool" and bool(v)


_INT_RANGES = {
    "smallint": 16,
    "int2": 16,
    "integer2": 16,
    "int4": 32,
    "integer4": 32,
    "int": 64,
    "integer": 64,
    "bigint": 64,
    "int8": 64,
    "integer8": 64,
}

_TYPE_ALIASES = {
    "boolean": "bool",
    "bool": "bool",
    "decimal": "decimal",
    "numeric": "decimal",
    "dec": "decimal",
    "float": "float",
    "real": "float",
    "double": "float",
    "double precision": "float",
    "float4": "float",
    "float8": "float",
    "string": "string",
    "varchar": "string",
    "char": "string",
    "character": "string",
    "character varying": "string",
    "symbol": "symbol",
    "timestamp": "timestamp",
    "date": "date",
    "time": "time",
    "interval": "interval",
    "blob": "blob",
    "clob": "clob",
    "list": "list",
    "array": "list",
    "sexp": "sexp",
    "struct": "struct",
    "tuple": "struct",
    "bag": "bag",
}


def is_type(value: Any, type_name_: str, type_args: tuple[int, ...] = ()) -> bool:
    """`value IS type`: "null" holds for null and MISSING, "missing" only for MISSING; other
    types hold for a known value of that type (an int type also checks its range, a string
    type with a length its length). Typed nulls (null.int) are only "null"."""
    name = type_name_.lower()
    if name == "null":
        return is_unknown(value)
    if name == "missing":
        return value is MISSING
    if name in ("any", "dynamic"):
        return True
    if is_unknown(value):
        return False
    value = _lift(value)
    t = type_name(value)
    if name in _INT_RANGES:
        bits = _INT_RANGES[name]
        return t == "int" and -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)
    want = _TYPE_ALIASES.get(name)
    if want is None:
        return False
    if want == "string" and type_args and t == "string":
        return len(text_of(value)) <= type_args[0]
    if want == "decimal" and type_args and t == "decimal":
        return _fits_decimal(
            Decimal(value), type_args[0], type_args[1] if len(type_args) > 1 else 0
        )
    return t == want


def _fits_decimal(d: Decimal, precision: int, scale: int) -> bool:
    """`d IS DECIMAL(precision, scale)`: the decimal, as written (its digits are kept
    exactly), is a value of that type: at most `scale` fraction digits (1.0000 has four,
    so it is not a DECIMAL(5, 3)) and at most `precision - scale` integer digits."""
    if not d.is_finite():
        return False
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    fraction_digits = max(0, -exponent)
    integer_digits = 0 if d.is_zero() or d.adjusted() < 0 else d.adjusted() + 1
    return fraction_digits <= scale and integer_digits <= precision - scale


from core.partiql import sqltime  # noqa: E402

# Casts and the arithmetic/string/predicate operators live in their own modules (re-exported
# here); imported last because they use the helpers above.
from core.partiql.casts import can_cast, can_lossless_cast, cast  # noqa: E402
from core.partiql.operators import (  # noqa: E402
    NO_ESCAPE,
    arithmetic,
    between,
    concat,
    in_collection,
    like,
    negate,
    to_decimal,
    unary_plus,
)
