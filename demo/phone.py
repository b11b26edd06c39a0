"""The demo's stand-in for each person's phone with an authenticator app.

``setup`` finishes a person's first login on the server (the same library
as ``fwsign account setup``) and keeps the TOTP secret, as the app would;
``code`` shows the next code, like a person reading the app and waiting
for a fresh one: each code is from a time step not shown before.
Demo only: real people use ``fwsign account setup`` and their own phone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from signer.account import first_login
from signer.errors import SignerError
from signer.publish import ServerSession
from update_server.mfa.totp import INTERVAL, code_at

STATE = Path("phones")


def _state(user: str) -> Path:
    return STATE / f"{user}.json"


def _next_code(user: str) -> str:
    """A code from the earliest unused step the server still accepts (now ±1)."""
    file = _state(user)
    state = json.loads(file.read_text())
    while True:
        now = int(time.time()) // INTERVAL
        free = [s for s in (now - 1, now, now + 1) if s > state["last_step"]]
        if free and INTERVAL - time.time() % INTERVAL > 2:
            break
        time.sleep(1)
    state["last_step"] = free[0]
    file.write_text(json.dumps(state))
    return code_at(state["secret"], free[0])


def setup(server: str, ca: Path, user: str, initial: str, new: str) -> None:
    STATE.mkdir(exist_ok=True)

    def app(uri: str, secret: str) -> str:
        print(f"{user}'s phone scans {uri.split('?', maxsplit=1)[0]}...")
        _state(user).write_text(json.dumps({"secret": secret, "last_step": 0}))
        return _next_code(user)

    first_login(
        ServerSession(server, ca=ca),
        user=user,
        initial_password=initial,
        new_password=new,
        code_for=app,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    enrol = sub.add_parser("setup")
    for name in ("--server", "--ca", "--user", "--initial-password", "--new-password"):
        enrol.add_argument(name, required=True)
    code = sub.add_parser("code")
    code.add_argument("user")
    args = parser.parse_args()
    if args.command == "setup":
        setup(args.server, Path(args.ca), args.user, args.initial_password, args.new_password)
    else:
        print(_next_code(args.user))


if __name__ == "__main__":
    try:
        main()
    except SignerError as exc:
        raise SystemExit(f"phone: {exc}") from None
