"""`python -m bot.cli`: the `acp` command, as the worker supervisor and the tests start it."""

from bot.cli import run

run()
