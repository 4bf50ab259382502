"""Every `assets-authz ...` command line in docs/*.md parses with the real command-line parser.

Command lines are taken from code blocks and inline code. The command and its subcommands must
exist, and every option shown must belong to the (sub)command it is given to.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

import pytest

from sidecar.cli import build_parser
from sidecar.tools.connect_jwt import add_arguments as connect_jwt_arguments

from .markdown import code, documents

# `assets-authz` (or `python -m sidecar`) followed by a word: a command line, not a file name,
# image name, container name (`-c assets-authz --previous`, `assets-authz-connect`) or a quoted
# log message (`"assets-authz serving"`).
MENTION = re.compile(r"(?:(?<![\w\"-])assets-authz|python -m sidecar)[ \t]+(?=[a-z])([^\n]*)")
# Shell syntax that ends the command line.
END = {"|", "||", "&&", ";", ">", "2>", ">>", "\\", "#", ")"}
OPTION = re.compile(r"^(--?[A-Za-z][\w-]*)(=.*)?$")


@dataclass(frozen=True)
class Mention:
    document: str
    line: str
    words: tuple[str, ...]


def mentions() -> list[Mention]:
    found = []
    for doc in documents():
        for snippet in code(doc.read_text(encoding="utf-8")):
            joined = re.sub(r"\\\n\s*", " ", snippet)  # shell line continuations
            for match in MENTION.finditer(joined):
                words: list[str] = []
                for word in match[1].split():
                    if word in END or word.startswith("#"):
                        break
                    words.append(word.strip("[]"))
                found.append(Mention(doc.name, match[0].strip(), tuple(words)))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _resolve(words: tuple[str, ...]) -> tuple[list[str], argparse.ArgumentParser, list[str]]:
    """Walk the subcommands: (command path, the parser that takes the rest, the rest)."""
    parser = build_parser()
    path: list[str] = []
    rest = list(words)
    while rest and not rest[0].startswith("-"):
        choices = _subcommands(parser)
        if choices is None:
            break
        word = rest.pop(0)
        assert word in choices, f"no command {' '.join([*path, word])!r}"
        path.append(word)
        parser = choices[word]
    if path == ["connect-jwt"]:  # the CLI hands connect-jwt's arguments to the tool untouched
        parser = argparse.ArgumentParser(prog="assets-authz connect-jwt")
        connect_jwt_arguments(parser)
    return path, parser, rest


ALL = mentions()


def test_the_docs_show_command_lines() -> None:
    commands = {m.words[0] for m in ALL}
    assert {"serve", "check-config", "apply", "token", "explain"} <= commands


@pytest.mark.parametrize("mention", ALL, ids=[f"{m.document}:{m.line[:60]}" for m in ALL])
def test_command_line_parses(mention: Mention) -> None:
    path, parser, rest = _resolve(mention.words)
    assert path, mention.line
    options = parser._option_string_actions
    for word in rest:
        match = OPTION.match(word)
        if match:
            assert match[1] in options, f"{' '.join(path)} has no option {match[1]}: {mention.line}"
