"""imagex serve | ingest | samples | settings | user."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.exceptions import ImageXError
from app.settings import SETTINGS, Settings, markdown_table
from app.site import VISIBILITIES
from app.store.base import JobRecord

log = logging.getLogger("imagex")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (each also an IMAGEX_* environment variable)")
    for setting in SETTINGS:
        group.add_argument(setting.flag, dest=setting.name, default=None, metavar=setting.name.upper(),
                           help=f"{setting.help} [{setting.env}, default {setting.default!r}]")
    parser = argparse.ArgumentParser(prog="imagex", description="ImageX: an archive for scientific images.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", parents=[common], help="serve the portal and JSON API and run queued jobs")
    ingest = commands.add_parser("ingest", parents=[common],
                                 help="ingest files and folders (recursively) into the archive")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--owner", default="", help="owner (a username) recorded for the ingested images; "
                        "empty: the site itself, managed by administrators")
    ingest.add_argument("--visibility", default="private", choices=VISIBILITIES,
                        help="who may see the ingested images: private (owner and admins), registered "
                        "(every logged-in user) or public (guests too); default private")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar (summary only)")
    samples = commands.add_parser("samples", parents=[common], help="write the sample images into a folder")
    samples.add_argument("folder", type=Path)
    settings = commands.add_parser("settings", parents=[common], help="show the settings in force")
    settings.add_argument("--markdown", action="store_true", help="print the settings table as Markdown")
    _user_parser(commands, common)
    return parser


def _user_parser(commands: Any, common: argparse.ArgumentParser) -> None:
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
    actions.add_parser("list", parents=[common], help="list the accounts")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `imagex` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    try:
        overrides = {s.name: getattr(args, s.name) for s in SETTINGS}
        settings = Settings.load(**overrides)
        if args.command == "serve":
            return asyncio.run(serve(settings))
        if args.command == "ingest":
            return asyncio.run(ingest(settings, args.paths, owner=args.owner, visibility=args.visibility,
                                      progress=not args.no_progress))
        if args.command == "samples":
            from app.samples import write_samples

            for path in write_samples(args.folder):
                print(path)
            return 0
        if args.command == "user":
            return asyncio.run(user_command(settings, args))
        if args.command == "settings":
            if args.markdown:
                print(markdown_table(), end="")
            else:
                for name, value in settings.as_dict().items():
                    print(f"IMAGEX_{name.upper()}={value}")
            return 0
    except ImageXError as error:
        print(f"imagex: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nimagex: interrupted; queued and unfinished jobs stay in the catalog: run the same command "
              "again to resume", file=sys.stderr)
        return 130
    return 2


async def serve(settings: Settings) -> int:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from app import create_app

    app = create_app(settings)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # one handler: ours
    config.graceful_timeout = 5
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"ImageX serving {settings.data} at http://{settings.host}:{settings.port}", flush=True)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)
    return 0


async def ingest(settings: Settings, paths: Sequence[Path], *, owner: str = "", visibility: str = "private",
                 progress: bool = True) -> int:
    """Queue every image file under `paths`, run the queue with the pool until all of them are done or
    failed, and report. Returns the exit status: 0 when nothing failed."""
    from tqdm import tqdm

    from app.archive import Archive
    from app.ingest.jobs import JobRunner, wait_for
    from app.ingest.scan import job_for, walk

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ImageXError(f"no such file or folder: {', '.join(missing)}")
    archive = Archive(settings)
    await archive.startup()
    try:
        if owner:
            account = await archive.store.get_user_by_name(owner)
            if account is None:
                raise ImageXError(f"--owner {owner}: there is no such user; add one with "
                                  f"`imagex user add {owner}`")
            owner = account.username  # the stored spelling: permissions compare names exactly
        files = await asyncio.to_thread(lambda: list(walk(paths)))
        if not files:
            print("No image files found.")
            return 0
        new_jobs = [job_for(path, owner=owner) for path in files]
        for job in new_jobs:
            job.options["visibility"] = visibility
        jobs = await archive.store.enqueue(new_jobs)
        known = {job.id for job in jobs if job.state == "done"}
        ids = list(dict.fromkeys(job.id for job in jobs))
        bar = tqdm(total=len(ids), unit="file", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        finished = 0

        def report(current: list[JobRecord]) -> None:
            nonlocal finished
            done = sum(job.state == "done" for job in current)
            failed = sum(job.state == "failed" for job in current)
            bar.set_postfix(done=done, failed=failed, refresh=False)
            bar.update(done + failed - finished)
            finished = done + failed

        runner = JobRunner(archive, concurrency=settings.pool_size, role="ingest")
        stop = asyncio.Event()
        started = time.monotonic()
        running = asyncio.create_task(runner.run(stop))
        try:
            final = await wait_for(archive, ids, stop, report)
        finally:
            stop.set()
            await running
            bar.close()
        return _summary(final, known, time.monotonic() - started, runner.worker)
    finally:
        await archive.close()


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
    from app import accounts
    from app.site import SITE_BY_NAME

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
    from app import accounts

    user = await archive.store.get_user_by_name(args.name.strip())
    if user is None:
        raise ImageXError(f"no account named {args.name!r} (see `imagex user list`)")
    given = _password_from(args)
    password = given or accounts.generated_password()
    try:
        accounts.check_new_password(password, user.username)
    except ValueError as error:
        raise ImageXError(str(error)) from None
    await archive.store.update_user(user.id, password_hash=await accounts.hash_password(password))
    await archive.store.delete_user_sessions(user.id)
    await archive.store.clear_login_failures([f"user:{user.username.lower()}"])
    ended = "; its sessions were logged out"
    if given is None:
        print(f"New password of '{user.username}': '{password}'{ended}")
    else:
        print(f"Password of '{user.username}' changed{ended}")
    return 0


def _user_list(users: Sequence[Any]) -> None:
    from app.routes.units import human_time

    if not users:
        print("(no accounts yet)")
        return
    rows = [("NAME", "ROLE", "EMAIL", "DISABLED", "CREATED", "LAST LOGIN")]
    rows += [(user.username, user.role, user.email or "-", "yes" if user.disabled else "no",
              human_time(user.created), human_time(user.last_login) or "never") for user in users]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _summary(jobs: list[JobRecord], known: set[str], seconds: float, worker: str) -> int:
    failed = [job for job in jobs if job.state == "failed"]
    skipped = [job for job in jobs if job.state == "done"
               and (job.id in known or job.note.startswith("already in the archive"))]
    new = [job for job in jobs if job.state == "done" and job not in skipped]
    images = sum(len(job.image_ids) for job in new)
    elsewhere = sum(job.worker != worker for job in new)
    by_others = f", {elsewhere} of them by other runners" if elsewhere else ""
    print(f"{len(jobs)} file(s) in {seconds:.1f} s: {len(new)} ingested ({images} image(s){by_others}), "
          f"{len(skipped)} already in the archive, {len(failed)} failed.")
    for job in failed:
        print(f"  FAILED {job.path}: {job.error}")
    return 1 if failed else 0




if __name__ == "__main__":
    sys.exit(main())
