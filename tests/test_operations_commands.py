"""The operator's documents name only commands that exist, and the key ceremonies work.

An operator follows ``docs/operations.md`` (backup and restore R32, R61,
erase R62, the freeze R33, the key ceremonies R5, R47) under pressure: a
command or an option that does not exist there is found at the worst moment.
So every ``fwsign``, ``fwserver``, ``fwclient`` and ``fwhsm`` command in the
shell blocks of ``docs/operations.md``, ``README.md`` and ``deploy/README.md``,
and every inline code span that starts with one of them, is held against the
real click command tree (the groups ``fwcommon.entry`` runs):

C1 each subcommand word names a subcommand of the group before it;
C2 each ``--option`` (or ``-o``) is an option of the command it is given to,
   or of its group when given before the subcommand; ``--help`` always is;
C3 arguments are free: ``<path>``, ``FILE``, ``KEYID`` or ``$OFFICER1`` stand
   for what the operator types; an option's value is skipped, never read as a
   subcommand.

The ceremony tests then run the order the section "Key ceremonies" gives
for replacing a server's online key (routine: add, switch, remove; after a
compromise: one root, the server switched before it is published) against a
real server and a stock ngclient, which must keep updating.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from flask import Flask
from securesystemslib.signer import Key

from fwcommon import entry
from fwcommon.keyref import public_key_from_uri
from hsm_mock import Algorithm, KdfParams, Purpose, Token, private_key_uri
from signer.inspect import verify_repository
from signer.keyops import rotate
from signer.signing import sign_roles
from tests.clocks import RUN_START, FakeClock
from tests.update_server.repo_world import World, key, make_world
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.keys import read_pin, signer_loader
from update_server.publication.errors import BrokenRepositoryError
from update_server.publication.renewal import renew_if_due
from update_server.setup import init_data_dir

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("docs/operations.md", "README.md", "deploy/README.md")
TOOLS = {
    "fwsign": entry.fwsign,
    "fwserver": entry.fwserver,
    "fwclient": entry.fwclient,
    "fwhsm": entry.fwhsm,
}
SHELL_BLOCKS = frozenset({"", "sh", "bash", "shell", "console"})
#: Tokens that end one simple command in a shell line (shlex punctuation).
OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", "(", ")", "<", ">", ">>", "<<", "|&"})
_FENCE = re.compile(r"^```(\S*)\s*$")
_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def entry_targets() -> dict[str, str]:
    """The "module:attribute" each console entry point of ``fwcommon.entry`` runs."""
    targets: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entry, "run", targets.__setitem__)
        for start in TOOLS.values():
            start()
    return targets


def tool_groups() -> dict[str, click.Group]:
    """Each tool's click group, imported from its entry point's own target (C1)."""
    groups = {}
    for tool, target in entry_targets().items():
        module, _, attribute = target.partition(":")
        group = getattr(importlib.import_module(module), attribute)
        assert isinstance(group, click.Group), target
        groups[tool] = group
    return groups


@dataclass(frozen=True)
class Command:
    """One documented command line: where it is and its words."""

    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.words)}"


def shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of each fenced shell block."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index].strip())
        if fence is None:
            index += 1
            continue
        start, index = index + 1, index + 1
        body = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        index += 1
        if fence.group(1).lower() in SHELL_BLOCKS:
            yield start + 1, "\n".join(body)


def inline_spans(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each inline code span outside fences that starts with a tool."""
    outside = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()) or (fenced and line.strip() == "```"):
            fenced = not fenced
            outside.append("")
            continue
        outside.append("" if fenced else line)
    prose = "\n".join(outside)
    for span in _SPAN.finditer(prose):
        words = span.group(1).split()
        if words and words[0] in TOOLS:
            yield prose.count("\n", 0, span.start()) + 1, span.group(1)


def logical_lines(script: str, first: int) -> Iterator[tuple[int, str]]:
    """(line number, line) with backslash continuations joined, numbered by their start."""
    pending, start = "", first
    for number, line in enumerate(script.split("\n"), first):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def commands_in(script: str, document: str, first: int = 1) -> list[Command]:
    """Every tool command in a shell text: at a command's start, until an operator."""
    found = []
    for number, line in logical_lines(script, first):
        where = f"{document}:{number}"
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: read it word by word
            tokens = line.split()
        current: list[str] | None = None
        at_start = True
        for token in tokens:
            if token in OPERATORS:
                if current:
                    found.append(Command(where, tuple(current)))
                current, at_start = None, True
                continue
            if current is not None:
                current.append(token)
            elif at_start and token in TOOLS:
                current = [token]
            elif at_start and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                continue  # VAR=value before a command, or an assignment of $(...)
            else:
                at_start = token in {"then", "do", "else", "time", "env", "sudo", "!"}
        if current:
            found.append(Command(where, tuple(current)))
    return found


def _takes_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and not (param.is_flag or param.count)


def _options(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def problems_of(command: Command, groups: dict[str, click.Group]) -> list[str]:
    """What C1 and C2 find wrong with one documented command (empty: it exists)."""
    current: click.Command = groups[command.words[0]]
    path = [command.words[0]]
    found = []
    words = list(command.words[1:])
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("-") and len(word) > 1 and not word[1:2].isdigit():
            name = word.split("=", 1)[0]
            if name == "--help":
                continue
            param = _options(current).get(name)
            if param is None:
                found.append(f"{command}: {' '.join(path)} has no option {name}")
                continue
            if _takes_value(param) and "=" not in word:
                index += 1  # C3: the value is not a subcommand
            continue
        if isinstance(current, click.Group):
            sub = current.commands.get(word)
            if sub is None:
                known = ", ".join(sorted(current.commands))
                found.append(f"{command}: {' '.join(path)} has no subcommand {word!r} ({known})")
                return found
            current = sub
            path.append(word)
    return found


def documented_commands(document: str) -> list[Command]:
    text = (ROOT / document).read_text()
    commands = []
    for line, block in shell_blocks(text):
        commands += commands_in(block, document, line)
    for line, span in inline_spans(text):
        commands += commands_in(" ".join(span.split()), document, line)  # a span may wrap
    return commands


# -- the documents (C1, C2, C3) -------------------------------------------------------


def test_the_groups_checked_are_those_the_entry_points_run() -> None:
    """The tree checked is the installed tools', found through fwcommon.entry."""
    assert entry_targets() == {
        "fwsign": "signer.cli:main",
        "fwserver": "update_server.cli:main",
        "fwclient": "client.cli:main",
        "fwhsm": "hsm_mock.cli:main",
    }
    assert all(isinstance(group, click.Group) for group in tool_groups().values())


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_an_operator_document_names_exists_r32_r61_r62_r33(document: str) -> None:
    """Backup, restore, erase, freeze and key ceremonies name only real commands and options."""
    groups = tool_groups()
    commands = documented_commands(document)
    assert commands, f"no command found in {document}: the parser or the document broke"
    problems = [problem for command in commands for problem in problems_of(command, groups)]
    assert problems == [], "\n".join(problems)


def test_operations_md_names_commands_of_all_four_tools_r32_r61_r62() -> None:
    """The checker really reads the operator's page: each tool, the ceremonies' commands."""
    commands = documented_commands("docs/operations.md")
    paths = {" ".join(c.words[:2]) for c in commands} | {" ".join(c.words[:3]) for c in commands}
    for expected in (
        "fwserver backup",
        "fwserver restore",
        "fwserver audit export",
        "fwsign rotate",
        "fwsign authorization-keys",
        "fwsign revoke-key",
        "fwhsm generate",
        "fwhsm unlock",
        "fwclient provision",
    ):
        assert expected in paths, expected


# -- the checker itself ------------------------------------------------------------------


def _problems(script: str) -> list[str]:
    groups = tool_groups()
    return [p for c in commands_in(script, "t") for p in problems_of(c, groups)]


def test_c1_an_unknown_subcommand_is_named() -> None:
    found = _problems("fwserver keys rotate --data-dir /srv/fw")
    assert len(found) == 1
    assert "fwserver has no subcommand 'keys'" in found[0]


def test_c2_an_unknown_option_is_named_with_its_command() -> None:
    assert _problems("fwsign rotate --repo repo --role root --add-keys k.json") == [
        "t:1: fwsign rotate --repo repo --role root --add-keys k.json:"
        " fwsign rotate has no option --add-keys"
    ]
    assert _problems("fwserver --data-dir x status") != []  # a command's option before it


def test_c3_placeholders_values_and_shell_around_a_command_are_accepted() -> None:
    script = (
        "FWSIGN_PIN=x fwsign rotate --repo <repo> --role timestamp \\\n"
        "    --remove-key KEYID --key $OFFICER1   # a comment --bogus\n"
        "OFFICER1=$(fwhsm uri --token tokens/o1 --label o1)\n"
        "fwclient --lock-wait 5 status --state s && fwserver backup --data-dir d -o f.tar.gz\n"
        "fwhsm export-public --token t --label snapshot > snapshot.pub.json\n"
        "fwserver fleet install --data-dir /srv/fw MODEL newest\n"
    )
    commands = commands_in(script, "t")
    assert [c.words[:2] for c in commands] == [
        ("fwsign", "rotate"),
        ("fwhsm", "uri"),
        ("fwclient", "--lock-wait"),
        ("fwserver", "backup"),
        ("fwhsm", "export-public"),
        ("fwserver", "fleet"),
    ]
    assert _problems(script) == []
    assert _problems("fwserver audit verify --export --json") == []  # a value then a flag


def test_c3_an_options_value_is_never_taken_for_a_subcommand() -> None:
    assert _problems("fwclient --lock-wait status status --state s") == []
    assert _problems("fwsign --verbose stauts") != []  # a flag takes no value


def test_spans_in_prose_and_blocks_of_other_languages() -> None:
    text = (
        "Run `fwsign revoke-key KEYID\n  --keys URI` then `systemctl restart fwserver`.\n"
        '```json\n{"fwsign": 1}\n```\n'
        "```sh\nfwhsm list --token t --jsn\n```\n"
    )
    spans = list(inline_spans(text))
    assert spans == [(1, "fwsign revoke-key KEYID\n  --keys URI")]
    blocks = list(shell_blocks(text))
    assert blocks == [(7, "fwhsm list --token t --jsn")]


# -- key ceremonies: an online key replaced (R5, R47, R13) --------------------------------

FAST_KDF = KdfParams(memory_kib=8192, iterations=1, lanes=1)
OFFICER = "security_officer"


@dataclass
class Server:
    """One data directory, served by an app built from a configuration."""

    world: World

    def switched_to(self, role: str, uri: str) -> World:
        """The server restarted with ``online_keys.<role>`` = ``uri`` (server.json edited)."""
        config = self.world.config
        changed = config.with_changes(online_keys={**config.online_keys, role: uri})
        world = World(_app(changed, self.world.clock), changed, self.world.clock,
                      self.world.tmp, self.world.otp)  # fmt: skip
        self.world = world
        return world


def _app(config: ServerConfig, clock: FakeClock) -> Flask:
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    app.testing = True
    return app


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    clock = FakeClock(RUN_START)
    config = init_data_dir(tmp_path / "data", database_url="", kdf=FAST_KDF).config
    world = make_world(_app(config, clock), config, clock, tmp_path, monkeypatch)
    running = Server(world)
    yield running
    for each in {id(world): world, id(running.world): running.world}.values():
        each.services.engine.dispose()


def _new_online_key(config: ServerConfig, label: str, purpose: Purpose) -> tuple[str, Key]:
    """``fwhsm generate`` in the server's own token, with the PIN of its PIN file."""
    token = Token.open(config.data_dir / "hsm")
    session = token.login(read_pin(config))
    session.generate(label=label, purpose=purpose, algorithm=Algorithm.ED25519)
    session.close()
    uri = private_key_uri(token.path, label)
    return uri, public_key_from_uri(uri)


def _publish_root(world: World) -> dict[str, object]:
    """``fwsign publish --role root`` by a security officer."""
    world.login("olga", OFFICER)
    upload = world.upload("olga", {"root": world.role_json("root")}, role=OFFICER)
    assert upload.status_code == 201, upload.get_json()
    published = world.publish("olga", upload.get_json()["id"])
    assert published.status_code == 200, published.get_json()
    body: dict[str, object] = published.get_json()
    return body


def _timestamp_keyid(device: Path) -> str:
    document = json.loads((device / "metadata" / "timestamp.json").read_bytes())
    keyid: str = document["signatures"][0]["keyid"]
    return keyid


def test_online_key_rotation_in_the_documented_order_keeps_devices_updating(
    server: Server, tmp_path: Path
) -> None:
    """R5: add the new timestamp key, switch the server, remove the old: signing never stops."""
    before = server.world
    device = tmp_path / "device"
    before.updater(device).refresh()
    old = public_key_from_uri(before.config.online_keys["timestamp"]).keyid
    uri, new = _new_online_key(before.config, "timestamp-2", Purpose.TIMESTAMP)

    rotate(before.open_offline("officer1", "officer2"), role="timestamp", add=[new])
    assert _publish_root(before)["published"] == {"root": 2}  # the server's key still listed

    after = server.switched_to("timestamp", uri)
    assert renew_if_due(after.services, after.now, force=True) == ["snapshot", "timestamp"]
    rotate(after.open_offline("officer1", "officer2"), role="timestamp", remove=[old])
    assert _publish_root(after)["published"] == {"root": 3}

    after.updater(device).refresh()  # the device that trusted the old key
    assert _timestamp_keyid(device) == new.keyid
    after.updater(tmp_path / "new-device").refresh()  # one provisioned with root v1
    root = json.loads((device / "metadata" / "root.json").read_bytes())["signed"]
    assert root["version"] == 3
    assert root["roles"]["timestamp"]["keyids"] == [new.keyid]


def test_a_compromised_online_key_is_replaced_in_one_root_and_devices_follow(
    server: Server, tmp_path: Path
) -> None:
    """R5: one root drops the old key; the server, switched first, cannot renew until it is out."""
    before = server.world
    device = tmp_path / "device"
    before.updater(device).refresh()
    old = public_key_from_uri(before.config.online_keys["timestamp"]).keyid
    uri, new = _new_online_key(before.config, "timestamp-2", Purpose.TIMESTAMP)
    rotate(before.open_offline("officer1", "officer2"), role="timestamp", add=[new], remove=[old])

    after = server.switched_to("timestamp", uri)
    with pytest.raises(BrokenRepositoryError, match="not the timestamp key root v1 names"):
        renew_if_due(after.services, after.now, force=True)
    assert _publish_root(after) == {"published": {"root": 2}, "snapshot": 2, "timestamp": 2}

    after.updater(device).refresh()
    assert _timestamp_keyid(device) == new.keyid
    root = json.loads((device / "metadata" / "root.json").read_bytes())["signed"]
    assert root["roles"]["timestamp"]["keyids"] == [new.keyid]
    assert old not in root["keys"]


def test_a_replaced_targets_key_signs_targets_again_and_devices_follow(
    server: Server, tmp_path: Path
) -> None:
    """R5: root swaps the release manager's key, the new key re-signs targets, both published."""
    world = server.world
    device = tmp_path / "device"
    world.updater(device).refresh()
    session = world.open_offline("officer1", "officer2")
    rotate(session, role="targets", add=[key("manager3").public_key],
           remove=[key("manager1").public_key.keyid])  # fmt: skip
    assert [role for role, _why in session.to_resign] == ["targets"]
    sign_roles(world.open_offline("manager3"), roles=["targets"])
    assert verify_repository(world.offline, now=world.now).ok

    world.login("olga", OFFICER)
    roles = {"root": world.role_json("root"), "targets": world.role_json("targets")}
    upload = world.upload("olga", roles, role=OFFICER)
    assert upload.status_code == 201, upload.get_json()
    published = world.publish("olga", upload.get_json()["id"])
    assert published.status_code == 200, published.get_json()
    assert published.get_json()["published"] == {"root": 2, "targets": 4}

    world.updater(device).refresh()
    targets = json.loads((device / "metadata" / "targets.json").read_bytes())
    assert [s["keyid"] for s in targets["signatures"]] == [key("manager3").public_key.keyid]


_TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")


def test_every_test_operations_md_names_exists() -> None:
    """A ceremony's "Tests:" line names tests that exist, so its proof can be rerun."""
    text = (ROOT / "docs/operations.md").read_text()
    references = _TEST_REFERENCE.findall(text)
    assert len(references) >= 30  # the key ceremonies name theirs
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif name and not re.search(rf"^def {name}\(", path.read_text(), re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == []
