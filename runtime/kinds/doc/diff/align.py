"""Aligning two sequences of rows (sheet rows, DOCX blocks and table rows) into steps: pairs
of old and new positions, rows inserted and rows deleted. Works on hashable row keys and
similarity callbacks; knows no sheets or documents.

How rows are aligned: the common head and tail are dropped; rows that occur once on each side
and keep their order anchor the alignment (as in patience diff); the gaps between anchors are
aligned the same way, and a gap without such rows by difflib.SequenceMatcher (autojunk off).
Equal rows produce nothing, so rows inserted or deleted in the middle are reported once and
nothing below them is. In a replaced block rows are paired by similarity (most equal cells, at
least half of the filled ones; blocks up to PAIR_CAP row pairs), otherwise by position, and
unpaired rows count as inserted or deleted. The same functions align columns (a sheet's
columns by their values, runtime.kinds.doc.diff.workbook), so that a column inserted in the
middle is reported once and the cells right of it are compared with their moved column. Costs stay
near-linear: SequenceMatcher only sees gaps up to SM_LIMIT rows, and rows repeated thousands of
times are junk to it (see _repeated).
"""

from __future__ import annotations

import bisect
import difflib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

PAIR_CAP = 10_000  # replaced blocks up to this many old x new rows are paired by similarity
MATCH_BUDGET = 200_000  # old x new occurrences of equal rows SequenceMatcher may compare
SM_LIMIT = 4_000  # old + new rows of a gap without unique rows that SequenceMatcher may align
MAX_DEPTH = 16  # levels of patience anchoring before SequenceMatcher takes over

Step = tuple[int | None, int | None]  # (old index, new index); None on the side it is missing


def _opcodes(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    """The non-equal opcodes ("replace", "delete", "insert") aligning a with b, in order."""
    ids: dict[Any, int] = {}
    a_ids = [ids.setdefault(key, len(ids)) for key in a]
    b_ids = [ids.setdefault(key, len(ids)) for key in b]
    out: list[tuple[str, int, int, int, int]] = []
    _align(a_ids, b_ids, 0, len(a_ids), 0, len(b_ids), out, 0)
    return out


def _align(
    a: list[int],
    b: list[int],
    alo: int,
    ahi: int,
    blo: int,
    bhi: int,
    out: list[tuple[str, int, int, int, int]],
    depth: int,
) -> None:
    """Align a[alo:ahi] with b[blo:bhi], appending non-equal opcodes to `out`.

    The common head and tail are dropped; then rows that occur once on each side and keep
    their order (patience anchors: the longest increasing run) split the range, and each gap
    is aligned the same way. A gap with no such rows goes to SequenceMatcher (autojunk off),
    which finds the longest common runs but is quadratic when it finds many short ones, so it
    only sees gaps up to SM_LIMIT rows; a bigger gap is one replaced block.
    """
    while alo < ahi and blo < bhi and a[alo] == b[blo]:
        alo, blo = alo + 1, blo + 1
    while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
        ahi, bhi = ahi - 1, bhi - 1
    if alo == ahi or blo == bhi:
        if alo < ahi:
            out.append(("delete", alo, ahi, blo, blo))
        elif blo < bhi:
            out.append(("insert", alo, alo, blo, bhi))
        return
    anchors = _unique_anchors(a, b, alo, ahi, blo, bhi) if depth < MAX_DEPTH else []
    if anchors:
        i, j = alo, blo
        for ai, bj in [*anchors, (ahi, bhi)]:
            _align(a, b, i, ai, j, bj, out, depth + 1)
            i, j = ai + 1, bj + 1
        return
    if (ahi - alo) + (bhi - blo) > SM_LIMIT:
        out.append(("replace", alo, ahi, blo, bhi))
        return
    sub_a, sub_b = a[alo:ahi], b[blo:bhi]
    junk = _repeated(sub_a, sub_b)
    matcher = difflib.SequenceMatcher(
        junk.__contains__ if junk else None, sub_a, sub_b, autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.append((tag, i1 + alo, i2 + alo, j1 + blo, j2 + blo))


def _unique_anchors(
    a: list[int], b: list[int], alo: int, ahi: int, blo: int, bhi: int
) -> list[tuple[int, int]]:
    """Pairs (i, j) of rows occurring once in each range, the longest run in the same order."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    where_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1}
    pairs = [(i, where_b[a[i]]) for i in range(alo, ahi) if count_a[a[i]] == 1 and a[i] in where_b]
    tails: list[int] = []  # smallest j ending an increasing run of each length
    ends: list[int] = []  # index in pairs of that j
    before = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            ends.append(n)
        else:
            tails[k], ends[k] = j, n
        before[n] = ends[k - 1] if k else -1
    run: list[tuple[int, int]] = []
    n = ends[-1] if ends else -1
    while n >= 0:
        run.append(pairs[n])
        n = before[n]
    return run[::-1]


def _repeated(a: Sequence[Any], b: Sequence[Any]) -> set[Any]:
    """Keys repeated so often on both sides that matching them would be quadratic.

    SequenceMatcher (autojunk off) compares every old occurrence of a key with every new one,
    so a sheet with thousands of identical rows would take minutes. The keys with the most
    old x new occurrences, until the rest is under MATCH_BUDGET, are treated as junk: they do
    not start a match, but still extend one, so runs of them next to other rows still align.
    Ordinary sheets have no such keys and are aligned exactly.
    """
    old_counts, new_counts = Counter(a), Counter(b)
    cost = {key: n * new_counts[key] for key, n in old_counts.items() if key in new_counts}
    total = sum(cost.values())
    junk: set[Any] = set()
    for key, pairs in sorted(cost.items(), key=lambda item: -item[1]):
        if total <= MATCH_BUDGET:
            break
        junk.add(key)
        total -= pairs
    return junk


def _steps(
    old_keys: Sequence[Any],
    new_keys: Sequence[Any],
    similarity: Callable[[int, int], float],
    compatible: Callable[[int, int], bool] | None = None,
    *,
    equal: bool = False,
) -> Iterator[Step]:
    """Every old / new position that is not part of an equal run, in order; with `equal`,
    the pairs of equal runs too."""
    i = j = 0
    for tag, i1, i2, j1, j2 in _opcodes(old_keys, new_keys):
        if equal:
            yield from zip(range(i, i1), range(j, j1), strict=True)
        i, j = i2, j2
        if tag == "delete":
            yield from ((i, None) for i in range(i1, i2))
        elif tag == "insert":
            yield from ((None, j) for j in range(j1, j2))
        else:
            yield from _replace_steps(i1, i2, j1, j2, similarity, compatible)
    if equal:
        yield from zip(range(i, len(old_keys)), range(j, len(new_keys)), strict=True)


def _replace_steps(
    i1: int,
    i2: int,
    j1: int,
    j2: int,
    similarity: Callable[[int, int], float],
    compatible: Callable[[int, int], bool] | None,
) -> Iterator[Step]:
    """A replaced block: similar pairs first, positions in the gaps between them."""
    pairs = _similar_pairs(i1, i2, j1, j2, similarity) if (i2 - i1) * (j2 - j1) <= PAIR_CAP else []
    i, j = i1, j1
    for pi, pj in [*pairs, (i2, j2)]:
        yield from _positional_steps(i, pi, j, pj, compatible)
        if pi < i2:
            yield pi, pj
        i, j = pi + 1, pj + 1


def _positional_steps(
    i1: int, i2: int, j1: int, j2: int, compatible: Callable[[int, int], bool] | None
) -> Iterator[Step]:
    n = min(i2 - i1, j2 - j1)
    for k in range(n):
        if compatible is None or compatible(i1 + k, j1 + k):
            yield i1 + k, j1 + k
        else:
            yield i1 + k, None
            yield None, j1 + k
    yield from ((i, None) for i in range(i1 + n, i2))
    yield from ((None, j) for j in range(j1 + n, j2))


def _similar_pairs(
    i1: int, i2: int, j1: int, j2: int, similarity: Callable[[int, int], float]
) -> list[tuple[int, int]]:
    """The in-order pairing of old[i1:i2] with new[j1:j2] with the most total similarity."""
    n, m = i2 - i1, j2 - j1
    score = [[similarity(i1 + a, j1 + b) for b in range(m)] for a in range(n)]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for a in range(n):
        above, row, scores = best[a], best[a + 1], score[a]
        for b in range(m):
            value = max(above[b + 1], row[b])
            if scores[b] > 0 and above[b] + scores[b] > value:
                value = above[b] + scores[b]
            row[b + 1] = value
    pairs: list[tuple[int, int]] = []
    a, b = n, m
    while a and b:
        s = score[a - 1][b - 1]
        if s > 0 and best[a][b] == best[a - 1][b - 1] + s:
            pairs.append((i1 + a - 1, j1 + b - 1))
            a, b = a - 1, b - 1
        elif best[a][b] == best[a - 1][b]:
            a -= 1
        else:
            b -= 1
    return pairs[::-1]


def _row_similarity(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Equal non-empty cells at the same column, if at least half of the filled ones; else 0."""
    matches = sum(1 for x, y in zip(a, b, strict=False) if x == y and x is not None and x != "")
    filled = max(_filled(a), _filled(b))
    return float(matches) if matches and 2 * matches >= filled else 0.0


def _filled(row: Sequence[Any]) -> int:
    return sum(1 for x in row if x is not None and x != "")


def _runs(items: Iterator[tuple[Step, Any]]) -> Iterator[list[tuple[Step, Any]]]:
    """(step, payload) grouped into runs of one kind (paired, inserted, deleted) at
    consecutive rows."""
    run: list[tuple[Step, Any]] = []
    for item in items:
        step = item[0]
        if run and _kind(step) == _kind(run[-1][0]) and _follows(run[-1][0], step):
            run.append(item)
            continue
        if run:
            yield run
        run = [item]
    if run:
        yield run


def _kind(step: Step) -> Literal["changed", "inserted", "deleted"]:
    return "deleted" if step[1] is None else "inserted" if step[0] is None else "changed"


def _follows(prev: Step, step: Step) -> bool:
    """Whether `step` is the row after `prev` on each side both have."""
    return all(p is None or s == p + 1 for p, s in zip(prev, step, strict=True) if s is not None)
