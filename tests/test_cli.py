"""The command line end to end through `main([...])`: check-config, apply, token."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import build_parser, main
from sidecar.store.tokens import parse_token

FIXTURES = Path(__file__).parent / "store" / "fixtures"
SOURCE = "5d6c2a0e-0000-4000-8000-000000000001"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
CONFIG = """\
listen: {grpc: "127.0.0.1:9191", http: "127.0.0.1:9192"}
store: sqlite:///state.db
"""


def check_config(
    workdir: Path, capsys: pytest.CaptureFixture[str], extra: str
) -> tuple[Path, tuple[int, str, str]]:
    """`check-config` on the base config plus `extra`."""
    config = workdir / "config.yaml"
    config.write_text(CONFIG + extra)
    return config, run(capsys, "check-config", "--config", str(config))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text(CONFIG)
    shutil.copy(FIXTURES / "policy.yaml", tmp_path / "policy.yaml")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def applied(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, _ = run(capsys, "apply", "--config", str(workdir / "config.yaml"),
                     "-f", str(workdir / "policy.yaml"))
    assert code == 0
    return workdir


def test_check_config_ok(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, (code, out, err) = check_config(workdir, capsys, "policy_file: policy.yaml\n")
    assert code == 0, err
    assert out.splitlines() == [f"{config}: ok", f"{workdir / 'policy.yaml'}: ok"]
    assert not (workdir / "state.db").exists()  # checking never creates the store


def test_check_config_warns_about_an_issuer_without_audiences(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, (code, out, err) = check_config(
        workdir, capsys, "oauth: {issuers: [{issuer: 'https://i', jwks_uri: 'https://i/j'}]}\n"
    )
    assert code == 0
    assert out.splitlines() == [f"{config}: ok"]
    assert "warning: oauth.issuers[0] (https://i): no audiences" in err


def test_check_config_lists_every_config_problem(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, (code, out, err) = check_config(
        workdir, capsys, "colour: blue\nlog: {allow_sample_rate: 2}\n"
    )
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"{config}: colour: unknown key",
        f"{config}: log.allow_sample_rate: must be between 0 and 1",
    ]


def test_check_config_validates_the_policy_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "config.yaml"
    config.write_text(CONFIG + "policy_file: policy.yaml\n")
    policy = workdir / "policy.yaml"
    policy.write_text(policy.read_text().replace("groups: [helpdesk]", "groups: [helpdsk]"))
    code, _, err = run(capsys, "check-config", "--config", str(config))
    assert code == 1
    assert err.splitlines() == [
        f"{policy}: schemas[0].roles.developer.groups: unknown group 'helpdsk'"
    ]


def test_apply_dry_run_then_apply_then_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("apply", "--config", str(workdir / "config.yaml"), "-f", str(workdir / "policy.yaml"))
    code, out, err = run(capsys, *args, "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "+ workspace ws-1"
    assert "+ schema 1 (ITSM)" in out.splitlines()
    assert "dry run" in err
    assert not (workdir / "state.db").exists()  # the dry run wrote nothing at all

    code, applied_out, err = run(capsys, *args)
    assert code == 0
    assert applied_out == out
    assert "applied 13 change(s)" in err

    code, out, _ = run(capsys, *args, "--dry-run")
    assert (code, out) == (0, "no changes\n")
    code, out, _ = run(capsys, *args)
    assert (code, out) == (0, "no changes\n")


def test_apply_dry_run_on_an_existing_store(
    applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = applied / "policy.yaml"
    policy.write_text(policy.read_text().replace("key: ITSM", "key: OPS"))
    code, out, _ = run(capsys, "apply", "--config", str(applied / "config.yaml"),
                       "-f", str(policy), "--dry-run")
    assert (code, out) == (0, "~ schema 1 key: ITSM -> OPS\n")
    code, out, _ = run(capsys, "apply", "--config", str(applied / "config.yaml"),
                       "-f", str(policy), "--dry-run")
    assert out == "~ schema 1 key: ITSM -> OPS\n"


def test_apply_an_invalid_policy(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(policy.read_text() + "extra: true\n")
    code, out, err = run(capsys, "apply", "--config", str(workdir / "config.yaml"),
                         "-f", str(policy))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [f"{policy}: extra: unknown key"]
    assert not (workdir / "state.db").exists()


def test_apply_with_a_broken_config(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = workdir / "config.yaml"
    config.write_text("store: sqlite:///state.db\n")
    code, _, err = run(capsys, "apply", "--config", str(config), "-f", "policy.yaml")
    assert code == 1
    assert f"{config}: listen: is required" in err.splitlines()


def test_token_create_api_prints_only_the_token(
    applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "token", "create", "api", "--config",
                         str(applied / "config.yaml"), "--account-id", "acc-ann",
                         "--scope", "read:cmdb-object:jira", "--scope", "read:cmdb-schema:jira",
                         "--expires-days", "30", "--label", "ci")
    assert code == 0, err
    token = out.removesuffix("\n")
    assert "\n" not in token
    parsed = parse_token(token)
    assert parsed is not None and parsed.kind == "api"
    assert parsed.id in err and "read:cmdb-object:jira read:cmdb-schema:jira" in err
    assert parsed.secret not in err


def test_token_create_json(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "create", "api", "--config",
                       str(applied / "config.yaml"), "--account-id", "acc-ann",
                       "--expires-days", "1.5", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"id", "token", "expires_at"}
    assert parse_token(data["token"]).id == data["id"]  # type: ignore[union-attr]
    assert ISO.match(data["expires_at"])

    code, out, _ = run(capsys, "token", "create", "container", "--config",
                       str(applied / "config.yaml"), "--import-source", SOURCE, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["expires_at"] is None
    assert data["token"].startswith("act_" + data["id"] + "_")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["api", "--account-id", "acc-nobody"], 1, "unknown account 'acc-nobody'"),
        (["api", "--account-id", "acc-ann", "--scope", "read:all"], 1, "unknown scope"),
        (["container", "--import-source", "nope"], 1, "unknown import source 'nope'"),
        (["api", "--account-id", "acc-ann", "--expires-days", "0"], 2, "above 0"),
        (["api", "--account-id", "acc-ann", "--expires-days", "soon"], 2, "not a number"),
        (["api"], 2, "--account-id"),
        (["container"], 2, "--import-source"),
        (["ssh", "--account-id", "acc-ann"], 2, "invalid choice"),
    ],
)
def test_token_create_refusals(
    applied: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    got, out, err = run(capsys, "token", "create", *argv, "--config",
                        str(applied / "config.yaml"))
    assert got == code
    assert out == ""
    assert message in err


def _list(applied: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, out, _ = run(capsys, "token", "list", "--config", str(applied / "config.yaml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def test_token_list_revoke_and_supersede(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(applied / "config.yaml")
    assert _list(applied, capsys) == []
    _, api_token, _ = run(capsys, "token", "create", "api", "--config", config,
                          "--account-id", "acc-ann", "--scope", "read:cmdb-object:jira",
                          "--label", "reporting")
    _, first, _ = run(capsys, "token", "create", "container", "--config", config,
                      "--import-source", SOURCE)
    _, second, _ = run(capsys, "token", "create", "container", "--config", config,
                       "--import-source", SOURCE, "--expires-days", "7")
    api_id = parse_token(api_token.strip()).id  # type: ignore[union-attr]
    first_id = parse_token(first.strip()).id  # type: ignore[union-attr]
    second_id = parse_token(second.strip()).id  # type: ignore[union-attr]

    listed = {t["id"]: t for t in _list(applied, capsys)}
    assert set(listed) == {api_id, first_id, second_id}
    api = listed[api_id]
    assert {k: api[k] for k in ("kind", "account_id", "import_source", "label", "scopes")} == {
        "kind": "api", "account_id": "acc-ann", "import_source": None, "label": "reporting",
        "scopes": ["read:cmdb-object:jira"],
    }
    assert ISO.match(api["created_at"]) and api["expires_at"] is None
    assert (api["revoked"], api["superseded"]) == (False, False)
    assert (listed[first_id]["revoked"], listed[first_id]["superseded"]) == (True, True)
    assert listed[first_id]["import_source"] == SOURCE
    assert listed[first_id]["scopes"] is None
    assert (listed[second_id]["revoked"], listed[second_id]["superseded"]) == (False, False)
    assert ISO.match(listed[second_id]["expires_at"])

    code, out, _ = run(capsys, "token", "revoke", "--config", config, api_id)
    assert (code, out) == (0, f"revoked token {api_id}\n")
    assert {t["id"]: t["revoked"] for t in _list(applied, capsys)}[api_id] is True

    code, out, _ = run(capsys, "token", "list", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "FOR", "LABEL", "SCOPES", "CREATED", "EXPIRES",
                                "STATUS"]
    status = {line.split()[0]: line.split()[-1] for line in lines[1:]}
    assert status == {api_id: "revoked", first_id: "superseded", second_id: "active"}
    for token in (api_token, first, second):
        secret = parse_token(token.strip()).secret  # type: ignore[union-attr]
        assert secret not in out


def test_token_revoke_unknown_and_whole_token(
    applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(applied / "config.yaml")
    code, out, err = run(capsys, "token", "revoke", "--config", config, "0123456789abcdef")
    assert (code, out) == (1, "")
    assert "no token with id '0123456789abcdef'" in err
    _, token, _ = run(capsys, "token", "create", "container", "--config", config,
                      "--import-source", SOURCE)
    code, out, _ = run(capsys, "token", "revoke", "--config", config, token.strip())
    parsed = parse_token(token.strip())
    assert parsed is not None
    assert (code, out) == (0, f"revoked token {parsed.id}\n")


def test_token_list_text_when_empty(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "list", "--config", str(applied / "config.yaml"))
    assert (code, out) == (0, "no tokens\n")


def test_store_path_is_relative_to_the_config_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, _ = run(capsys, "apply", "--config", str(workdir / "config.yaml"),
                     "-f", str(workdir / "policy.yaml"))
    assert code == 0
    assert (workdir / "state.db").exists() and (workdir / "state.db.key").exists()
    assert list(elsewhere.iterdir()) == []


def test_an_unopenable_store_is_exit_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "state.db").write_bytes(b"garbage" * 1000)
    code, out, err = run(capsys, "token", "list", "--config", str(workdir / "config.yaml"))
    assert (code, out) == (1, "")
    assert str(workdir / "state.db") in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["token"],
        ["token", "create"],
        ["serve"],  # registered, needs --config; the server is never started here
        ["explain", "--config", "c.yaml", "--path", "/x"],  # --method missing
        ["apply", "--config", "c.yaml"],  # -f missing
        ["token", "revoke", "--config", "c.yaml"],  # ID missing
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "usage:" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("serve", "check-config", "apply", "token", "explain", "connect-jwt"):
        assert command in out


def test_lead_commands_are_wired_without_being_run() -> None:
    parser = build_parser()
    args = parser.parse_args(["explain", "--config", "c.yaml", "--method", "GET", "--path", "/x",
                              "-H", "a: b", "-H", "c: d", "--body-file", "body.json"])
    assert (args.config, args.method, args.path) == ("c.yaml", "GET", "/x")
    assert (args.headers, args.body_file) == (["a: b", "c: d"], "body.json")
    assert args.handler.__name__ == "_explain"
    args = parser.parse_args(["serve", "--config", "c.yaml"])
    assert args.handler.__name__ == "_serve"


def test_minting_a_disabled_kind_says_so(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = applied / "config.yaml"
    config.write_text(CONFIG + "api_tokens: {enabled: false}\n")
    code, out, err = run(capsys, "token", "create", "api", "--config", str(config),
                         "--account-id", "acc-ann")
    assert code == 0
    assert parse_token(out.strip()) is not None
    assert "api_tokens.enabled is false" in err


def test_check_config_warns_about_unreadable_connect_secrets(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = workdir / "config.yaml"
    config.write_text(CONFIG + "policy_file: policy.yaml\n")
    monkeypatch.delenv("REPORTING_SHARED_SECRET", raising=False)
    code, _, err = run(capsys, "check-config", "--config", str(config))
    assert code == 0  # the environment of `serve` may differ: a warning, not a failure
    assert "warning: connect installation jira:abc-123" in err
    assert "REPORTING_SHARED_SECRET" in err
    monkeypatch.setenv("REPORTING_SHARED_SECRET", "s3cr3t-value")
    code, _, err = run(capsys, "check-config", "--config", str(config))
    assert code == 0 and "shorter than 32 bytes" in err and "s3cr3t-value" not in err
    monkeypatch.setenv("REPORTING_SHARED_SECRET", "s3cr3t-value-" * 4)
    code, _, err = run(capsys, "check-config", "--config", str(config))
    assert code == 0 and "warning" not in err


def test_serve_and_explain_refuse_an_unusable_store_without_a_traceback(
    applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(applied / "config.yaml")
    code, _, _ = run(capsys, "token", "create", "api", "--config", config,
                     "--account-id", "acc-ann")
    assert code == 0
    (applied / "state.db.key").unlink()  # tokens exist, their key is gone
    code, out, err = run(capsys, "explain", "--config", config, "--method", "GET", "--path", "/x")
    assert (code, out) == (1, "")
    assert err.startswith("explain: store unusable: ") and "Traceback" not in err
    assert "key file is missing" in err
    proc = subprocess.run([sys.executable, "-m", "sidecar", "serve", "--config", config],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [json.loads(x) for x in proc.stderr.splitlines() if "store unusable" in x]
    assert "key file is missing" in line["error"]
