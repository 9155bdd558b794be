"""The standard SQL diagnostics: the catalog queries a DBA acts on, and the words that pick one.

Each query is read-only, scoped to the target's own database (a statement run in another
database on the same server never shows up) and, for the statement lists, leaves out the
reading role's own statements (the tool's probes among them). Pure data: this module must
never import a database driver or touch a connection.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "DEFAULT_LIMIT",
    "DIAGNOSTICS",
    "MAX_LIMIT",
    "STATEMENT_WORDS",
    "Diagnostic",
    "match_diagnostic",
]

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


class Diagnostic(NamedTuple):
    description: str  # what it shows, in a line
    sql: str  # with {limit}
    keywords: tuple[str, ...]  # the phrases that pick it, lower case, matched as whole words


# The scope every statement list shares: this database, other roles than the reader's.
_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
_SCOPED_STATEMENTS = (
    "SELECT s.*, sum(s.total_exec_time) OVER () AS scope_total_ms "
    "FROM pg_stat_statements s "
    f"WHERE s.dbid = {_THIS_DATABASE} "
    "AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
)
_STATEMENT_COLUMNS = (
    "queryid, calls, round(total_exec_time::numeric, 2) AS total_ms, "
    "round(mean_exec_time::numeric, 3) AS mean_ms, "
    "round(stddev_exec_time::numeric, 3) AS stddev_ms, "
    "round((100 * total_exec_time / nullif(scope_total_ms, 0))::numeric, 1) AS share_pct, "
    "rows, round(100.0 * shared_blks_hit / nullif(shared_blks_hit + shared_blks_read, 0), 1) "
    "AS hit_pct"
)


def _top_statements(order: str, extra: str = "") -> str:
    return (
        f"WITH s AS ({_SCOPED_STATEMENTS}) SELECT {_STATEMENT_COLUMNS}{extra}, "
        f"left(query, 200) AS query FROM s ORDER BY {order}, queryid LIMIT {{limit}}"
    )


# Words that ask for the statement lists in general (alone: the total-time list); each list
# adds its own order words, so "slowest by mean time" matches the mean list more.
STATEMENT_WORDS = (
    "slowest",
    "slow",
    "slow queries",
    "slow statements",
    "top queries",
    "top statements",
    "expensive",
    "hot spot",
    "hot spots",
    "pg_stat_statements",
)

_TABLE_BLOAT = """
SELECT c.oid, c.relname, n.nspname, c.relpages, c.reltuples, c.reltoastrelid,
       coalesce(substring(array_to_string(c.reloptions, ',') FROM 'fillfactor=(\\d+)')::int,
                100) AS fillfactor,
       s.datawidth, s.nullhdr, s.covered
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT sum((1 - st.null_frac) * st.avg_width) AS datawidth,
           CASE WHEN max(st.null_frac) > 0 THEN ceil(count(*) / 8.0) ELSE 0 END AS nullhdr,
           count(st.attname) = (SELECT count(*) FROM pg_attribute a
                                WHERE a.attrelid = c.oid AND a.attnum > 0
                                  AND NOT a.attisdropped) AS covered
    FROM pg_stats st
    WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited
) s ON true
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
"""
# A heap tuple: a 23-byte header plus the null bitmap, aligned to 8, then the data aligned
# to 8, and a 4-byte line pointer; a page has 24 bytes of header and is filled to fillfactor.
_EXPECTED_TABLE_PAGES = (
    "ceil(t.reltuples * (ceil((23 + t.nullhdr) / 8.0) * 8 + ceil(t.datawidth / 8.0) * 8 + 4)"
    " / ((current_setting('block_size')::int - 24) * t.fillfactor / 100.0))"
)
_INDEX_BLOAT = """
SELECT i.indexrelid, i.indrelid, ic.relpages, ic.reltuples,
       coalesce(substring(array_to_string(ic.reloptions, ',') FROM 'fillfactor=(\\d+)')::int,
                90) AS fillfactor,
       (SELECT sum(st.avg_width) FROM pg_attribute a
        JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = tc.relname
                        AND st.attname = a.attname AND NOT st.inherited
        WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) AS keywidth,
       i.indexprs IS NULL AND am.amname = 'btree' AS estimable
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class tc ON tc.oid = i.indrelid
JOIN pg_namespace n ON n.oid = tc.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
"""
# A btree leaf tuple: an 8-byte header and the keys aligned to 8, plus a 4-byte line
# pointer; a page has 24 bytes of header and 16 of btree special space, the meta page one.
_EXPECTED_INDEX_PAGES = (
    "(1 + ceil(x.reltuples * (8 + ceil(x.keywidth / 8.0) * 8 + 4)"
    " / ((current_setting('block_size')::int - 40) * x.fillfactor / 100.0)))"
)

_SIZES = f"""
WITH t AS ({_TABLE_BLOAT}), x AS ({_INDEX_BLOAT}),
tables AS (
    SELECT 'table' AS kind, t.nspname AS schema, t.relname AS relation, NULL::text AS on_table,
           pg_relation_size(t.oid) AS bytes, pg_total_relation_size(t.oid) AS total_bytes,
           t.reltuples::bigint AS rows,
           CASE WHEN t.covered AND t.relpages > 0
                THEN greatest(t.relpages - {_EXPECTED_TABLE_PAGES}, 0)
                     * current_setting('block_size')::int END AS bloat_bytes,
           CASE WHEN NOT coalesce(t.covered, false)
                THEN 'no bloat estimate: no statistics readable (ANALYZE, or SELECT on it)'
           END AS note
    FROM t
),
indexes AS (
    SELECT 'index', n.nspname, ic.relname, tc.relname,
           pg_relation_size(x.indexrelid), NULL::bigint, x.reltuples::bigint,
           CASE WHEN x.estimable AND x.keywidth IS NOT NULL AND x.relpages > 1
                THEN greatest(x.relpages - {_EXPECTED_INDEX_PAGES}, 0)
                     * current_setting('block_size')::int END,
           CASE WHEN NOT x.estimable THEN 'no bloat estimate: not a plain btree index'
                WHEN x.keywidth IS NULL
                THEN 'no bloat estimate: no statistics readable for its columns' END
    FROM x
    JOIN pg_class ic ON ic.oid = x.indexrelid
    JOIN pg_class tc ON tc.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = tc.relnamespace
)
SELECT kind, schema, relation, on_table, pg_size_pretty(bytes) AS size, bytes,
       pg_size_pretty(total_bytes) AS with_indexes_and_toast, rows,
       pg_size_pretty(bloat_bytes::bigint) AS est_bloat,
       round((100 * bloat_bytes / nullif(bytes, 0))::numeric, 1) AS est_bloat_pct, note
FROM (SELECT * FROM tables UNION ALL SELECT * FROM indexes) r
ORDER BY bytes DESC, relation LIMIT {{limit}}
"""

_CACHE_HIT = """
SELECT kind, schema, relation, on_table, hits, reads,
       round(100.0 * hits / nullif(hits + reads, 0), 2) AS hit_pct
FROM (
    SELECT 'database' AS kind, NULL::name AS schema, datname AS relation, NULL::name AS on_table,
           blks_hit AS hits, blks_read AS reads, 0 AS rank
    FROM pg_stat_database WHERE datname = current_database()
    UNION ALL
    SELECT 'table', schemaname, relname, NULL,
           heap_blks_hit + coalesce(toast_blks_hit, 0),
           heap_blks_read + coalesce(toast_blks_read, 0), 1
    FROM pg_statio_user_tables
    UNION ALL
    SELECT 'index', schemaname, indexrelname, relname, idx_blks_hit, idx_blks_read, 1
    FROM pg_statio_user_indexes
) r
ORDER BY rank, reads DESC, hits DESC, relation LIMIT {limit}
"""

_CONSTRAINT_MARK = (
    "CASE WHEN i.indisprimary THEN 'primary key' "
    "WHEN con.contype = 'u' THEN 'unique constraint' "
    "WHEN con.contype = 'x' THEN 'exclusion constraint' "
    "WHEN i.indisunique THEN 'unique index' ELSE '' END"
)
_INDEX_CONSTRAINT = "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid"

_UNUSED_INDEXES = f"""
SELECT u.schemaname AS schema, u.relname AS on_table, u.indexrelname AS index, u.idx_scan,
       pg_size_pretty(pg_relation_size(u.indexrelid)) AS size,
       {_CONSTRAINT_MARK} AS enforces,
       CASE WHEN i.indisunique OR con.contype IS NOT NULL
            THEN 'keep: it enforces a constraint even if never scanned'
            ELSE 'candidate to drop' END AS verdict,
       (SELECT coalesce(stats_reset, pg_postmaster_start_time()) FROM pg_stat_database
        WHERE datname = current_database()) AS unused_since
FROM pg_stat_user_indexes u
JOIN pg_index i ON i.indexrelid = u.indexrelid
{_INDEX_CONSTRAINT}
WHERE u.idx_scan = 0
ORDER BY (i.indisunique OR con.contype IS NOT NULL), pg_relation_size(u.indexrelid) DESC,
         u.indexrelname
LIMIT {{limit}}
"""

_DUPLICATE_INDEXES = f"""
WITH ix AS (
    SELECT i.indexrelid, i.indrelid, i.indkey::text AS keys, i.indclass::text AS classes,
           i.indcollation::text AS collations, coalesce(pg_get_expr(i.indexprs, i.indrelid), '')
           AS exprs, coalesce(pg_get_expr(i.indpred, i.indrelid), '') AS pred, i.indisunique,
           i.indisprimary, ic.relam, {_CONSTRAINT_MARK} AS enforces
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    {_INDEX_CONSTRAINT}
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
),
pairs AS (
    SELECT a.indexrelid AS redundant, b.indexrelid AS kept, a.enforces, b.enforces AS kept_enforces,
           CASE WHEN a.keys = b.keys THEN 'duplicate' ELSE 'prefix' END AS how
    FROM ix a JOIN ix b ON a.indrelid = b.indrelid AND a.indexrelid <> b.indexrelid
     AND a.relam = b.relam AND a.pred = b.pred
    WHERE (a.keys = b.keys AND a.classes = b.classes AND a.collations = b.collations
           AND a.exprs = b.exprs
           AND ((a.enforces = '' AND b.enforces <> '')
                OR ((a.enforces = '') = (b.enforces = '') AND a.indexrelid > b.indexrelid)))
       OR (NOT a.indisunique AND a.exprs = '' AND b.exprs = ''
           AND a.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
           AND b.keys LIKE a.keys || ' %' AND b.classes LIKE a.classes || ' %')
)
SELECT n.nspname AS schema, tc.relname AS on_table, ra.relname AS index, p.how,
       rb.relname AS covered_by, pg_size_pretty(pg_relation_size(p.redundant)) AS size,
       nullif(p.enforces, '') AS index_enforces, nullif(p.kept_enforces, '') AS covered_by_enforces,
       pg_get_indexdef(p.redundant) AS definition
FROM pairs p
JOIN pg_class ra ON ra.oid = p.redundant
JOIN pg_class rb ON rb.oid = p.kept
JOIN pg_index i ON i.indexrelid = p.redundant
JOIN pg_class tc ON tc.oid = i.indrelid
JOIN pg_namespace n ON n.oid = tc.relnamespace
ORDER BY pg_relation_size(p.redundant) DESC, ra.relname LIMIT {{limit}}
"""

_SEQ_SCANS = """
SELECT schemaname AS schema, relname AS relation, seq_scan, seq_tup_read,
       seq_tup_read / nullif(seq_scan, 0) AS rows_per_scan,
       coalesce(idx_scan, 0) AS idx_scan,
       round(100.0 * seq_scan / nullif(seq_scan + coalesce(idx_scan, 0), 0), 1) AS seq_pct,
       n_live_tup AS live_rows, pg_size_pretty(pg_relation_size(relid)) AS size
FROM pg_stat_user_tables
WHERE seq_scan > 0
ORDER BY seq_tup_read DESC, seq_scan DESC, relname LIMIT {limit}
"""

# PostgreSQL stops assigning transaction ids 3 million short of the 2^31 horizon.
_VACUUM = """
WITH settings AS (
    SELECT current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
           current_setting('autovacuum_vacuum_threshold')::bigint AS vac_threshold,
           current_setting('autovacuum_vacuum_scale_factor')::float8 AS vac_scale
)
SELECT kind, schema, relation, dead_rows, dead_pct, vacuum_due, last_vacuum, last_analyze,
       modified_since_analyze, xid_age, freeze_max_age - xid_age AS xids_to_forced_freeze,
       2147483648 - 3000000 - xid_age AS xids_to_wraparound_stop,
       round(100.0 * xid_age / (2147483648 - 3000000), 2) AS wraparound_pct
FROM (
    SELECT 'database' AS kind, NULL::name AS schema, d.datname AS relation,
           NULL::bigint AS dead_rows,
           NULL::numeric AS dead_pct, NULL::bool AS vacuum_due, NULL::timestamptz AS last_vacuum,
           NULL::timestamptz AS last_analyze, NULL::bigint AS modified_since_analyze,
           age(d.datfrozenxid)::bigint AS xid_age, s.freeze_max_age, 0 AS rank
    FROM pg_database d, settings s WHERE d.datname = current_database()
    UNION ALL
    SELECT 'table', t.schemaname, t.relname, t.n_dead_tup,
           round(100.0 * t.n_dead_tup / nullif(t.n_live_tup + t.n_dead_tup, 0), 1),
           t.n_dead_tup > s.vac_threshold + s.vac_scale * greatest(c.reltuples, 0),
           greatest(t.last_vacuum, t.last_autovacuum), greatest(t.last_analyze, t.last_autoanalyze),
           t.n_mod_since_analyze,
           greatest(age(c.relfrozenxid), coalesce(age(toast.relfrozenxid), 0))::bigint,
           s.freeze_max_age, 1
    FROM pg_stat_user_tables t
    JOIN pg_class c ON c.oid = t.relid
    LEFT JOIN pg_class toast ON toast.oid = c.reltoastrelid
    CROSS JOIN settings s
) r
ORDER BY rank, dead_rows DESC NULLS LAST, xid_age DESC, relation LIMIT {limit}
"""

_REPLICATION_LAG = """
SELECT CASE WHEN pg_is_in_recovery() THEN 'replica'
            ELSE 'not a replica' END AS status,
       CASE WHEN pg_is_in_recovery() THEN
                CASE WHEN pg_last_wal_receive_lsn() IS NULL
                     THEN 'replaying from archive: no WAL receiver' ELSE 'streaming' END
            ELSE 'pg_is_in_recovery() is false: this server is a primary, with '
                 || (SELECT count(*) FROM pg_stat_replication) || ' standby(s) connected'
       END AS detail,
       pg_last_wal_receive_lsn()::text AS received_lsn,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS replay_lag_bytes,
       now() - pg_last_xact_replay_timestamp() AS since_last_replayed_commit,
       pg_last_xact_replay_timestamp() AS last_replayed_commit
LIMIT {limit}
"""

_LOCKS = """
WITH RECURSIVE blocked AS (
    SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by
    FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
      AND cardinality(pg_blocking_pids(a.pid)) > 0
),
roots AS (
    SELECT DISTINCT unnest(b.blocked_by) AS pid FROM blocked b
    EXCEPT SELECT pid FROM blocked
),
chain AS (
    SELECT r.pid, r.pid AS root, r.pid::text AS path, 0 AS depth FROM roots r
    UNION ALL
    SELECT b.pid, c.root, c.path || ' -> ' || b.pid, c.depth + 1
    FROM chain c JOIN blocked b ON c.pid = ANY (b.blocked_by)
    WHERE c.depth < 20
),
held AS (
    SELECT l.pid, string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')
           AS holds
    FROM pg_locks l
    WHERE l.granted AND l.relation IS NOT NULL AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    GROUP BY l.pid
)
SELECT c.root AS root_blocker, c.path AS chain, a.pid, a.usename, a.state, b.blocked_by,
       (SELECT string_agg(l.mode || ' on ' || CASE
                WHEN l.relation IS NOT NULL THEN l.relation::regclass::text
                WHEN l.locktype = 'transactionid'
                THEN 'a row locked by transaction ' || l.transactionid
                ELSE l.locktype END, ', ')
        FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) AS waiting_for,
       h.holds, now() - a.xact_start AS in_transaction_for,
       now() - a.state_change AS in_state_for, left(a.query, 200) AS query
FROM pg_stat_activity a
LEFT JOIN chain c ON c.pid = a.pid
LEFT JOIN blocked b ON b.pid = a.pid
LEFT JOIN held h ON h.pid = a.pid
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND (c.pid IS NOT NULL OR h.pid IS NOT NULL)
ORDER BY c.root NULLS LAST, c.path, a.xact_start, a.pid LIMIT {limit}
"""

_LONG_RUNNING = """
SELECT pid, usename, application_name, client_addr, state, wait_event_type, wait_event,
       now() - xact_start AS in_transaction_for, now() - query_start AS query_running_for,
       now() - state_change AS in_state_for, age(backend_xmin) AS xmin_age,
       left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND state IS DISTINCT FROM 'idle'
ORDER BY coalesce(xact_start, query_start) NULLS LAST, pid LIMIT {limit}
"""

DIAGNOSTICS: dict[str, Diagnostic] = {
    "top_total_time": Diagnostic(
        "statements by total execution time, with calls, mean, stddev, share of the "
        "database's total, rows and shared-buffer hit ratio (pg_stat_statements)",
        _top_statements("total_exec_time DESC"),
        (*STATEMENT_WORDS, "total time", "total", "most time"),
    ),
    "top_mean_time": Diagnostic(
        "statements by mean execution time (pg_stat_statements)",
        _top_statements("mean_exec_time DESC"),
        (*STATEMENT_WORDS, "mean", "mean time", "average", "avg", "per call"),
    ),
    "top_calls": Diagnostic(
        "statements called most often (pg_stat_statements)",
        _top_statements("calls DESC"),
        (
            *STATEMENT_WORDS,
            "most called",
            "calls",
            "frequent",
            "most frequent",
            "most run",
            "often",
        ),
    ),
    "top_io": Diagnostic(
        "statements by blocks read from outside shared buffers, temp blocks too "
        "(pg_stat_statements)",
        _top_statements(
            "shared_blks_read + local_blks_read + temp_blks_read + temp_blks_written DESC",
            ", shared_blks_read, temp_blks_read + temp_blks_written AS temp_blks, "
            "round((blk_read_time + blk_write_time)::numeric, 2) AS io_ms",
        ),
        (*STATEMENT_WORDS, "i/o", "io", "reads", "disk reads", "blocks read"),
    ),
    "cache_hit": Diagnostic(
        "shared-buffer cache hit ratio of the database, then each table and index, most "
        "reads first (pg_stat_database, pg_statio_user_*)",
        _CACHE_HIT,
        ("cache hit", "cache hits", "hit ratio", "hit rate", "buffer cache", "cache"),
    ),
    "table_sizes": Diagnostic(
        "table and index sizes, largest first, with estimated bloat (catalog estimate from "
        "pg_stats; no extension needed)",
        _SIZES,
        (
            "table sizes",
            "table size",
            "largest tables",
            "biggest tables",
            "index sizes",
            "sizes",
            "size",
            "bloat",
            "disk usage",
        ),
    ),
    "unused_indexes": Diagnostic(
        "indexes never scanned since the statistics were reset, droppable ones first; "
        "primary keys and unique ones marked 'keep'",
        _UNUSED_INDEXES,
        (
            "unused indexes",
            "unused index",
            "index usage",
            "least used indexes",
            "unused",
            "index",
            "indexes",
            "indices",
        ),
    ),
    "duplicate_indexes": Diagnostic(
        "indexes with the same keys as another, or a prefix of another btree, with the "
        "constraint each enforces",
        _DUPLICATE_INDEXES,
        (
            "duplicate indexes",
            "duplicate index",
            "redundant indexes",
            "redundant index",
            "duplicate",
            "duplicates",
        ),
    ),
    "seq_scans": Diagnostic(
        "tables read by sequential scans, most rows read first, with rows per scan and "
        "index scans (pg_stat_user_tables)",
        _SEQ_SCANS,
        (
            "seq scans",
            "seq scan",
            "sequential scans",
            "sequential scan",
            "sequential",
            "full scans",
            "table scans",
        ),
    ),
    "vacuum": Diagnostic(
        "dead rows, last vacuum and analyze, and transaction-id age with the distance to "
        "wraparound, for the database and each table",
        _VACUUM,
        (
            "vacuum",
            "autovacuum",
            "wraparound",
            "analyze",
            "dead tuples",
            "dead rows",
            "dead tuple",
            "xid age",
            "freeze",
        ),
    ),
    "replication_lag": Diagnostic(
        "on a replica, WAL received vs replayed and the time since the last replayed "
        "commit; on a primary, says it is not a replica",
        _REPLICATION_LAG,
        ("replication lag", "replica lag", "replication", "standby lag", "lag"),
    ),
    "locks": Diagnostic(
        "sessions in this database holding or awaiting locks, blocking chains first: who "
        "blocks whom, the lock awaited, the locks held, for how long",
        _LOCKS,
        ("locks", "lock", "blocking", "blocked", "lock waits", "waiting"),
    ),
    "long_running": Diagnostic(
        "sessions in this database that are not idle: long-running queries and idle in "
        "transaction, longest open first",
        _LONG_RUNNING,
        (
            "long running",
            "long-running",
            "idle in transaction",
            "running queries",
            "sessions",
            "activity",
            "active",
            "running",
        ),
    ),
}


def _phrase(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w/]){re.escape(phrase)}(?![\w/])")


_PATTERNS = {
    name: tuple(_phrase(word) for word in diagnostic.keywords)
    for name, diagnostic in DIAGNOSTICS.items()
}


def match_diagnostic(instruction: str) -> tuple[str, str] | None:
    """(name, sql) for a standard diagnostic named in plain words, e.g. 'top 10 slowest queries'.

    The diagnostic with the most of its phrases in the words wins; a tie goes to the one
    listed first (so plain 'slowest queries' is by total time). A number is the row limit.
    """
    text = instruction.lower()
    best: tuple[int, str] | None = None
    for name, patterns in _PATTERNS.items():
        score = sum(1 for pattern in patterns if pattern.search(text))
        if score and (best is None or score > best[0]):
            best = (score, name)
    if best is None:
        return None
    number = re.search(r"\b(\d{1,6})\b", text)
    limit = min(max(int(number.group(1)), 1), MAX_LIMIT) if number else DEFAULT_LIMIT
    name = best[1]
    return name, DIAGNOSTICS[name].sql.format(limit=limit)
