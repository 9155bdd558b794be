"""Benchmark: what signed checkpoints and the Merkle tree cost the audit log (SQLite).

  append  -> events/s appended one per transaction with the service's Checkpointer running
             (every 1,000 events or 1 s) vs without it, same run, alternating; budget: <= 10%
  verify  -> `verify` of N events (default 1,000,000) checking 4 signed checkpoints (chain +
             Merkle roots + signatures) vs the same verify with no checkpoint; budget: <= 3 s

Run:  .venv/bin/python bench/audit_checkpoints.py [--rounds 5] [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audit_rate import append_chain, fill, make_events  # noqa: E402

from runtime import audit  # noqa: E402
from runtime.audit.checkpoints import Checkpointer  # noqa: E402
from runtime.audit.merkle import Frontier, event_leaf  # noqa: E402
from runtime.policy.schema import AuditCheckpoints  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.store import audit_store, migrate  # noqa: E402
from runtime.store.database import Database  # noqa: E402


async def append_round(db: Database, settings: Settings, n: int, with_checkpointer: bool) -> float:
    events = make_events(n, seed=5)
    if not with_checkpointer:
        return await append_chain(db, events, 1)
    spec = AuditCheckpoints(every_events=1000, every_seconds=1)
    checkpointer = Checkpointer(settings, db, spec)
    stop = asyncio.Event()
    task = asyncio.create_task(checkpointer.run(stop))
    try:
        return await append_chain(db, events, 1)
    finally:
        stop.set()
        await task


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--append-n", type=int, default=3000)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{tmp}/a.db",
                            policy_dir=ROOT / "policies")  # fmt: skip
        db = Database(settings.database_url)
        await migrate.upgrade(db)
        plain, with_cp = [], []
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for flag in order:
                rate = await append_round(db, settings, args.append_n, flag)
                (with_cp if flag else plain).append(rate)
            print(f"  round {r + 1}: without {plain[-1]:,.0f}/s  with {with_cp[-1]:,.0f}/s",
                  flush=True)  # fmt: skip
        a, b = statistics.median(plain), statistics.median(with_cp)
        print(f"append 1/txn: without checkpointer {a:,.0f}/s, with {b:,.0f}/s: "
              f"ratio {b / a:.3f} (cost {100 * (1 - b / a):+.1f}%, budget <= 10%)")  # fmt: skip

        await fill(db, args.events, 20_000)
        total = await audit_store.last_seq(db)
        checkpointer = Checkpointer(settings, db, AuditCheckpoints())
        frontier = Frontier()
        sizes = {total // 4, total // 2, 3 * total // 4, total}
        while hashes := await audit_store.hashes_after(db, frontier.size):
            for digest in hashes:
                frontier.append(event_leaf(digest))
                if frontier.size in sizes:
                    text = checkpointer.signer.checkpoint(frontier.size, frontier.root())
                    settings.checkpoints_dir.mkdir(parents=True, exist_ok=True)
                    (settings.checkpoints_dir / f"{frontier.size}.txt").write_text(text)
        store = audit.ArtifactStore(settings.artifacts_dir)
        bare, signed = [], []
        for _ in range(3):
            started = time.perf_counter()
            await audit.verify(db, store)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = await audit.verify(db, store, settings=settings)
            signed.append(time.perf_counter() - started)
            assert (report.checkpoints_checked or 0) >= 4, report
        s, v = statistics.median(bare), statistics.median(signed)
        print(f"verify {total:,} events: without checkpoints {s:.2f}s, with "
              f"{report.checkpoints_checked} signed checkpoints {v:.2f}s "
              f"(ratio {v / s:.2f}, budget <= 3 s)")  # fmt: skip
        await db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
