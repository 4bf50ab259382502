"""`assets-authz explain`: one JSON decision on stdout, the same code as serve, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.cli import main

from .world import World

BASE = "/jsm/assets/workspace/ws-1/v1"


def explain(capsys: pytest.CaptureFixture[str], world: World, *args: str) -> tuple[int, str, str]:
    code = main(["explain", "--config", str(world.config_path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_allow_with_trace(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    token = world.oauth("acc-ann", "read:cmdb-object:jira")
    code, out, _ = explain(capsys, world, "--method", "GET", "--path", f"{BASE}/object/88",
                           "-H", f"Authorization: {token}")
    assert code == 0
    result = json.loads(out)  # exactly one JSON object
    assert result["decision"] == "allow" and result["status"] == 200
    assert result["identity"]["role"] == "manager"
    assert [s["layer"] for s in result["trace"]] == [
        "request", "route", "authentication", "operation", "permission", "target", "role",
    ]


def test_deny_is_still_exit_zero(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, world, "--method", "POST", "--path", f"{BASE}/object/create",
                           "-H", f"Authorization: {world.basic('acc-zed')}")
    assert code == 0
    result = json.loads(out)
    assert (result["decision"], result["reason"], result["layer"]) == (
        "deny", "bad_request", "target"
    )


def test_body_file(world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"objectTypeId": 10}')
    code, out, _ = explain(capsys, world, "--method", "POST", "--path", f"{BASE}/object/create",
                           "-H", f"Authorization: {world.basic('acc-bob')}",
                           "--body-file", str(body))
    assert code == 0 and json.loads(out)["decision"] == "allow"
    code, out, err = explain(capsys, world, "--method", "POST", "--path", f"{BASE}/object/create",
                             "--body-file", str(body) + ".missing")
    assert code == 1 and out == "" and "cannot read --body-file" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--method", "GET", "--path", "/jsm/\udcff"],
        ["--method", "GET", "--path", "/x", "-H", "Authorization: Basic \udcff"],
        ["--method", "GET", "--path", "/x", "-H", "no colon here"],
    ],
)
def test_unusable_arguments_are_usage_errors(
    world: World, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = explain(capsys, world, *args)
    assert code == 2 and out == "" and "explain:" in err
