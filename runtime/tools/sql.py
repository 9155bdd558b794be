"""The SQL tool: check a statement with PostgreSQL's own parser, run it read-only, keep evidence.

It must never run a statement that could write or escape (only one SELECT / EXPLAIN / SHOW /
read-only WITH, no denied function), never run outside a READ ONLY transaction with timeouts,
never run on a primary whose role can write unless the policy says so, and never put a DSN
or password into a message.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import fnmatch
import hashlib
import io
import json
import math
import re
import time
import uuid
from typing import Any

import asyncpg
import pglast
from pglast import ast
from pydantic import BaseModel

from runtime.errors import AcpError, NotAReplica, ReadOnlyViolation
from runtime.secrets import redact
from runtime.tools.sql_diagnostics import DIAGNOSTICS, Diagnostic, match_diagnostic

__all__ = [
    "DIAGNOSTICS",
    "Diagnostic",
    "SqlEvidence",
    "SqlLimits",
    "check_statement",
    "execute_read_only",
    "match_diagnostic",
    "run_query",
]

CONNECT_TIMEOUT_S = 10.0
TABLE_ROWS = 50
TABLE_CELL = 40
MASK = "***"


class SqlLimits(BaseModel):
    """What the policy allows one statement on one target."""

    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 1000
    idle_in_transaction_timeout_ms: int = 10000
    row_cap: int = 1000
    allow_explain_analyze: bool = False
    mask_columns: list[str] = []  # shown as "***" in every result
    primary_for_diagnostics: bool = False  # allow a writable non-replica only when marked


class SqlEvidence(BaseModel):
    """What a statement returned, as a person reviews it: rows, CSV, text table and plan."""

    statement: str
    statement_sha256: str
    columns: list[str]
    rows: list[list[Any]]  # json-safe, masked, capped
    row_count: int
    truncated: bool
    duration_ms: float
    plan: Any | None  # EXPLAIN (FORMAT JSON) of the statement; None for SHOW, EXPLAIN, diagnostics
    csv: str
    table: str
    server: dict[str, Any]  # in_recovery, role, can_write, version


# --- layer 2: the parser check ---------------------------------------------------------

# Names (fnmatch patterns, lower case) refused anywhere in a statement, schema or not.
DENIED_FUNCTIONS: tuple[str, ...] = (
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_signal_backend",
    "set_config",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_stat_file",
    "pg_file_*",
    "pg_logdir_ls",
    "lo_*",
    "loread",
    "lowrite",
    "dblink*",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_create_restore_point",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_*",
    "pg_wal_replay_*",
    "pg_*replication_slot*",
    "pg_replication_origin_*",
    "pg_advisory_*",
    "pg_try_advisory_*",
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_log_backend_memory_contexts",
    "pg_notify",
    "pg_export_snapshot",
    "pg_import_system_collations",
    "pg_truncate_visibility_map",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "nextval",
    "setval",
    "currval",
    "lastval",
    # these run a query given as text, out of the parser's sight
    "query_to_xml*",
    "cursor_to_xml*",
)
_SLEEPS = {"pg_sleep", "pg_sleep_for", "pg_sleep_until"}
_DML = {
    ast.InsertStmt: "INSERT",
    ast.UpdateStmt: "UPDATE",
    ast.DeleteStmt: "DELETE",
    ast.MergeStmt: "MERGE",
}
_INTERVAL = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(ms|msec|millisecond|milliseconds|s|sec|secs|second|seconds|"
    r"min|mins|minute|minutes)?\s*$"
)
_UNIT_S = {"ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001}
_UNIT_S |= {u: 60.0 for u in ("min", "mins", "minute", "minutes")}


def _refuse(why: str, hint: str | None = None) -> ReadOnlyViolation:
    return ReadOnlyViolation(
        f"refused: {why}",
        hint=hint or "SQL jobs run one read-only SELECT, EXPLAIN or SHOW on a replica",
    )


def _statement_kind(node: ast.Node) -> str:
    if isinstance(node, ast.VacuumStmt) and not node.is_vacuumcmd:
        return "ANALYZE"  # PostgreSQL parses ANALYZE into the same node as VACUUM
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(node).__name__.removesuffix("Stmt")).upper()
    return {"VARIABLE SET": "SET", "COPY": "COPY", "DO": "DO"}.get(words, words)


def check_statement(
    sql: str, *, allow_explain_analyze: bool = False, max_sleep_s: float = 5.0
) -> str:
    """The statement unchanged if it is one read-only statement, else ReadOnlyViolation (why)."""
    try:
        parsed = pglast.parse_sql(sql)
    except pglast.parser.ParseError as error:
        raise _refuse(f"the statement does not parse: {error}") from None
    if len(parsed) != 1:
        raise _refuse(
            f"one statement per request ({len(parsed)} given)",
            hint="send each statement as its own request",
        )
    top = parsed[0].stmt
    _check_top(top, allow_explain_analyze)
    _walk(top, max_sleep_s, in_cte=False)
    return sql


def _check_top(node: ast.Node, allow_explain_analyze: bool) -> None:
    if isinstance(node, ast.SelectStmt | ast.VariableShowStmt):
        return
    if isinstance(node, ast.ExplainStmt):
        inner = node.query
        if not isinstance(inner, ast.SelectStmt):
            raise _refuse(
                f"EXPLAIN of {_statement_kind(inner)} (only EXPLAIN of a SELECT is allowed; "
                "EXPLAIN ANALYZE would execute it)"
            )
        if _explain_analyzes(node) and not allow_explain_analyze:
            raise _refuse(
                "EXPLAIN ANALYZE runs the statement, and the policy does not allow it here",
                hint="use EXPLAIN without ANALYZE, or ask for allow_explain_analyze on the target",
            )
        return
    if isinstance(node, ast.VariableSetStmt | ast.TransactionStmt):
        raise _refuse(f"{_statement_kind(node)} changes the session or transaction")
    raise _refuse(f"{_statement_kind(node)} is not a read-only statement")


def _explain_analyzes(node: ast.ExplainStmt) -> bool:
    for option in node.options or ():
        if option.defname.lower() == "analyze":
            arg = option.arg
            value = getattr(arg, "sval", None) or getattr(arg, "ival", None)
            if arg is None or str(value).lower() not in ("false", "off", "0", "no"):
                return True
    return False


def _walk(node: Any, max_sleep_s: float, *, in_cte: bool) -> None:
    if isinstance(node, tuple | list):
        for item in node:
            _walk(item, max_sleep_s, in_cte=in_cte)
        return
    if not isinstance(node, ast.Node):
        return
    kind = _DML.get(type(node))
    if kind is not None:
        where = f"data-modifying CTE ({kind}) in WITH" if in_cte else f"{kind} inside the query"
        raise _refuse(where)
    if isinstance(node, ast.SelectStmt):
        if node.intoClause is not None:
            raise _refuse("SELECT INTO creates a table")
        if node.lockingClause:
            raise _refuse("FOR UPDATE / FOR SHARE locks rows (and needs a writable transaction)")
    elif isinstance(node, ast.FuncCall):
        _check_function(node, max_sleep_s)
    elif not isinstance(node, ast.SelectStmt | ast.ExplainStmt | ast.VariableShowStmt) and str(
        type(node).__name__
    ).endswith("Stmt"):
        raise _refuse(f"{_statement_kind(node)} inside the query")
    for name in node.__slots__:
        _walk(getattr(node, name, None), max_sleep_s, in_cte=in_cte or name == "ctequery")


def _check_function(call: ast.FuncCall, max_sleep_s: float) -> None:
    name = call.funcname[-1].sval.lower()
    if name in _SLEEPS:
        seconds = _sleep_seconds(name, call.args or ())
        if seconds is None:
            raise _refuse(f"{name} with a non-literal or unbounded argument")
        if seconds > max_sleep_s:
            raise _refuse(f"{name} of {seconds:g} s is over the {max_sleep_s:g} s limit")
        return
    for pattern in DENIED_FUNCTIONS:
        if fnmatch.fnmatchcase(name, pattern):
            raise _refuse(f"function {name}() is on the deny list (it can write, signal or escape)")


def _sleep_seconds(name: str, args: tuple[Any, ...]) -> float | None:
    if name == "pg_sleep_until" or len(args) != 1:
        return None
    arg = args[0]
    while isinstance(arg, ast.TypeCast):
        arg = arg.arg
    if not isinstance(arg, ast.A_Const) or arg.isnull:
        return None
    value = arg.val
    if isinstance(value, ast.Integer):
        text = str(value.ival)
    elif isinstance(value, ast.Float):
        text = value.fval
    elif isinstance(value, ast.String):
        text = value.sval
    else:
        return None
    match = _INTERVAL.match(text.lower())
    if match is None or (name == "pg_sleep" and match.group(2)):
        return None
    return float(match.group(1)) * _UNIT_S.get(match.group(2) or "s", 1.0)


# --- layers 3 and 4: the read-only session ---------------------------------------------

_SERVER_CHECK = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_user::text AS role,
       current_setting('server_version') AS version,
       (SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user)
       OR has_database_privilege(current_database(), 'CREATE')
       OR EXISTS (
           SELECT 1 FROM pg_namespace n
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
             AND has_schema_privilege(n.oid, 'CREATE'))
       OR EXISTS (
           SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\\_toast%'
             AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND (has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                  OR (c.relkind = 'S' AND has_sequence_privilege(c.oid, 'UPDATE'))))
       AS can_write
"""


async def run_query(
    dsn: str, statement: str, limits: SqlLimits, *, max_sleep_s: float = 5.0, plan: bool = True
) -> SqlEvidence:
    """Check the statement again (whatever the caller did), run it read-only, return evidence.

    A sleep under max_sleep_s still stops at the statement_timeout. plan=False for a standard
    diagnostic: the plan of a catalog query tells the reader nothing about their database.
    """
    check_statement(
        statement, allow_explain_analyze=limits.allow_explain_analyze, max_sleep_s=max_sleep_s
    )
    return await execute_read_only(dsn, statement, limits, plan=plan)


async def execute_read_only(
    dsn: str, statement: str, limits: SqlLimits, *, plan: bool = True
) -> SqlEvidence:
    """Layers 3 and 4 alone: the replica check and the READ ONLY transaction with timeouts.

    Only for a statement that passed check_statement (tests call it directly to show the
    database refuses on its own); run_query is the entry point.
    """
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise AcpError(
            f"could not connect to the database: {_safe(error)}",
            hint="check that the replica is up and the DSN variable names the right host",
        ) from None
    try:
        server = dict(await conn.fetchrow(_SERVER_CHECK))
        if not server["in_recovery"] and server["can_write"] and not limits.primary_for_diagnostics:
            raise NotAReplica(
                f"the target is a primary and the role {server['role']!r} can write; "
                "the SQL tool only runs on a replica or as a role without write privileges",
                hint="point the DSN at a replica or a read-only role, or the policy must mark "
                "the target primary_for_diagnostics",
            )
        return await _run_in_read_only_transaction(conn, statement, limits, server, plan)
    finally:
        await conn.close(timeout=5)


async def _run_in_read_only_transaction(
    conn: asyncpg.Connection,
    statement: str,
    limits: SqlLimits,
    server: dict[str, Any],
    want_plan: bool,
) -> SqlEvidence:
    # The SELECT 1 takes the transaction's first snapshot: after it, nothing in the
    # transaction can switch it to read-write.
    await conn.execute(
        "BEGIN TRANSACTION READ ONLY;"
        f"SET LOCAL statement_timeout = {int(limits.statement_timeout_ms)};"
        f"SET LOCAL lock_timeout = {int(limits.lock_timeout_ms)};"
        "SET LOCAL idle_in_transaction_session_timeout = "
        f"{int(limits.idle_in_transaction_timeout_ms)};"
        "SELECT 1"
    )
    try:
        started = time.perf_counter()
        prepared = await conn.prepare(statement)
        cursor = await prepared.cursor()
        records = await cursor.fetch(limits.row_cap + 1)
        duration_ms = (time.perf_counter() - started) * 1000
        columns = [attr.name for attr in prepared.get_attributes()]
        plan = None
        if want_plan and isinstance(pglast.parse_sql(statement)[0].stmt, ast.SelectStmt):
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}")
            plan = json.loads(raw) if isinstance(raw, str) else raw
    except asyncpg.QueryCanceledError as error:
        if "statement timeout" in str(error):
            raise AcpError(
                f"the statement ran over the {limits.statement_timeout_ms} ms statement_timeout",
                hint="narrow the query (a WHERE, a LIMIT) or ask for a longer timeout",
            ) from None
        raise AcpError(f"the statement was cancelled: {_safe(error)}") from None
    except asyncpg.LockNotAvailableError:
        raise AcpError(
            f"the statement waited over the {limits.lock_timeout_ms} ms lock_timeout",
            hint="something holds a conflicting lock; try the 'locks' diagnostic",
        ) from None
    except (asyncpg.ReadOnlySQLTransactionError, asyncpg.InsufficientPrivilegeError) as error:
        raise ReadOnlyViolation(
            f"refused by the database: {_safe(error)}",
            hint="SQL jobs run read-only as a role without write privileges",
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise AcpError(f"the database refused the statement: {_safe(error)}") from None
    finally:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
    return _evidence(statement, columns, records, limits, duration_ms, plan, server)


def _safe(error: BaseException) -> str:
    return redact(str(error) or type(error).__name__)


# --- evidence ------------------------------------------------------------------------------


def _evidence(
    statement: str,
    columns: list[str],
    records: list[asyncpg.Record],
    limits: SqlLimits,
    duration_ms: float,
    plan: Any,
    server: dict[str, Any],
) -> SqlEvidence:
    truncated = len(records) > limits.row_cap
    records = records[: limits.row_cap]
    masked = {name.lower() for name in limits.mask_columns}
    mask_at = [i for i, name in enumerate(columns) if name.lower() in masked]
    rows: list[list[Any]] = []
    for record in records:
        row = [_json_safe(value) for value in record.values()]
        for i in mask_at:
            row[i] = MASK
        rows.append(row)
    return SqlEvidence(
        statement=statement,
        statement_sha256=hashlib.sha256(statement.encode()).hexdigest(),
        columns=columns,
        rows=rows,
        row_count=len(rows),
        truncated=truncated,
        duration_ms=duration_ms,
        plan=plan,
        csv=_csv(columns, rows),
        table=_table(columns, rows, truncated),
        server=server,
    )


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, asyncpg.Record):
        return [_json_safe(v) for v in value.values()]
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _csv(columns: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_text(v) for v in row] for row in rows)
    return out.getvalue()


TABLE_LINE = 120  # a row's width the columns share; each wraps at no less than TABLE_CELL
TABLE_CHARS = 100_000  # the text table stops at this size; the CSV has every row it kept


def _cell(value: Any, width: int) -> list[str]:
    """A value as the lines of its cell: its own lines, each wrapped at `width`, every
    character kept (a plan line is read whole, over two lines, not cut)."""
    lines = []
    for line in _text(value).replace("\t", " ").splitlines() or [""]:
        lines += [line[i : i + width] for i in range(0, len(line), width)] or [""]
    return lines


def _table(columns: list[str], rows: list[list[Any]], truncated: bool) -> str:
    wrap = max(TABLE_CELL, TABLE_LINE // max(len(columns), 1))
    header = [_cell(c, wrap) for c in columns]
    shown = [[_cell(v, wrap) for v in row] for row in rows[:TABLE_ROWS]]
    widths = [
        max(len(line) for cell in [header[i]] + [r[i] for r in shown] for line in cell)
        for i in range(len(columns))
    ]

    def text_of(cells: list[list[str]]) -> list[str]:
        height = max((len(cell) for cell in cells), default=1)
        return [
            " | ".join(
                (cell[n] if n < len(cell) else "").ljust(w)
                for cell, w in zip(cells, widths, strict=True)
            ).rstrip()
            for n in range(height)
        ]

    lines = [*text_of(header), "-+-".join("-" * w for w in widths)]
    room = TABLE_CHARS - sum(len(line) + 1 for line in lines)
    kept, part = 0, False
    for row in shown:
        row_lines = text_of(row)
        if sum(len(line) + 1 for line in row_lines) > room:
            while not kept and row_lines and len(row_lines[0]) < room:  # one row over it alone
                room -= len(row_lines[0]) + 1
                lines.append(row_lines.pop(0))
                part = True
            break
        lines += row_lines
        room -= sum(len(line) + 1 for line in row_lines)
        kept += 1
    footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
    if part:
        footer += f", the first in part (the text stops at {TABLE_CHARS:,} characters)"
    elif kept < len(shown):
        footer += f", first {kept} shown (the text stops at {TABLE_CHARS:,} characters)"
    elif len(rows) > TABLE_ROWS:
        footer += f", first {TABLE_ROWS} shown"
    if truncated:
        footer += ", stopped at the row cap"
    if kept < len(rows):
        footer += "; every row kept is in the result.csv artifact"
    lines.append(footer + ")")
    return "\n".join(lines) + "\n"
