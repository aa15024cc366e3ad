"""The PartiQL parser: statement text in, an immutable `ast.Statement` out.

`parse(text)` tokenises the text with a hand-written lexer (`_tokenize`), parses the tokens
with a lark LALR(1) parser built once from `grammar.lark`, and lowers the parse into the
nodes of `ast.py` (the lowering lives in `lower.py`, run inline by lark as it reduces).

Invariants:
- Every failure is a `PartiQLSyntaxError` with a 1-based `line`/`column` and the readable
  names of what the grammar would have accepted (`expected`): keywords upper-case,
  punctuation quoted, "identifier", "string", "number", "Ion literal", "end of statement".
  No lark exception, and no other exception, escapes `parse`.
- Keywords are case-insensitive; reserved keywords (PartiQL's list, `_RESERVED`) are never
  identifiers. `"x"` is a case-sensitive identifier, `'x'` a string (`''` escapes a quote).
- `?` parameters are numbered from 0 in textual order by the lexer.
- Text with a lone surrogate, a literal beyond core/limits.py's bounds on values (numbers,
  nesting) and a statement nested deeper than MAX_EXPRESSION_DEPTH are PartiQLSyntaxErrors;
  a long run of one binary operator is not deep (see lower.py). Ion literals are read by
  amazon-ion's pure-Python reader, never its C extension (core/iontext.py).
- Results are cached by text (`functools.lru_cache`); the AST is immutable, so sharing is
  safe. The lark parser is built lazily, once, under a lock, and is then only read.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer

from core.errors import PartiQLSyntaxError, ValueOutOfRangeError
from core.iontext import IonTextError, load_text
from core.limits import MAX_EXPRESSION_DEPTH, MAX_INT_DIGITS, check_value, expression_depth_message
from core.partiql import ast
from core.partiql.lower import IonText, Lower

__all__ = ["RESERVED", "parse"]

# PartiQL's reserved words (partiql-lang-kotlin's lexer keywords, less the window and
# ON CONFLICT words that Strand does not parse). None of them is ever an identifier.
_RESERVED_WORDS = """
    absolute action add all allocate alter and any are as asc assertion at authorization avg
    begin between bit bit_length by cascade cascaded case cast catalog char character
    character_length char_length check close coalesce collate collation column commit connect
    connection constraint constraints continue convert corresponding count create cross
    current current_date current_time current_timestamp current_user cursor date deallocate
    dec decimal declare default deferrable deferred delete desc describe descriptor
    diagnostics disconnect distinct domain double drop else end escape every except exception
    excluded exec execute exists explain external extract date_add date_diff false fetch first
    float for foreign found from full get global go goto grant group having identity immediate
    in indicator initially inner input insensitive insert int integer intersect interval into
    is isolation join key language last lateral left level like local lower match max min
    module names national natural nchar next no not null nulls nullif numeric octet_length of
    on only open option or order outer output overlaps overlay pad partial placing position
    precision prepare preserve primary prior privileges procedure public read real references
    relative replace restrict revoke right rollback rows schema scroll section select session
    session_user set size smallint some space sql sqlcode sqlerror sqlstate substring sum
    system_user table temporary then time timestamp to transaction translate translation trim
    true union unique unknown update upper upsert usage user using value values varchar
    varying view when whenever where with work write zone
    can_cast can_lossless_cast missing pivot unpivot limit offset remove index let
    tuple integer2 int2 integer4 int4 integer8 int8 bigint bool boolean string symbol clob
    blob struct list sexp bag
"""
_RESERVED = frozenset(_RESERVED_WORDS.split())
RESERVED = _RESERVED


# Keywords whose token name differs from their spelling (the plain name is a literal class).
_KEYWORD_TOKEN = {"decimal": "DECIMAL_KW", "integer": "INTEGER_KW", "string": "STRING_KW"}

_PUNCT = {
    "<=": "LTE",
    ">=": "GTE",
    "<>": "NEQ",
    "!=": "NEQ",
    "||": "CONCAT",
    "<<": "LBAG",
    ">>": "RBAG",
    "(": "LPAREN",
    ")": "RPAREN",
    "[": "LBRACK",
    "]": "RBRACK",
    "{": "LBRACE",
    "}": "RBRACE",
    ",": "COMMA",
    ":": "COLON",
    ";": "SEMI",
    ".": "DOT",
    "@": "AT_SIGN",
    "?": "PARAM",
    "*": "STAR",
    "+": "PLUS",
    "-": "MINUS",
    "/": "SLASH",
    "%": "PERCENT",
    "=": "EQ",
    "<": "LT",
    ">": "GT",
}
_PUNCT_DISPLAY = {name: sym for sym, name in _PUNCT.items() if sym != "!="}

_CLASS_DISPLAY = {
    "IDENT": "identifier",
    "QIDENT": "identifier",
    "STRING": "string",
    "INTEGER": "number",
    "DECIMAL": "number",
    "ION": "Ion literal",
    "$END": "end of statement",
}
_CLASS_ORDER = ["identifier", "string", "number", "Ion literal", "end of statement"]

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<lcomment>--[^\n]*)
    | (?P<bcomment>/\*)
    | (?P<number>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)? | \d+[eE][+-]?\d+ | \d+)
    | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
    | (?P<string>')
    | (?P<qident>")
    | (?P<ion>`)
    | (?P<punct><= | >= | <> | != | \|\| | << | >> | [-+*/%<>=(),\[\]{}:;.?@])
    """,
    re.VERBOSE,
)
_STRING_BODY = re.compile(r"'((?:[^']|'')*)'")
_QIDENT_BODY = re.compile(r'"((?:[^"]|"")*)"')


class _Positions:
    """Maps an offset in the text to a 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def at(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, pos) - 1
        return line + 1, pos - self.starts[line] + 1


def _error(text: str, pos: int, message: str, expected: tuple[str, ...] = ()) -> PartiQLSyntaxError:
    line, column = _Positions(text).at(pos)
    return PartiQLSyntaxError(f"line {line}, column {column}: {message}", line, column, expected)


def _check_literal(text: str, pos: int, value: object) -> None:
    """A literal's value within core/limits.py's bounds, or a PartiQLSyntaxError at it."""
    try:
        check_value(value, "the literal")
    except ValueOutOfRangeError as exc:
        raise _error(text, pos, str(exc)) from None


def _check_text(text: str) -> None:
    """Statement text is Unicode: a lone surrogate (which no encoding can carry, and which
    would reach the statement's hash) is a PartiQLSyntaxError at its position."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _error(
            text,
            exc.start,
            f"the statement holds a lone surrogate {text[exc.start]!r}, which is not "
            "Unicode text: send the character it stands for",
        ) from None


def _scan_ion(text: str, start: int) -> int:
    """The offset just past the backtick closing the Ion literal opened at `start`."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "`":
            return i + 1
        if text.startswith("'''", i):
            j = i + 3
            while j < n and not text.startswith("'''", j):
                j += 2 if text[j] == "\\" else 1
            i = j + 3
        elif c in "'\"":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            i += 1
    raise _error(text, start, "unterminated Ion literal (no closing '`')")


def _tokenize(text: str) -> Iterator[Token]:
    """The tokens of `text`, lazily, so that a parse error before a lexical one wins."""
    positions = _Positions(text)
    pos = 0
    n = len(text)
    params = 0
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        end = m.end()
        value: Any
        if kind in ("ws", "lcomment"):
            pos = end
            continue
        if kind == "bcomment":
            close = text.find("*/", end)
            if close < 0:
                raise _error(text, pos, "unterminated comment (no closing '*/')")
            pos = close + 2
            continue
        if kind == "number":
            raw = m.group()
            if raw.isdigit():
                if len(raw) > MAX_INT_DIGITS:
                    raise _error(
                        text,
                        pos,
                        f"an integer literal of {len(raw)} digits: Strand's integers have at "
                        f"most {MAX_INT_DIGITS} digits (MAX_INT_DIGITS); write a decimal with "
                        "an exponent instead",
                    )
                ttype, value = "INTEGER", int(raw)
            else:
                ttype = "DECIMAL"
                try:
                    value = Decimal(raw)
                except InvalidOperation:  # pragma: no cover - the regex admits only numbers
                    raise _error(text, pos, f"malformed number {raw!r}") from None
                _check_literal(text, pos, value)
        elif kind == "ident":
            word = m.group()
            low = word.lower()
            if low in _RESERVED:
                ttype, value = _KEYWORD_TOKEN.get(low, low.upper()), word
            else:
                ttype, value = "IDENT", word
        elif kind == "string":
            sm = _STRING_BODY.match(text, pos)
            if sm is None:
                raise _error(text, pos, "unterminated string (no closing quote)")
            end = sm.end()
            ttype, value = "STRING", sm.group(1).replace("''", "'")
        elif kind == "qident":
            qm = _QIDENT_BODY.match(text, pos)
            if qm is None:
                raise _error(text, pos, "unterminated quoted identifier (no closing '\"')")
            end = qm.end()
            ttype, value = "QIDENT", qm.group(1).replace('""', '"')
        elif kind == "ion":
            end = _scan_ion(text, pos)
            body = text[pos + 1 : end - 1]
            try:  # user text: never handed to amazon-ion's C extension (core/iontext.py)
                ion_value = load_text(body)
            except IonTextError as exc:
                raise _error(text, pos, f"malformed Ion literal: {exc}") from None
            _check_literal(text, pos, ion_value)
            ttype, value = "ION", IonText(text[pos:end], ion_value)
        else:
            sym = m.group()
            ttype = _PUNCT[sym]
            value = sym
            if ttype == "PARAM":
                value = params
                params += 1
        line, column = positions.at(pos)
        end_line, end_column = positions.at(end)
        yield Token(ttype, value, pos, line, column, end_line, end_column, end)
        pos = end


class _LarkLexer(Lexer):
    """Adapts `_tokenize` to lark's custom-lexer interface."""

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, data: Any) -> Iterator[Token]:  # type: ignore[override]
        yield from _tokenize(data if isinstance(data, str) else str(data))


_lark: Lark | None = None
_lark_lock = threading.Lock()
# The terminals that can start an operand (an expression below NOT); filled with the parser.
_operand_start: frozenset[str] = frozenset()


def _parser() -> Lark:
    global _lark, _operand_start
    if _lark is None:
        with _lark_lock:
            if _lark is None:
                grammar = (Path(__file__).parent / "grammar.lark").read_text(encoding="utf-8")
                lark = Lark(
                    grammar,
                    parser="lalr",
                    lexer=_LarkLexer,
                    transformer=Lower(),
                    maybe_placeholders=True,
                )
                try:
                    lark.parse("SELECT * FROM t WHERE a =")
                except UnexpectedToken as exc:
                    _operand_start = frozenset(exc.accepts or exc.expected)
                _lark = lark
    return _lark


def display_name(terminal: str) -> str:
    """The readable name of a grammar terminal, as it appears in `expected`."""
    if terminal in _CLASS_DISPLAY:
        return _CLASS_DISPLAY[terminal]
    if terminal in _PUNCT_DISPLAY:
        return f"'{_PUNCT_DISPLAY[terminal]}'"
    if terminal == "PARAM":
        return "'?'"
    return terminal.removesuffix("_KW")


def _expected_names(terminals: set[str] | frozenset[str]) -> tuple[str, ...]:
    names = {display_name(t) for t in terminals}

    def key(name: str) -> tuple[int, int, str]:
        if name.startswith("'"):
            return (0, 0, name)
        if name in _CLASS_ORDER:
            return (2, _CLASS_ORDER.index(name), name)
        return (1, 0, name)

    return tuple(sorted(names, key=key))


def _describe(text: str, token: Token) -> str:
    if token.type == "$END":
        return "end of statement"
    start = token.start_pos if token.start_pos is not None else 0
    end = token.end_pos if token.end_pos is not None else start + len(str(token))
    raw = text[start:end]
    if len(raw) > 40:
        raw = raw[:37] + "..."
    return repr(raw) if "'" not in raw else f'"{raw}"'


def _from_unexpected_token(text: str, exc: UnexpectedToken) -> PartiQLSyntaxError:
    token = exc.token
    terminals = set(exc.accepts or exc.expected or ())
    if token.type == "$END":
        pos = len(text.rstrip())
    else:
        pos = token.start_pos if token.start_pos is not None else 0
    expected = _expected_names(terminals)
    # For the message only: an operand's many possible first tokens read as "expression".
    shown = expected
    if _operand_start and terminals >= _operand_start:
        shown = (*_expected_names(terminals - _operand_start - {"NOT"}), "expression")
    message = f"unexpected {_describe(text, token)}"
    if shown:
        message += "; expected " + ("one of: " if len(shown) > 1 else "") + ", ".join(shown)
    return _error(text, pos, message, expected)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> ast.Statement:
    _check_text(text)
    try:
        result = _parser().parse(text)
    except PartiQLSyntaxError:
        raise
    except UnexpectedToken as exc:
        raise _from_unexpected_token(text, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, PartiQLSyntaxError):
            raise exc.orig_exc from None
        raise _error(text, 0, f"cannot parse statement: {exc.orig_exc}") from None
    except UnexpectedInput as exc:
        raise _error(text, exc.pos_in_stream or 0, f"cannot parse statement: {exc}") from None
    except RecursionError:  # pragma: no cover - Lower.start refuses deep nesting first
        raise _error(text, 0, expression_depth_message(MAX_EXPRESSION_DEPTH + 1)) from None
    if not isinstance(result, ast.Statement):  # pragma: no cover - the grammar's start rule
        raise _error(text, 0, "not a statement")
    return result


def parse(text: str) -> ast.Statement:
    """Parse one PartiQL statement (an optional trailing `;` is allowed)."""
    try:
        return _parse_cached(text)
    except PartiQLSyntaxError as exc:
        # A fresh exception per call: a cached-free path, callers may mutate/chain it.
        raise PartiQLSyntaxError(str(exc), exc.line, exc.column, exc.expected) from None
