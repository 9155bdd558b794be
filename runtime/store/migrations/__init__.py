"""Alembic migrations of the control plane's database, one file per revision in versions/.

Run through runtime.store.migrate (`acp db upgrade`), never the alembic command: the runtime
passes the connection, holds the upgrade lock and refuses a database from the future.
"""
