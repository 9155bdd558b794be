"""The browser tool: one Chromium context per job, governed at the network layer.

A package by concept: the grant and its rule (grant.py), the worker's Chromium (chromium.py)
and how it is launched in its network namespace behind the egress proxy (launch.py), the
session (session.py) and its parts: steps (steps.py), holds for approval (pending.py,
hold.py), the network guard (guard.py), the trace (trace.py), reading the page (observe.py),
scrubbing secrets (scrub.py) and bounded calls (deadline.py). The names below are the tool's
public ones.
"""

from runtime.tools.browser.chromium import (
    CHROMIUM_ARGS,
    SYSTEM_CHROMIUM,
    browser_executable,
    chromium_path,
    close_shared_browser,
    launch_browser,
    shared_browser,
)
from runtime.tools.browser.deadline import BrowserTimeout
from runtime.tools.browser.grant import BrowserGrant, host_allowed, refusal_reason
from runtime.tools.browser.pending import HeldAction, HeldRequest, MutationPending, PageChanged
from runtime.tools.browser.scrub import secret_pattern
from runtime.tools.browser.session import BrowserSession
from runtime.tools.browser.steps import MUTATING_WORDS, StepResult

__all__ = [
    "CHROMIUM_ARGS",
    "MUTATING_WORDS",
    "SYSTEM_CHROMIUM",
    "BrowserGrant",
    "BrowserSession",
    "BrowserTimeout",
    "HeldAction",
    "HeldRequest",
    "MutationPending",
    "PageChanged",
    "StepResult",
    "browser_executable",
    "chromium_path",
    "close_shared_browser",
    "host_allowed",
    "launch_browser",
    "refusal_reason",
    "secret_pattern",
    "shared_browser",
]
