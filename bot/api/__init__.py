"""The service API: `/api/v1/...` over a Unix socket under ACP_HOME (callers authenticated by
the kernel's peer credentials) and over HTTP (callers authenticated by API tokens).

The `acp` command and the web console are its clients; the service process is the only one
that writes the database. Handlers parse, call the engine, and return JSON; every rule stays in
runtime (who a caller is: runtime.identity; what a token may do: runtime.tokens).
"""
