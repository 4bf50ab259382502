"""Connect shared secrets: env vars and files, reload, and what /readyz is told."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sidecar.authn.secrets import (
    MAX_SECRET_FILE_BYTES,
    SecretSource,
    SecretUnavailable,
    read_secret_file,
)
from sidecar.decision import Deny, Reason
from sidecar.store.model import Installation


def _inst(client_key: str, *, env: str | None = None, file: Path | None = None) -> Installation:
    return Installation(
        client_key=client_key,
        app_key=f"app.{client_key}",
        scopes=frozenset({"READ"}),
        account_id=f"acc-{client_key}",
        shared_secret_env=env,
        shared_secret_file=str(file) if file else None,
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"s3cr3t", b"s3cr3t"),
        (b"s3cr3t\n", b"s3cr3t"),
        (b"s3cr3t\r\n", b"s3cr3t"),
        (b"s3cr3t\n\n", b"s3cr3t\n"),  # only one newline is stripped
        (b" s3cr3t ", b" s3cr3t "),  # nothing else is
        ("sécret\n".encode(), "sécret".encode()),
    ],
)
def test_file_secret_strips_one_trailing_newline(
    tmp_path: Path, content: bytes, expected: bytes
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    assert read_secret_file(path) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\n", "is empty"), (b"x" * (MAX_SECRET_FILE_BYTES + 1), "larger")],
)
def test_file_secret_refusals(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(SecretUnavailable, match=message):
        read_secret_file(path)


def test_env_and_file_secrets_are_served(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"file-secret\n")
    source = SecretSource(
        [_inst("a", env="A_SECRET"), _inst("b", file=tmp_path / "b")],
        environ={"A_SECRET": "env-secret"},
    )
    assert source.secret_for("a") == b"env-secret"
    assert source.secret_for("b") == b"file-secret"
    assert source.missing() == []


def test_env_wins_when_both_are_named_and_file_is_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(b"from-file")
    both = _inst("a", env="A_SECRET", file=tmp_path / "s")
    assert SecretSource([both], environ={"A_SECRET": "from-env"}).secret_for("a") == b"from-env"
    assert SecretSource([both], environ={}).secret_for("a") == b"from-file"


@pytest.mark.parametrize(
    ("inst", "environ", "problem"),
    [
        (_inst("k", env="NOPE"), {}, "environment variable NOPE is not set"),
        (_inst("k", env="EMPTY"), {"EMPTY": ""}, "environment variable EMPTY is empty"),
        (_inst("k", file=Path("/nonexistent/secret")), {}, "file /nonexistent/secret cannot"),
        (_inst("k"), {}, "names neither"),
    ],
)
def test_unreadable_secret_is_dependency_unavailable(
    inst: Installation, environ: dict[str, str], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        source = SecretSource([inst], environ=environ)
    assert source.missing() == ["k"]
    assert source.problems()["k"].startswith(problem)
    assert "k" in caplog.text
    with pytest.raises(Deny) as exc:
        source.secret_for("k")
    assert exc.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert "k" in exc.value.detail


def test_unknown_client_key_is_dependency_unavailable() -> None:
    with pytest.raises(Deny) as exc:
        SecretSource([]).secret_for("never-loaded")
    assert exc.value.reason is Reason.DEPENDENCY_UNAVAILABLE


def test_secrets_never_appear_in_problems_logs_or_denials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = tmp_path / "s"
    secret_file.write_bytes(b"")  # empty: refused
    environ = {"GOOD": "hunter2-very-secret"}
    with caplog.at_level(logging.DEBUG):
        source = SecretSource(
            [_inst("good", env="GOOD"), _inst("bad", file=secret_file)], environ=environ
        )
    assert source.missing() == ["bad"]
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(dict(source.problems()))


def test_reload_reads_again_and_drops_removed_installations(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"one")
    environ: dict[str, str] = {}
    source = SecretSource([_inst("f", file=path), _inst("e", env="E")], environ=environ)
    assert source.missing() == ["e"]
    path.write_bytes(b"two")
    environ["E"] = "now-set"
    assert source.secret_for("f") == b"one"  # files are read on reload, not per request
    source.reload([_inst("f", file=path), _inst("e", env="E")])
    assert source.secret_for("f") == b"two"
    assert source.secret_for("e") == b"now-set"
    assert source.missing() == []
    source.reload([_inst("e", env="E")])
    with pytest.raises(Deny):
        source.secret_for("f")


async def test_reload_async_runs_the_same_reload(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"async\n")
    source = SecretSource()
    await source.reload_async(iter([_inst("a", file=path)]))
    assert source.secret_for("a") == b"async"


def test_an_unavailable_secret_is_warned_about_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s"  # missing
    installations = [_inst("f", file=path)]
    with caplog.at_level(logging.WARNING):
        source = SecretSource(installations)
        for _ in range(5):  # the runtime re-reads secret files every second
            source.reload(installations)
        assert len(caplog.records) == 1
        path.write_bytes(b"")  # a different problem: warned again
        source.reload(installations)
        source.reload(installations)
        assert len(caplog.records) == 2
        path.write_bytes(b"fixed")
        source.reload(installations)
        path.unlink()  # missing again after being fine: warned again
        source.reload(installations)
        assert len(caplog.records) == 3
