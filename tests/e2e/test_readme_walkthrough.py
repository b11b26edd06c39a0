"""The README's walkthrough, typed as a newcomer types it (issue 9).

The commands are read from ``README.md`` itself, every ``sh`` block between
``<!-- walkthrough: start -->`` and ``<!-- walkthrough: end -->``, in order;
nothing here copies them. They run in one bash, under a pseudo-terminal (so
every prompt is the one a person sees), from the top of this checkout, with
``HOME`` a fresh directory. A block that opens with "In a second terminal" runs
in the background, as that second terminal would, and the walkthrough goes on
once it has printed that it serves.

The test plays the person at the keyboard (``Person``): it reads the screen,
keeps the initial password ``fwserver user add`` printed, scans the enrolment
URI as an authenticator app would, and types the passwords and one-time codes
each prompt asks for. It knows nothing else: a prompt it does not recognise,
a failing command or a walkthrough that hangs fails the test, and the
transcript is shown.

The one change made to the commands: the server's port, 8443 in the README,
becomes a free one (``FWSERVER_PORT`` and the URL), so the test never collides
with a server already running on this machine.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from tests.unprivileged import as_server_user, hand_over, server_user
from update_server.mfa.totp import INTERVAL, code_at

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
START, END = "<!-- walkthrough: start -->", "<!-- walkthrough: end -->"
BACKGROUND = re.compile(r"^#\s*\d*\.?\s*In a second terminal", re.IGNORECASE)
README_PORT = "8443"
#: The whole walkthrough, with key generation and one TLS update; bounded.
TIMEOUT = 600.0
SERVE_WAIT = 60


def walkthrough_blocks(text: str) -> list[str]:
    """The ``sh`` blocks of the walkthrough section, in order."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"README.md must hold {START} and {END} once each")
    section = text.split(START, 1)[1].split(END, 1)[0]
    return [match.group(1) for match in re.finditer(r"```sh\n(.*?)```", section, re.DOTALL)]


def walkthrough_script(blocks: list[str], *, port: int, log_dir: Path) -> str:
    """One bash script: the blocks in order, a background block started with ``&``."""
    lines = [
        "set -euo pipefail",
        # The second terminal closes with the first: stop what it started.
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",
    ]
    for typed in blocks:
        block = typed.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")
        if BACKGROUND.match(block.lstrip()):
            out = log_dir / "second-terminal.out"
            lines += [
                f"( {block.strip()}\n) > {out} 2>&1 &",
                f"for _ in $(seq {SERVE_WAIT * 10}); do"
                f" grep -q '^serving https://' {out} && break; sleep 0.1; done",
                f"grep -q '^serving https://' {out} || {{ cat {out}; exit 1; }}",
                f"echo '--- second terminal:'; cat {out}",
            ]
        else:
            lines.append(block)
    lines.append("echo 'WALKTHROUGH FINISHED'")
    return "\n".join(lines) + "\n"


@dataclass
class Person:
    """Alice at the keyboard, with her phone's authenticator app."""

    password: str = "infusion pumps deserve four eyes 2026"
    initial: str | None = None
    secret: str | None = None
    last_step: int = 0
    answered: list[str] = field(default_factory=list)

    def read(self, screen: str) -> None:
        """What a person notes from the screen: the initial password, the enrolment."""
        for match in re.finditer(r"initial password[^\n]*: (\S+)\r?\n", screen):
            self.initial = match.group(1)
        for match in re.finditer(r"otpauth://\S+", screen):
            query = parse_qs(urlparse(unquote(match.group(0))).query)
            self.secret = query["secret"][0]

    def answer(self, prompt: str) -> str | None:
        """The reply to the prompt on the last line of the screen, if it is one."""
        lowered = prompt.lower()
        if not lowered.rstrip().endswith(":"):
            return None
        if "code" in lowered:
            reply = self.code()
        elif "initial" in lowered:
            if self.initial is None:
                pytest.fail(f"asked {prompt!r} before any initial password was shown")
            reply = self.initial
        elif "password" in lowered or "repeat" in lowered:
            reply = self.password
        else:
            return None
        self.answered.append(prompt.strip())
        return reply

    def code(self) -> str:
        """The app's code for a step not used before, as a person waits for a new one."""
        if self.secret is None:
            pytest.fail("asked for a one-time code before the enrolment was shown")
        while True:
            now = int(time.time()) // INTERVAL
            free = [step for step in (now - 1, now, now + 1) if step > self.last_step]
            # The server allows one step either side; never type a code about to lapse.
            if free and INTERVAL - time.time() % INTERVAL > 2:
                self.last_step = free[0]
                return code_at(self.secret, free[0])
            time.sleep(0.5)


def run_in_terminal(script: Path, *, env: dict[str, str], person: Person) -> tuple[int, str]:
    """Run ``bash script`` under a pseudo-terminal, the person answering its prompts."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes bash at once
        os.chdir(REPO_ROOT)
        argv = as_server_user(["/bin/bash", str(script)], read_everywhere=True)
        os.execvpe(argv[0], argv, env)  # noqa: S606
    transcript, pending = "", ""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: bash and everything it started closed the terminal
                break
            if not data:
                break
            text = data.decode(errors="replace")
            transcript += text
            pending += text
            person.read(pending)
            reply = person.answer(pending.rsplit("\n", 1)[-1])
            if reply is not None:
                os.write(fd, reply.encode() + b"\r")
                pending = ""
            elif "\n" in pending:
                pending = pending.rsplit("\n", 1)[-1]
        else:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
            pytest.fail(f"the walkthrough did not finish in {TIMEOUT} s:\n{transcript[-8000:]}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), transcript


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_readme_walkthrough_runs_by_hand_from_a_fresh_directory_to_a_device_update(
    tmp_path: Path,
) -> None:
    """A newcomer following the README by hand reaches a device update (issue 9)."""
    run = tmp_path / "run"
    home = run / "home"
    home.mkdir(parents=True)
    port = free_port()
    script = run / "walkthrough.sh"
    blocks = walkthrough_blocks(README.read_text())
    script.write_text(walkthrough_script(blocks, port=port, log_dir=run))
    # R6: fwserver serve refuses root, so a newcomer is not root; run as root
    # (CI), the walkthrough is typed as an unprivileged user, who owns it all.
    hand_over(run)
    user = server_user()
    # A new user's shell: no project variables, nothing of this test run's but
    # its clock. Under `make test-future` datefudge moves this process's clock
    # through LD_PRELOAD, LD_LIBRARY_PATH and DATEFUDGE; the person computes
    # codes on it, so the commands they type must run on it too.
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "CI", "USER", "LOGNAME")
    keep += ("LD_PRELOAD", "LD_LIBRARY_PATH", "DATEFUDGE", "DATEFUDGE_DOSTATIC")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    venv_bin = str(REPO_ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env |= {"HOME": str(home), "FWSERVER_PORT": str(port), "TERM": "dumb"}
    if user is not None:
        env |= {"USER": user.pw_name, "LOGNAME": user.pw_name}
    person = Person()

    status, transcript = run_in_terminal(script, env=env, person=person)

    assert status == 0, f"the walkthrough failed (exit {status}):\n{transcript[-12000:]}"
    assert "WALKTHROUGH FINISHED" in transcript
    # The device really updated: it runs the release alice published.
    device = home / "fw-walkthrough" / "pump-001"
    shown = subprocess.run(
        [REPO_ROOT / ".venv" / "bin" / "fwclient", "status", "--state", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2.4.0" in shown, shown
    # Alice was asked for what a person types, and nothing else.
    assert any("initial" in prompt.lower() for prompt in person.answered), person.answered
    assert sum("code" in prompt.lower() for prompt in person.answered) >= 3, person.answered


def test_the_walkthrough_is_found_in_the_readme_and_ends_with_a_device_update() -> None:
    """The README holds the walkthrough the test above runs, and it reaches a device."""
    blocks = walkthrough_blocks(README.read_text())
    commands = "\n".join(blocks)
    for step in ("make venv", ". .venv/bin/activate", "fwserver init", "fwsign account setup"):
        assert step in commands
    assert commands.index("fwsign publish") < commands.index("fwclient update")
    assert sum(bool(BACKGROUND.match(block.lstrip())) for block in blocks) == 1
