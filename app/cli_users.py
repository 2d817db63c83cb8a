"""`imagex user add | passwd | list`: accounts from the command line, for the first administrator of a
site and for scripts (passwords generated and printed once, or read from standard input)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from app.exceptions import ImageXError
from app.settings import Settings


def user_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    # the settings flags go on each leaf command only: a sub-command's defaults would overwrite them
    user = commands.add_parser("user", help="add accounts, set passwords, list accounts")
    actions = user.add_subparsers(dest="user_command", required=True)
    add = actions.add_parser("add", parents=[common], help="add an account (prints a generated password "
                             "unless --password-stdin)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--admin", action="store_true", help="make it an administrator")
    add.add_argument("--email", default="", help="the account's email address")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    passwd = actions.add_parser("passwd", parents=[common], help="set an account's password (generated and "
                                "printed unless --password-stdin) and log out all its sessions")
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    passwd.add_argument("--revoke-tokens", action="store_true",
                        help="also revoke every API token of the account")
    actions.add_parser("list", parents=[common], help="list the accounts")


async def user_command(settings: Settings, args: argparse.Namespace) -> int:
    """`imagex user add | passwd | list`."""
    from app.archive import Archive

    archive = Archive(settings)
    await archive.startup()
    try:
        if args.user_command == "add":
            return await _user_add(archive, args)
        if args.user_command == "passwd":
            return await _user_passwd(archive, args)
        _user_list(await archive.store.list_users())
        return 0
    finally:
        await archive.close()


def _password_from(args: argparse.Namespace) -> str | None:
    """The password from standard input (its first line) with --password-stdin, else None."""
    if not args.password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ImageXError("--password-stdin: standard input holds no password")
    return password


async def _user_add(archive: Any, args: argparse.Namespace) -> int:
    from app import identity as accounts
    from app.site_policy import SITE_BY_NAME

    given = _password_from(args)
    password = given or accounts.generated_password()
    role = "admin" if args.admin else "user"
    try:
        email = SITE_BY_NAME["admin_email"].parse(args.email)
        user = await accounts.new_user(archive, args.name, password, role=role, email=email)
    except ValueError as error:
        raise ImageXError(str(error)) from None
    kind = "administrator" if args.admin else "user"
    if given is None:
        print(f"Created {kind} '{user.username}' with password '{password}'")
    else:
        print(f"Created {kind} '{user.username}'")
    return 0


async def _user_passwd(archive: Any, args: argparse.Namespace) -> int:
    from app import identity as accounts

    user = await archive.store.get_user_by_name(args.name.strip())
    if user is None:
        raise ImageXError(f"no account named {args.name!r} (see `imagex user list`)")
    given = _password_from(args)
    password = given or accounts.generated_password()
    try:
        accounts.check_new_password(password, user.username)
    except ValueError as error:
        raise ImageXError(str(error)) from None
    await archive.store.update_user(user.id, password_hash=await accounts.hash_password(archive, password))
    await archive.store.delete_user_sessions(user.id)
    await archive.store.clear_login_failures(prefix=accounts.account_prefix(user.username))
    ended = "; its sessions were logged out"
    if args.revoke_tokens:
        revoked = await archive.store.delete_user_tokens(user.id)
        ended += f" and its {revoked} API token{'' if revoked == 1 else 's'} revoked"
    if given is None:
        print(f"New password of '{user.username}': '{password}'{ended}")
    else:
        print(f"Password of '{user.username}' changed{ended}")
    return 0


def _user_list(users: Sequence[Any]) -> None:
    from app.formatting import human_time

    if not users:
        print("(no accounts yet)")
        return
    rows = [("NAME", "ROLE", "EMAIL", "DISABLED", "CREATED", "LAST LOGIN")]
    rows += [(user.username, user.role, user.email or "-", "yes" if user.disabled else "no",
              human_time(user.created), human_time(user.last_login) or "never") for user in users]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
