"""The CLI's webhook commands: ``promptq webhook add|list|delete|rotate``. A secret is printed
once, when it is made (``add``, ``rotate``): the server keeps it encrypted and never shows it again."""

from __future__ import annotations

import argparse
import json

from promptq.contract import EndpointAnswer, EventType
from promptq_client.api import Client
from promptq_client.cli.target import EXIT_OK, EXIT_USAGE, CliError, Target, sign_in


def endpoint_line(e: EndpointAnswer) -> str:
    state = f"DISABLED ({e.disabled})" if e.disabled else (f"failing ({e.failures} in a row)" if e.failures else "ok")
    items = ", batch items too" if e.batchItems else ""
    return f"{e.endpointId}  {state:<20}  {e.url}  [{', '.join(e.events)}{items}]  secret {e.secretHint or '?'}"


def cmd_webhook(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    if args.action in ("delete", "rotate") and not args.arg:
        raise CliError(f"webhook {args.action}: give the endpoint id (see `promptq webhook list`)", EXIT_USAGE)
    if args.action == "add":
        if not args.arg:
            raise CliError("webhook add: give the URL to POST to", EXIT_USAGE)
        created = client.add_webhook(user, args.arg, events=args.events, batch_items=args.batch_items)
        print(json.dumps(created.to_json(), indent=2) if args.json else f"endpoint {created.endpointId}\nsecret {created.secret}")
        print("keep the secret: it is shown this once", flush=True)
    elif args.action == "rotate":
        rotated = client.rotate_webhook_secret(user, args.arg)
        print(f"endpoint {rotated.endpointId}\nsecret {rotated.secret}\nthe old secret signs beside it until {rotated.previousUntil}", flush=True)
    elif args.action == "delete":
        client.delete_webhook(user, args.arg)
        print(f"endpoint {args.arg} deleted: it is sent nothing more", flush=True)
    else:
        listing = client.webhooks(user)
        if args.json:
            print(json.dumps(listing.to_json(), indent=2), flush=True)
        else:
            print("\n".join(endpoint_line(e) for e in listing.endpoints) or "no webhook endpoints", flush=True)
    return EXIT_OK


def add_parsers(commands, target: argparse.ArgumentParser) -> None:
    hook = commands.add_parser(
        "webhook",
        parents=[target],
        help="signed webhooks: add, list, delete an endpoint, or rotate its secret",
        description="promptq POSTs a signed event (Standard Webhooks) to your endpoints when an execution or a batch ends. "
        "`add URL` prints the endpoint's secret once; `rotate ID` a new one (the old one signs beside it for 24 hours).",
    )
    hook.add_argument("action", choices=["add", "list", "delete", "rotate"])
    hook.add_argument("arg", nargs="?", metavar="URL|ID", help="add: the https URL; delete, rotate: the endpoint id")
    hook.add_argument(
        "--event", dest="events", action="append", choices=[t.value for t in EventType], help="add: only this event (repeat; default all)"
    )
    hook.add_argument("--batch-items", action="store_true", help="add: also the execution events of batch items")
    hook.add_argument("--json", action="store_true", help="print the answer as JSON")
    hook.set_defaults(handler=cmd_webhook)
