"""The `gardenbuild login`, `logout` and `whoami` commands: argparse wiring and handlers.

The CLI adds these with `add_parsers(subparsers)` and dispatches through `HANDLERS`;
each handler returns an exit code and prints only through ``gardenbuild.cli.emit``.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from gardenbuild.cli.common import add_json
from gardenbuild.report import Reporter


def add_parsers(subparsers: Any) -> None:
    """Add `login`, `logout` and `whoami` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "login", help="log in to Globus, for publishing to Globus Compute",
        description="Log in to Globus with the native-app flow (open the printed link, paste the code back). "
                    "With GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET set (CI), check those "
                    "service-account credentials instead; nothing is stored then.")
    p.add_argument("--force", action="store_true", help="log in again even if the stored login still works")
    add_json(p)

    p = subparsers.add_parser("logout", help="revoke and forget the stored Globus login")
    add_json(p)

    p = subparsers.add_parser("whoami", help="show which Globus identity gardenbuild publishes as")
    add_json(p)


def _terminal_login_flow() -> Any:
    """globus-sdk's command-line flow, talking on stderr: stdout stays for the result
    (and for --json)."""
    import sys

    from globus_sdk.login_flows import CommandLineLoginFlowManager

    class TerminalLoginFlow(CommandLineLoginFlowManager):
        def print_authorize_url(self, authorize_url: str) -> None:
            print(f"Open this link, log in to Globus and allow gardenbuild:\n\n  {authorize_url}\n", file=sys.stderr)

        def prompt_for_code(self) -> str:
            with self._handle_input_errors():
                print("Paste the authorization code here: ", end="", file=sys.stderr, flush=True)
                return input().strip()

    return TerminalLoginFlow


def _who(info: dict[str, Any]) -> str:
    name = info.get("username") or info.get("identity_id") or "unknown identity"
    extra = [x for x in (info.get("name"), info.get("email")) if x]
    kind = " (service account)" if info.get("service_account") else ""
    return f"{name}{kind}" + (f" — {', '.join(extra)}" if extra else "") + f"\nidentity id: {info.get('identity_id')}"


def cmd_login(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.cli.common import emit
    from gardenbuild.publish import auth

    app = auth.make_app(login_flow_manager=_terminal_login_flow())
    if auth.is_service_account(app):
        reporter.info(f"using the service account in {auth.CLIENT_ID_VAR} / {auth.CLIENT_SECRET_VAR}")
    info = auth.login(app, force=args.force)
    where = f"\ntokens kept in {info['token_file']} (mode 0600)" if info.get("token_file") else ""
    emit(args, info, f"logged in as {_who(info)}{where}")
    return 0


def cmd_logout(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.cli.common import emit
    from gardenbuild.publish import auth

    app = auth.make_app()
    result = auth.logout(app)
    if result["service_account"]:
        text = f"nothing to forget: credentials come from {auth.CLIENT_ID_VAR} / {auth.CLIENT_SECRET_VAR}"
    elif not result["removed"]:
        text = "not logged in; nothing to forget"
    elif result["revoked"]:
        text = "logged out: tokens revoked and removed"
    else:
        reporter.warn("could not reach Globus Auth to revoke the tokens; they expire on their own")
        text = "logged out: tokens removed from this machine"
    emit(args, result, text)
    return 0


def cmd_whoami(args: argparse.Namespace, reporter: Reporter) -> int:
    from gardenbuild.cli.common import emit
    from gardenbuild.publish import auth

    info = auth.whoami(auth.make_app())
    emit(args, info, _who(info))
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace, Reporter], int]] = {
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
}
