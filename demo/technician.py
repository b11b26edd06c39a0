"""The demo's stand-in for a technician's browser: the same API calls the web pages make.

``authorize`` logs in with password and a code from the technician's phone
(``phone.py``), then authorizes one release for the named devices with a
fresh code (a code later than the login's, R9), and saves each signed
document as a file a technician could hand over; ``list`` shows what was
issued and what became of it. Demo only: technicians use the web pages.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import urllib3

PHONE = Path(__file__).with_name("phone.py")


def _code(user: str) -> str:
    return subprocess.run(
        [sys.executable, str(PHONE), "code", user], capture_output=True, text=True, check=True
    ).stdout.strip()


class Browser:
    def __init__(self, server: str, ca: str) -> None:
        self.server = server.rstrip("/")
        self.pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca, retries=False)
        self.headers: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        answer = self.pool.request(
            method, self.server + path, json=body, headers={**self.headers, **headers}
        )
        data = answer.json() if answer.data else {}
        if answer.status >= 400:
            raise SystemExit(f"technician: {method} {path}: {answer.status} {data.get('detail')}")
        return data

    def login(self, user: str, password: str) -> None:
        body = {"username": user, "password": password, "otp": _code(user)}
        token = self.call("POST", "/api/v1/auth/login", body)["token"]
        self.headers = {"Authorization": f"Bearer {token}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("authorize", "list"):
        command = sub.add_parser(name)
        for option in ("--server", "--ca", "--user", "--password"):
            command.add_argument(option, required=True)
    authorize = sub.choices["authorize"]
    authorize.add_argument("--device", action="append", required=True)
    authorize.add_argument("--target", required=True)
    authorize.add_argument("--save-dir", default=".")
    args = parser.parse_args()
    browser = Browser(args.server, args.ca)
    browser.login(args.user, args.password)
    if args.command == "list":
        for item in browser.call("GET", "/api/v1/authorizations")["authorizations"]:
            print(
                f"{item['device_id']}  {item['target_path']}  by {item['technician']}"
                f"  issued {item['issued_at']}  {item['status']}"
            )
        return
    body = {"device_ids": args.device, "target_path": args.target}
    issued = browser.call("POST", "/api/v1/authorizations", body, **{"X-OTP": _code(args.user)})
    for item in issued["authorizations"]:
        file = Path(args.save_dir) / f"authorization-{item['device_id']}.json"
        file.write_text(json.dumps(item["document"]))
        print(
            f"authorized {item['device_id']} for {item['target_path']} until"
            f" {item['expires_at']} (saved as {file})"
        )


if __name__ == "__main__":
    main()
