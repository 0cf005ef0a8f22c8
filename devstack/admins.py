"""Make a local user an operator: the Auth emulator sets the custom claim ``admin: true``
(``accounts:update`` with ``customAttributes``, authorized as ``Bearer owner``: the emulator's
own admin credential). The user's next ID token carries it: sign in again after this.

    venv/bin/python -m devstack.admins cli@promptq.local [--password PW] [--revoke]   (the CLI's local user)

Production grants it with the Admin SDK instead (docs/OPERATIONS.md, Operator page)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Mapping

import httpx

from promptq.contract import ADMIN_CLAIM
from promptq_client import stackenv


def set_admin(auth_host: str, project_id: str, uid: str, admin: bool = True, *, http: httpx.Client | None = None) -> None:
    """Set (or clear) the user's ``admin`` claim on the Auth emulator at ``auth_host``."""
    url = f"http://{auth_host}/identitytoolkit.googleapis.com/v1/projects/{project_id}/accounts:update"
    body = {"localId": uid, "customAttributes": json.dumps({ADMIN_CLAIM: True} if admin else {})}
    r = (http or httpx).post(url, json=body, headers={"Authorization": "Bearer owner"}, timeout=10)
    r.raise_for_status()


def make_admin(env: Mapping[str, str], uid: str, admin: bool = True) -> None:
    """``set_admin`` on the local stack whose endpoints are ``env`` (``stackenv.read()``)."""
    set_admin(env["FIREBASE_AUTH_EMULATOR_HOST"], env["PROJECT_ID"], uid, admin)


def main(argv: list[str] | None = None) -> int:
    from promptq_client.api import Client
    from promptq_client.cli.target import LOCAL_PASSWORD

    p = argparse.ArgumentParser(prog="devstack.admins", description="make a local user an operator (the admin claim)")
    p.add_argument("email")
    p.add_argument("--password", default=LOCAL_PASSWORD, help="its password (default: the CLI's local user's; the account is created if missing)")
    p.add_argument("--revoke", action="store_true", help="take the claim away")
    args = p.parse_args(argv)
    env = stackenv.read()
    if not env.get("FIREBASE_AUTH_EMULATOR_HOST"):
        print("no local stack (make up)", file=sys.stderr)
        return 2
    client = Client.from_env(env)
    user = client.sign_in(args.email, args.password)
    make_admin(env, user.uid, not args.revoke)
    print(f"{args.email} ({user.uid}): admin {'revoked' if args.revoke else 'granted'}; sign in again for a token that says so")
    return 0


if __name__ == "__main__":
    sys.exit(main())
