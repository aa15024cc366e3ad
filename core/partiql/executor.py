"""PartiQL statements executed inside a ledger transaction (`tx.execute_statement`).

Theory of operation. A statement is parsed (cached), checked statically (parameter count,
functions), then run as ONE unit of the transaction (`Transaction.statement`): it is
recorded once in transactionInfo with its text, start time and statementDigest
(H(text) dot H(p1) dot H(p2) ...), every document it writes names it, and if anything in it
fails the transaction is put back as it was before the statement.

Queries are evaluated by the evaluator over an environment of `Source`s, one per active
table, that read through the transaction, so the OCC read set is exactly what QLDB's was: an
`=`/`IN` lookup on an indexed field or on the document id (`BY id`) reads those documents and
that index predicate only; anything else reads the whole table. `_ql_committed_<table>`,
`history(t [, start [, end]])` and `information_schema.user_tables` are served from the
journal and the catalog. DML and DDL compile to the transaction's native operations
(insert/update/delete/create_table/...), so both APIs share one implementation of limits,
validation and OCC.

Deadline. A statement is evaluated against its transaction's deadline (`tx.deadline`, QLDB's
30 s from the transaction's start by default): the evaluator's loops charge it, and once the
time is up it raises TransactionExpiredError, which undoes the statement and leaves the
transaction expired (it cannot commit).

Invariants: a statement that raises changes nothing in the transaction; documents written
hold only storable Ion (a bag becomes a list, a MISSING field is left out, a MISSING document
is refused); every DML statement returns one `{documentId}` per document it changed; an
unknown table is a TableNotFoundError, never an empty result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import codec
from core.catalog import TableDef
from core.codec import CodecError
from core.errors import (
    InvalidArgumentError,
    InvalidDocumentError,
    LimitExceededError,
    PartiQLEvaluationError,
    PartiQLSemanticError,
    TableNotFoundError,
)
from core.ids import is_id, timestamp_from_ms
from core.ionhash import IonHashTypeError, ion_hash
from core.limits import MAX_STATEMENT_CHARS, check_value
from core.partiql import ast, sqltime
from core.partiql import values as pv
from core.partiql.checks import check_statement
from core.partiql.data import MISSING, Bag, Context, Lookup, Source
from core.partiql.evaluator import evaluate, evaluate_expr, scan_matches
from core.partiql.from_clause import scan_alias
from core.partiql.parser import parse

if TYPE_CHECKING:
    from core.transaction import Transaction

_EXTRA_FUNCTIONS = {"history": (1, 3)}  # the ledger's functions: name -> argument counts
COMMITTED_PREFIX = "_ql_committed_"


class Cursor(list[Any]):
    """The rows a statement returned, as Ion values (pyqldb's cursor iterates the same)."""

    __slots__ = ()


# ============================================================================ entry point


def execute(tx: Transaction, statement: str, parameters: Sequence[Any]) -> Cursor:
    """Run one PartiQL statement in `tx`; see the module docstring."""
    if not isinstance(statement, str):
        raise InvalidArgumentError(f"a statement is a string, not {type(statement).__name__}")
    if len(statement) > MAX_STATEMENT_CHARS:
        raise LimitExceededError(f"a statement has at most {MAX_STATEMENT_CHARS} characters")
    tree = parse(statement)
    values = [_parameter(i, p) for i, p in enumerate(parameters)]
    check_statement(tree, len(values), extra_functions=_EXTRA_FUNCTIONS)
    with tx.statement(statement, [ion_hash(v) for v in values]):
        now_ms = tx.now_ms()
        deadline = tx.deadline(now_ms)  # raises if the transaction's time is up already
        env = _Environment(tx)
        context = Context(
            mode="coerce",
            now=timestamp_from_ms(now_ms),
            transaction_id=tx.transaction_id,
            functions={"history": env.history},
            deadline=deadline,
        )
        return Cursor(_run(tx, tree, values, env, context))


def _parameter(position: int, value: Any) -> Any:
    check_value(value, f"parameter {position + 1}")  # ValueOutOfRangeError, before encoding
    try:
        return codec.unpack(codec.pack(value))
    except (CodecError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"parameter {position + 1} is not an Ion value: {exc}") from exc


def _run(
    tx: Transaction,
    tree: ast.Statement,
    params: list[Any],
    env: _Environment,
    context: Context,
) -> list[Any]:
    match tree:
        case ast.Query():
            _check_sources(tree, env)
            result = evaluate(tree, env, parameters=params, context=context, checked=True)
            rows = result if isinstance(result, list) else [result]
            return [_storable(row, missing=None) for row in rows]
        case ast.CreateTable(table):
            return [{"tableId": tx.create_table(table.name)}]
        case ast.DropTable(table):
            return [{"tableId": tx.drop_table(env.table(table).name)}]
        case ast.UndropTable(table_id):
            return [{"tableId": tx.undrop_table(table_id)}]
        case ast.CreateIndex(table, fields):
            if len(fields) != 1 or len(fields[0]) != 1:
                raise PartiQLSemanticError("CREATE INDEX takes exactly one top-level field")
            name = env.table(table).name
            tx.create_index(name, fields[0][0])
            return [{"tableId": env.table(table).table_id}]
        case ast.DropIndex(index_id, table, options):
            if dict(options).get("purge") is not True:
                raise PartiQLSemanticError('DROP INDEX needs "WITH (purge = true)"')
            return [{"tableId": tx.drop_index(env.table(table).name, index_id)}]
        case ast.Insert(table, value, single):
            return _insert(tx, env.table(table), value, single, params, env, context)
        case ast.Update() | ast.Delete():
            return _change(tx, tree, params, env, context)
        case ast.Exec(procedure, args):
            return _exec(tx, procedure, args, params, env, context)
    raise PartiQLSemanticError(f"unsupported statement {type(tree).__name__}")


# ============================================================================ DML


def _insert(
    tx: Transaction,
    table: TableDef,
    value: ast.Expr,
    single: bool,
    params: list[Any],
    env: _Environment,
    context: Context,
) -> list[Any]:
    result = evaluate_expr(value, {}, env, params, context)
    if single or isinstance(result, Mapping):
        docs = [result]
    elif isinstance(result, list):  # a bag or a list of documents
        docs = list(result)
    else:
        raise InvalidDocumentError(f"INSERT takes a struct or a bag of structs, not {result!r}")
    ids = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            raise InvalidDocumentError(f"a document is a struct, not {doc!r}")
        ids.append({"documentId": tx.insert(table.name, _storable(doc))})
    return ids


def _change(
    tx: Transaction,
    tree: ast.Update | ast.Delete,
    params: list[Any],
    env: _Environment,
    context: Context,
) -> list[Any]:
    source = tree.source
    if not isinstance(source.expr, ast.Var):
        raise PartiQLSemanticError("UPDATE, DELETE and FROM ... name a table, not an expression")
    table = env.table(ast.TableName(source.expr.name, source.expr.case_sensitive))
    alias = source.alias or source.expr.name
    # `UPDATE t AS r REMOVE r` / `FROM t AS r REMOVE r` is a DELETE, as in QLDB
    deletes = isinstance(tree, ast.Update) and _removes_document(tree, alias)
    changed = []
    for doc_id, bindings in scan_matches(source, tree.where, env, params, context):
        assert doc_id is not None
        if deletes or isinstance(tree, ast.Delete):
            tx.delete(table.name, doc_id)
        else:
            doc = codec.unpack(codec.pack(_storable(bindings[alias])))
            for op in tree.ops:
                doc = _apply_op(doc, op, alias, bindings, params, env, context)
            tx.update(table.name, doc_id, doc)
        changed.append({"documentId": doc_id})
    return changed


def _removes_document(tree: ast.Update, alias: str) -> bool:
    """Whether an UPDATE / FROM statement REMOVEs the document itself (`REMOVE r`); only
    alone, since nothing else can then be done to the document."""
    whole = [
        op
        for op in tree.ops
        if isinstance(op, ast.Remove)
        and isinstance(op.target, ast.Var)
        and _steps(op.target, alias) == ()
    ]
    if whole and len(tree.ops) > 1:
        raise PartiQLSemanticError(
            "REMOVE of the whole document cannot be combined with other changes"
        )
    return bool(whole)


def _steps(target: ast.Path | ast.Var, alias: str) -> tuple[ast.PathStep, ...]:
    root = target if isinstance(target, ast.Var) else target.root
    if not isinstance(root, ast.Var) or not _same_name(root, alias):
        raise PartiQLSemanticError(f"a DML path starts at the variable {alias!r}")
    return () if isinstance(target, ast.Var) else target.steps


def _same_name(var: ast.Var, name: str) -> bool:
    return var.name == name if var.case_sensitive else var.name.lower() == name.lower()


def _apply_op(
    doc: Any,
    op: ast.DmlOp,
    alias: str,
    bindings: Mapping[str, Any],
    params: list[Any],
    env: _Environment,
    context: Context,
) -> Any:
    steps = _steps(op.target, alias)
    keys = [_step_key(step, bindings, params, env, context) for step in steps]
    if isinstance(op, ast.Remove):
        if not keys:
            raise PartiQLSemanticError("REMOVE of a whole document: use DELETE")
        try:  # removing what is not there changes nothing, at any depth
            parent = _walk(doc, keys[:-1], create=False)
        except PartiQLEvaluationError:
            return doc
        if isinstance(parent, dict) and isinstance(keys[-1], str):
            parent.pop(keys[-1], None)
        elif isinstance(parent, list) and isinstance(keys[-1], int) and _in_range(parent, keys[-1]):
            del parent[keys[-1]]
        return doc
    value = _storable(evaluate_expr(op.value, bindings, env, params, context))
    if isinstance(op, ast.Assign):
        if not keys:
            if not isinstance(value, dict):
                raise InvalidDocumentError(f"a document is a struct, not {value!r}")
            return value
        parent = _walk(doc, keys[:-1], create=True)
        _put(parent, keys[-1], value)
        return doc
    container = _walk(doc, keys, create=False)
    position = None
    if op.position is not None:
        position = evaluate_expr(op.position, bindings, env, params, context)
    if isinstance(container, list):
        if position is None:
            container.append(value)
        elif (
            isinstance(position, int)
            and not isinstance(position, bool)
            and 0 <= position <= len(container)
        ):
            container.insert(position, value)
        else:
            raise PartiQLEvaluationError(
                f"a list position is an int from 0 to {len(container)}, not {position!r}"
            )
    elif isinstance(container, dict) and isinstance(position, str):
        if position in container:
            raise PartiQLEvaluationError(f"the struct already has a field {position!r}")
        container[position] = value
    else:
        raise PartiQLEvaluationError(
            "INSERT INTO a path needs a list (or a struct and AT 'name'), found "
            f"{type(container).__name__}"
        )
    return doc


def _step_key(
    step: ast.PathStep,
    bindings: Mapping[str, Any],
    params: list[Any],
    env: _Environment,
    context: Context,
) -> str | int:
    if isinstance(step, ast.Field):
        return step.name
    if isinstance(step, ast.Index):
        key = evaluate_expr(step.expr, bindings, env, params, context)
        if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            return key
        raise PartiQLEvaluationError(f"a path index is an int or a string, not {key!r}")
    raise PartiQLSemanticError("a DML path cannot use [*] or .*")


def _walk(doc: Any, keys: list[str | int], *, create: bool) -> Any:
    node = doc
    for key in keys:
        if isinstance(node, dict) and isinstance(key, str):
            if key not in node:
                if not create:
                    raise PartiQLEvaluationError(f"the path has no field {key!r}")
                node[key] = {}
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and _in_range(node, key):
            node = node[key]
        else:
            raise PartiQLEvaluationError(f"the path step {key!r} does not exist in {node!r}")
    return node


def _put(parent: Any, key: str | int, value: Any) -> None:
    if isinstance(parent, dict) and isinstance(key, str):
        parent[key] = value
        return
    if isinstance(parent, list) and isinstance(key, int) and _in_range(parent, key):
        parent[key] = value
        return
    raise PartiQLEvaluationError(f"cannot set {key!r} in {type(parent).__name__}")


def _in_range(items: list[Any], position: int) -> bool:
    """A list position a path can name: 0 up to len - 1 (PartiQL has no negative indexes:
    `r.l[-1]` is MISSING in a query, so a DML path cannot reach it either)."""
    return not isinstance(position, bool) and 0 <= position < len(items)


def _exec(
    tx: Transaction,
    procedure: str,
    args: tuple[ast.Expr, ...],
    params: list[Any],
    env: _Environment,
    context: Context,
) -> list[Any]:
    if procedure.lower() != "redact_revision":
        raise PartiQLSemanticError(f"no stored procedure {procedure!r} (redact_revision is one)")
    if len(args) != 3:
        raise PartiQLSemanticError(
            "EXEC redact_revision takes a block address, a table id and a document id"
        )
    address, table_id, doc_id = (evaluate_expr(a, {}, env, params, context) for a in args)
    return [tx.redact_revision(_storable(address), str(table_id), str(doc_id))]


def _storable(value: Any, *, missing: Any = MISSING) -> Any:
    """The value as storable Ion: bags become lists, MISSING fields are left out, SQL DATE,
    TIME and INTERVAL values become their annotated Ion (sqltime.to_ion)."""
    if value is MISSING:
        if missing is MISSING:
            raise PartiQLEvaluationError("MISSING cannot be stored (a path that does not exist?)")
        return missing
    if isinstance(value, Bag):
        return [_storable(v, missing=None) for v in value]
    if type(value) is dict:
        return {k: _storable(v, missing=None) for k, v in value.items() if v is not MISSING}
    if type(value) is list:
        return [_storable(v, missing=None) for v in value]
    return sqltime.to_ion(value)


# ============================================================================ environment


class _Environment(Mapping[str, Any]):
    """The names a statement sees: active tables, their committed views, and
    information_schema; values are made on demand (resolving a name records the read)."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._catalog = tx.catalog_view()

    def _names(self) -> list[str]:
        tables = list(self._catalog.active_by_name)
        return [*tables, *(COMMITTED_PREFIX + t for t in tables), "information_schema"]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __getitem__(self, name: str) -> Any:
        if name == "information_schema":
            catalog = self._tx.catalog()
            return {
                "user_tables": Bag(
                    t.to_document() for t in catalog.tables.values() if t.table_id[:21] != "0" * 21
                )
            }
        if (
            name.startswith(COMMITTED_PREFIX)
            and name[len(COMMITTED_PREFIX) :] in self._catalog.active_by_name
        ):
            return _CommittedSource(self._tx, self._tx.table(name[len(COMMITTED_PREFIX) :]), name)
        if name in self._catalog.active_by_name:
            return _TableSource(self._tx, self._tx.table(name))
        raise KeyError(name)

    def table(self, table: ast.TableName) -> TableDef:
        """The active table a DDL/DML statement names (exact spelling first)."""
        names = self._catalog.active_by_name
        if table.name in names or table.case_sensitive:
            return self._tx.table(table.name)
        matches = [n for n in names if n.lower() == table.name.lower()]
        if len(matches) == 1:
            return self._tx.table(matches[0])
        return self._tx.table(table.name)  # raises TableNotFoundError (and records the read)

    def history(self, table: Any, start: Any = None, end: Any = None) -> Bag:
        """history(t | 'tableId' [, start [, end]]): every revision of the table active in
        [start, end]. A table id (a string) also names a dropped table, as in QLDB."""
        for bound in (start, end):
            if bound is not None and not hasattr(bound, "year"):
                raise PartiQLEvaluationError(f"history() bounds are timestamps, not {bound!r}")
        view = self._tx.engine_view()
        if isinstance(table, _TableSource):
            self._tx.read_table(table.table)
            return Bag(view.table_history(table.table.table_id, None, start, end))
        if isinstance(table, str) and is_id(table):
            found = self._tx.catalog().tables.get(str(table))
            if found is None or found.table_id[:21] == "0" * 21:
                raise TableNotFoundError(f"no table with id {str(table)!r}")
            self._tx.read_table(found)
            return Bag(view.table_history(found.table_id, None, start, end))
        raise PartiQLEvaluationError("history() takes a table or a table id as its first argument")


class _TableSource(Source):
    """A table's live documents through the transaction (own writes included)."""

    def __init__(self, tx: Transaction, table: TableDef) -> None:
        self._tx = tx
        self.table = table

    @property
    def name(self) -> str:
        return self.table.name

    def scan(self, lookup: Lookup | None) -> Iterable[tuple[str | None, Any]]:
        if lookup is None:
            return self._tx.scan_documents(self.table)  # streamed
        if lookup.field is None:  # `=` finds a string equal to the symbol of its text
            texts = [pv.text_of(v) for v in lookup.values if pv.type_name(v) in pv.TEXT]
            return self._tx.select_documents(self.table, None, [t for t in texts if is_id(t)])
        try:
            return self._tx.select_documents(self.table, lookup.field, list(lookup.values))
        except IonHashTypeError:  # a value no document can hold (a DATE): read it all
            return self._tx.select_documents(self.table)

    def narrow(self, field: str | None) -> bool:
        return field is None or self._tx.narrow_lookup(self.table, field)

    def count(self, charge: Callable[[int], None]) -> int | None:
        return self._tx.count_documents(self.table, charge)


class _CommittedSource(Source):
    """`_ql_committed_<table>`: {blockAddress, hash, data, metadata} of each committed
    document's current revision."""

    def __init__(self, tx: Transaction, table: TableDef, name: str) -> None:
        self._tx = tx
        self.table = table
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def narrow(self, field: str | None) -> bool:
        return False  # every scan reads the committed table

    def scan(self, lookup: Lookup | None) -> Iterable[tuple[str | None, Any]]:
        blocks: dict[int, Any] = {}
        for doc_id, state in self._tx.committed_documents(self.table):
            block = blocks.get(state.seq) or blocks.setdefault(
                state.seq, self._tx.engine_view().read_block(state.seq)
            )
            for revision in block["revisions"]:
                if revision["metadata"]["id"] == doc_id:
                    yield doc_id, revision
                    break


def _check_sources(tree: ast.Query, env: _Environment) -> None:
    """An unknown table in FROM is a TableNotFoundError; a table's field used as a table is
    a PartiQLEvaluationError (in coerce mode both would quietly give nothing)."""
    aliases, scans = _sources_of(tree)
    known = {n.lower() for n in env} | aliases
    tables = {n.lower() for n in env if n != "information_schema"}
    for scan in scans:
        expr = scan.expr
        if isinstance(expr, ast.Var) and expr.name.lower() not in known:
            raise TableNotFoundError(f"no active table named {expr.name!r}")
        if isinstance(expr, ast.Path) and isinstance(expr.root, ast.Var):
            root = expr.root.name.lower()
            if root in tables and root not in aliases:
                raise PartiQLEvaluationError(
                    f"{expr.root.name!r} is a table: use a FROM variable to reach its fields"
                )


_SOURCES: dict[int, tuple[ast.Query, frozenset[str], tuple[ast.Scan, ...]]] = {}


def _sources_of(tree: ast.Query) -> tuple[frozenset[str], tuple[ast.Scan, ...]]:
    """The names a query binds and its scans (cached by the parsed statement's identity)."""
    hit = _SOURCES.get(id(tree))
    if hit is None or hit[0] is not tree:
        aliases: set[str] = set()
        scans: list[ast.Scan] = []
        _collect(tree.expr, aliases, scans)
        if len(_SOURCES) >= 1024:
            _SOURCES.clear()
        hit = _SOURCES[id(tree)] = (tree, frozenset(aliases), tuple(scans))
    return hit[1], hit[2]


def _collect(node: Any, aliases: set[str], scans: list[ast.Scan]) -> None:
    """Every name a query binds (FROM aliases, given or derived, AT, BY, LET, GROUP BY keys
    and GROUP AS) into `aliases`, lower-case, and every Scan into `scans`."""
    if isinstance(node, ast.Scan | ast.UnpivotScan):
        # a derived alias counts unless it is the scanned name itself (`FROM Nope` must
        # still find Nope among the tables)
        derived = node.alias or (None if isinstance(node.expr, ast.Var) else scan_alias(node, 0))
        for name in (derived, node.at, getattr(node, "by", None)):
            if name:
                aliases.add(name.lower())
        if isinstance(node, ast.Scan):
            scans.append(node)
    if isinstance(node, ast.Select):
        for _, name in node.let:
            aliases.add(name.lower())
        if node.group_by is not None:
            for key in node.group_by.keys:
                derived = key.alias or scan_alias(ast.Scan(key.expr), 0)
                aliases.add(derived.lower())
            if node.group_by.group_as:
                aliases.add(node.group_by.group_as.lower())
    if isinstance(node, tuple):
        for item in node:
            _collect(item, aliases, scans)
    elif hasattr(node, "__dataclass_fields__") and not isinstance(node, ast.Lit):
        for field in node.__dataclass_fields__:
            _collect(getattr(node, field), aliases, scans)
