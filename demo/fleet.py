"""The demo's stand-in for release managers' and security officers' browsers (issue 11).

The same API calls the web pages make, each person logged in with password
and a code from their phone (``phone.py``), each sensitive step confirmed
with a fresh code (R9): ``deploy`` (a release manager plans waves),
``approve`` (another release manager), ``freeze`` and ``lift`` (security
officers), ``show`` (a deployment's waves and devices). Demo only: people use
the web pages.
"""

from __future__ import annotations

import argparse
from typing import Any

from technician import Browser, _code


def _show(deployment: dict[str, Any]) -> None:
    print(f"deployment {deployment['id']}: {deployment['state']}  {deployment['target_path']}")
    for wave in deployment["waves"]:
        started = "started" if wave["started"] else "waiting"
        print(
            f"  wave {wave['wave']}: {wave['devices']} device(s), {wave['installed']} installed,"
            f" {wave['failed']} failed ({started})"
        )
    for device in deployment["devices"]:
        print(f"  {device['device_id']}: {device['status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("deploy", "approve", "freeze", "lift", "show"))
    for option in ("--server", "--ca", "--user", "--password"):
        parser.add_argument(option, required=True)
    parser.add_argument("--target")
    parser.add_argument("--fleet")
    parser.add_argument("--deployment", type=int)
    parser.add_argument("--reason")
    args = parser.parse_args()
    browser = Browser(args.server, args.ca)
    browser.login(args.user, args.password)
    fresh = {"X-OTP": _code(args.user)} if args.command != "show" else {}
    if args.command == "deploy":
        plan = {
            "target_path": args.target, "fleets": [args.fleet],
            "waves": [{"count": 1}, {"percent": 100}], "success_percent": 100,
            "failure_percent": 0,
        }  # fmt: skip
        _show(browser.call("POST", "/api/v1/deployments", plan))
    elif args.command == "approve":
        path = f"/api/v1/deployments/{args.deployment}/approve"
        _show(browser.call("POST", path, None, **fresh))
    elif args.command == "show":
        _show(browser.call("GET", f"/api/v1/deployments/{args.deployment}"))
    elif args.command == "freeze":
        frozen = browser.call("POST", "/api/v1/freeze", {"reason": args.reason}, **fresh)
        print(f"{frozen['mode']} since {frozen['since']} by {frozen['by']}: {frozen['reason']}")
    else:
        print(browser.call("POST", "/api/v1/freeze/lift", None, **fresh)["message"])


if __name__ == "__main__":
    main()
