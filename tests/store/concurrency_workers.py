"""Writer processes for test_concurrency.py: each runs CLI commands in a bounded loop.

They call `sidecar.cli.main`, the code `python -m sidecar` runs (opening the store included), in
processes of their own, and report on a queue what they did and when it returned, as
(what, subject, time.monotonic()); a token is reported as the Basic credential that presents it.
CLOCK_MONOTONIC is one clock for every process on Linux. Kept apart from the test module so a
spawned process imports little else.
"""

from __future__ import annotations

import base64
import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from sidecar import cli
from sidecar.store.sqlite import SqliteStore

Queue = Any  # a multiprocessing queue


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def basic(email: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()


def _mint(config: str, user: tuple[str, str], label: str, events: Queue) -> None:
    account, email = user
    code, out, err = run_cli(["token", "create", "api", "--config", config,
                              "--account-id", account, "--label", label, "--json"])
    if code != 0:
        events.put(("error", f"token create exited {code}: {err.strip()}", time.monotonic()))
        return
    token = str(json.loads(out)["token"])
    events.put(("minted", basic(email, token), time.monotonic()))


def minter(config: str, user: tuple[str, str], name: str, count: int, pause: float,
           events: Queue) -> None:
    """`token create api` for `user` (account id, email) `count` times."""
    for i in range(count):
        _mint(config, user, f"{name}-{i}", events)
        time.sleep(pause)
    events.put(("done", name, time.monotonic()))


def revoker(config: str, credentials: list[tuple[str, str]], name: str, pause: float,
            events: Queue) -> None:
    """`token revoke` each (token, Basic credential) in turn, the token pasted whole."""
    for token, credential in credentials:
        code, _, err = run_cli(["token", "revoke", "--config", config, token])
        if code != 0:
            events.put(("error", f"token revoke exited {code}: {err.strip()}", time.monotonic()))
        else:
            events.put(("revoked", credential, time.monotonic()))
        time.sleep(pause)
    events.put(("done", name, time.monotonic()))


def applier(config: str, policies: list[str], name: str, flips: int, pause: float,
            events: Queue) -> None:
    """`apply -f` the policies in turn, `flips` times; reports the index of the one applied."""
    for i in range(flips):
        which = (i + 1) % len(policies)
        code, _, err = run_cli(["apply", "--config", config, "-f", policies[which]])
        if code != 0:
            events.put(("error", f"apply exited {code}: {err.strip()}", time.monotonic()))
        else:
            events.put(("policy", str(which), time.monotonic()))
        time.sleep(pause)
    events.put(("done", name, time.monotonic()))


def opener(root: str, rounds: int, barrier: Any, results: Queue) -> None:
    """Open (so create) a brand-new store `root/<round>/state.db` at once with the others."""
    for r in range(rounds):
        barrier.wait(60)
        try:
            key = SqliteStore(Path(root) / str(r) / "state.db").token_key.hex()
        except Exception as exc:  # reported, not raised: the test names every failure
            results.put((r, "error", f"{type(exc).__name__}: {exc}"))
        else:
            results.put((r, "key", key))
