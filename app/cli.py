"""imagex serve | ingest | watch | worker | samples | settings | user | migrate-store | nginx-config |
hips."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.cli_users import user_command, user_parser
from app.exceptions import ImageXError
from app.names import MEASURED_INTERVALS, STRETCHES
from app.nginx import JS_NAME, SITE_NAME
from app.settings import SETTINGS, Settings, markdown_table
from app.site_policy import VISIBILITIES
from app.store.records import JobRecord, JobState

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
    ingest.add_argument("--fixed-scaling", metavar="first|NAME",
                        help="one scaling for every image of the run, so that a mosaic has one background "
                        "and brightness: 'first' measures it on the first image (in the order the files are "
                        "listed) and stores it under a name (see --scaling-name); NAME applies a scaling "
                        "stored by an earlier run")
    ingest.add_argument("--scaling-name", metavar="NAME", help="with --fixed-scaling first: the name to "
                        "store the scaling under (default run-YYYYmmdd-HHMMSS)")
    ingest.add_argument("--interval", choices=MEASURED_INTERVALS,
                        help="the interval of the run's scaling (default: zscale, min-max for 8-bit rasters)")
    ingest.add_argument("--stretch", choices=STRETCHES, help="the stretch of the run's scaling: "
                        "ahisteq is adaptive histogram equalisation, with cells fixed in image pixels "
                        "(default: the site's default stretch, set by an administrator; linear unless set)")
    ingest.add_argument("--dry-run", action="store_true", help="list the files and whether each would be "
                        "queued; queue nothing, write no tiles")
    watch = commands.add_parser("watch", parents=[common], help="watch folders: queue and ingest every file "
                                "that arrives or changes in them once it has settled, until stopped")
    watch.add_argument("folders", nargs="*", type=Path, metavar="DIR",
                       help="folders to watch (recursively); default: IMAGEX_WATCH_DIRS")
    commands.add_parser("worker", parents=[common], help="run queued jobs from the shared store with a "
                        "process pool (no web server) until SIGTERM or Ctrl-C")
    samples = commands.add_parser("samples", parents=[common], help="write the sample images into a folder")
    samples.add_argument("folder", type=Path)
    settings = commands.add_parser("settings", parents=[common], help="show the settings in force")
    settings.add_argument("--markdown", action="store_true", help="print the settings table as Markdown")
    user_parser(commands, common)
    _migrate_store_parser(commands, common)
    _nginx_parser(commands, common)
    _hips_parser(commands, common)  # HiPS
    return parser


def _hips_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    hips = commands.add_parser("hips", help="the HiPS surveys of the celestial images (README: HiPS survey)")
    actions = hips.add_subparsers(dest="hips_action", required=True)
    rebuild = actions.add_parser("rebuild", parents=[common], help="build the surveys from scratch from the "
                                 "catalog (live updates keep them up to date afterwards)")
    rebuild.add_argument("--survey", default="all", choices=("all", "public", "registered"),
                         help="which survey (default %(default)s: public, registered and each user's own)")


def _nginx_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    nginx = commands.add_parser(
        "nginx-config", parents=[common],
        help="print an nginx site that checks tile tokens itself and serves tiles from disk (README: "
             "Behind a reverse proxy)")
    nginx.add_argument("--output", type=Path, metavar="DIR", help=f"write the site ({SITE_NAME}) and its "
                       f"JavaScript module ({JS_NAME}) into DIR instead of printing the site")
    nginx.add_argument("--js", action="store_true", help="print the JavaScript module instead of the site")
    nginx.add_argument("--js-path", type=Path, default=Path("/etc/nginx") / JS_NAME,
                       help="where the site imports the module from when printed (default %(default)s)")
    nginx.add_argument("--listen", default="80", help="nginx's listen address (default 80; 443 with TLS)")
    nginx.add_argument("--server-name", default="_", help="the site's host name (default: any)")
    nginx.add_argument("--upstream", help="where ImageX listens (default IMAGEX_HOST:IMAGEX_PORT)")
    nginx.add_argument("--ssl-certificate", default="", help="certificate file: serve HTTPS (and redirect "
                       "port 80 to it)")
    nginx.add_argument("--ssl-certificate-key", default="", help="the certificate's key file")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `imagex` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of changes
    try:
        overrides = {s.name: getattr(args, s.name) for s in SETTINGS}
        settings = Settings.load(**overrides)
        if args.command == "serve":
            return asyncio.run(serve(settings))
        if args.command == "ingest":
            return asyncio.run(ingest(settings, args.paths, owner=args.owner, visibility=args.visibility,
                                      progress=not args.no_progress, fixed_scaling=args.fixed_scaling,
                                      scaling_name=args.scaling_name, interval=args.interval,
                                      stretch=args.stretch, dry_run=args.dry_run))
        if args.command == "watch":
            return asyncio.run(watch(settings, args.folders))
        if args.command == "worker":
            from app.worker import Worker

            return asyncio.run(Worker(settings).run())
        if args.command == "samples":
            from app.samples import write_samples

            for path in write_samples(args.folder):
                print(path)
            return 0
        if args.command == "user":
            return asyncio.run(user_command(settings, args))
        if args.command == "migrate-store":
            from app.sky import coverage  # noqa: F401  (the catalogs' footprint functions, for their backfill)

            source = args.source or settings.store_url
            return asyncio.run(migrate_store(source, args.target, batch=args.batch))
        if args.command == "nginx-config":
            return asyncio.run(nginx_config(settings, args))
        if args.command == "hips":
            return asyncio.run(hips_rebuild(settings, args.survey))
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
    from app.archive import SERVING
    from app.lifecycle import Signals

    app = create_app(settings, preload=SERVING)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # one handler: ours
    config.graceful_timeout = 5
    signals = Signals().install()
    print(f"ImageX serving {settings.data} at http://{settings.host}:{settings.port}", flush=True)
    await hypercorn_serve(app, config, shutdown_trigger=signals.stop.wait)
    return 0


async def nginx_config(settings: Settings, args: argparse.Namespace) -> int:
    from app.nginx import write_site

    site, module = await write_site(
        settings, output=args.output, js_path=args.js_path, listen=args.listen, server_name=args.server_name,
        upstream=args.upstream, certificate=args.ssl_certificate, certificate_key=args.ssl_certificate_key)
    if args.output is not None:
        print(f"wrote {args.output / SITE_NAME} and {args.output / JS_NAME}: include the site in nginx's "
              "http block (e.g. link it into /etc/nginx/sites-enabled/) and reload nginx", file=sys.stderr)
    else:
        print(module if args.js else site, end="")
    return 0


async def hips_rebuild(settings: Settings, survey: str) -> int:
    """`imagex hips rebuild`: the survey from scratch, in this process's own pool."""
    from app.archive import Archive

    archive = Archive(settings)
    await archive.startup()
    try:
        started = time.monotonic()
        names = await archive.hips.names() if survey == "all" else [survey]
        members = {name: len(await archive.hips.members(name)) for name in names}
        orders = (await archive.hips.rebuild_all() if survey == "all"
                  else {survey: await archive.hips.rebuild(survey)})
    finally:
        await archive.close()
    for name, order in orders.items():
        print(f"HiPS survey {name}: {members[name]} image(s), deepest order {order} at "
              f"{archive.hips.folder(name)}")
    print(f"built in {time.monotonic() - started:.1f} s")
    return 0


async def ingest(settings: Settings, paths: Sequence[Path], *, owner: str = "", visibility: str = "private",
                 progress: bool = True, fixed_scaling: str | None = None, scaling_name: str | None = None,
                 interval: str | None = None, stretch: str | None = None, dry_run: bool = False) -> int:
    """Queue every image file under `paths`, run the queue with the pool until all of them are done or
    failed, and report. Returns the exit status: 0 when nothing failed. `fixed_scaling` "first" measures
    one scaling on the first image and applies it to all (stored as `scaling_name`); another value names a
    stored scaling to apply. `dry_run` lists what would be queued and changes nothing."""
    from app.archive import READING, Archive

    if fixed_scaling is not None or scaling_name is not None:  # else nothing to import: the pool starts now
        from app.ingest.fixed_scaling import check_options

        check_options(fixed_scaling, scaling_name, interval, stretch)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ImageXError(f"no such file or folder: {', '.join(missing)}")
    chosen = {"interval": interval or "auto", "stretch": stretch or "auto"}
    if dry_run:
        return await _dry_run(settings, paths, owner=owner, fixed_scaling=fixed_scaling,
                              scaling_name=scaling_name, chosen=chosen)
    # the pool's fork server starts at once and imports what reading files takes, while this process loads
    # the rest of the command, opens the catalog and walks the folders; its processes are forked from it
    archive = Archive(settings, preload=READING)
    archive.pool.warm(*READING, processes=1)
    from tqdm import tqdm

    from app.ingest import fixed_scaling as fixed
    from app.ingest.catalogue import catalogue_first, tile_catalogued
    from app.ingest.jobs import wait_for
    from app.ingest.scan import job_for, walk
    from app.lifecycle import running

    async with running(archive, "ingest") as archive:
        owner = await _stored_owner(archive.store, owner)
        files = await asyncio.to_thread(lambda: list(walk(paths, follow_links=settings.follow_links)))
        if not files:
            print("No image files found.")
            return 0
        # the pool's other processes start while the jobs are queued (none more for a single file)
        archive.pool.warm(*READING, processes=len(files) - 1)
        options: dict[str, Any] = {"visibility": visibility}
        if fixed_scaling == fixed.FIRST:
            measured = await fixed.measure(archive, files, chosen, settings.max_pixels)
            scaling = await fixed.save(archive.store, fixed.named(scaling_name or fixed.run_name(), measured,
                                                                  owner), chosen_name=bool(scaling_name))
            print(f"Fixed scaling {scaling.name!r} for every image of this run: {fixed.summary(scaling)}; "
                  f"apply it again with --fixed-scaling {scaling.name}", flush=True)
            options["scaling"] = scaling.job_option()
        elif fixed_scaling:
            scaling = await fixed.stored(archive.store, fixed_scaling)
            print(f"Fixed scaling {scaling.name!r} for every image of this run: {fixed.summary(scaling)}",
                  flush=True)
            options["scaling"] = scaling.job_option()
        elif interval or stretch:
            options["scaling"] = chosen
        new_jobs = [job_for(path, owner=owner) for path in files]
        for job in new_jobs:
            job.options.update(options)
        jobs = await archive.store.enqueue(new_jobs)
        known = {job.id for job in jobs if job.state == "done"}
        ids = list(dict.fromkeys(job.id for job in jobs))
        bar = tqdm(total=len(ids), unit="file", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        finished = 0
        searchable: float | None = None
        phased = False  # a file seen between its two phases

        def report(current: dict[str, tuple[JobState, bool]]) -> None:
            nonlocal finished, searchable, phased
            states = Counter(state for state, _ in current.values())
            done, failed = states["done"], states["failed"]
            # harvested: catalogued and found by searches, their pyramids still to come (or being built)
            found = states["harvested"] + sum(state == "running" and catalogued
                                              for state, catalogued in current.values())
            bar.set_postfix(found=found + done, done=done, failed=failed, refresh=False)
            bar.update(done + failed - finished)
            finished = done + failed
            phased = phased or found > 0
            # said only of a batch seen with files between the phases: the others were catalogued tiled
            if searchable is None and phased and found + done + failed == len(current):
                searchable = time.monotonic() - started

        runner = archive.runner
        assert runner is not None
        stop = asyncio.Event()
        started = time.monotonic()
        # a large batch's FITS files are all found by searches before any of them is read whole
        catalogued = await catalogue_first(archive, jobs, runner.worker)
        # then their pyramids, a few files to a pool call; the queue takes the batch's other files meanwhile,
        # or afterwards whatever those calls left to it
        queue_now = bool(set(ids) - set(catalogued) - known)

        async def pyramids_then_queue() -> None:
            await tile_catalogued(archive, catalogued, runner.worker, stop)
            if not queue_now:
                await runner.run(stop)

        jobs_running = [asyncio.create_task(pyramids_then_queue())]
        if queue_now:
            jobs_running.append(asyncio.create_task(runner.run(stop)))
        try:
            final = await wait_for(archive, ids, stop, report)
        finally:
            stop.set()
            await asyncio.gather(*jobs_running)
            bar.close()
        return _summary(final, known, time.monotonic() - started, runner.worker, searchable)


async def _stored_owner(store: Any, owner: str) -> str:
    """`--owner` as the stored username ("" stays the site); ImageXError when there is no such user."""
    if not owner:
        return ""
    account = await store.get_user_by_name(owner) if store is not None else None
    if account is None:
        raise ImageXError(f"--owner {owner}: there is no such user; add one with `imagex user add {owner}`")
    return str(account.username)  # the stored spelling: permissions compare names exactly


async def _dry_run(settings: Settings, paths: Sequence[Path], *, owner: str, fixed_scaling: str | None,
                   scaling_name: str | None, chosen: dict[str, str]) -> int:
    """List every file with what a run would do with it (judged by its key: path, size and modification
    time; content already catalogued under another name is only recognised when a run reads it)."""
    from app.formatting import human_bytes
    from app.ingest import fixed_scaling as fixed
    from app.ingest.scan import job_for, walk
    from app.sky import coverage  # noqa: F401  (the catalog's footprint functions, for its backfill)
    from app.store import Store, open_store

    store: Store | None = open_store(settings.store_url)
    if store is not None and not store.exists():
        store = None  # no catalog yet: every file is new, and a dry run creates nothing
    elif store is not None:
        await store.open()
    try:
        owner = await _stored_owner(store, owner)
        files = await asyncio.to_thread(lambda: list(walk(paths, follow_links=settings.follow_links)))
        if fixed_scaling and fixed_scaling != fixed.FIRST:
            if store is None:
                raise ImageXError(f"--fixed-scaling {fixed_scaling}: there is no scaling named "
                                  f"{fixed_scaling!r}; no scaling is stored yet (there is no catalog at "
                                  f"{settings.data})")
            scaling = await fixed.stored(store, fixed_scaling)
            print(f"Would apply the scaling {scaling.name!r}: {fixed.summary(scaling)}")
        jobs = await asyncio.to_thread(lambda: [job_for(path, owner=owner) for path in files])
        found = await store.jobs_with_keys([job.key for job in jobs]) if store is not None else []
        known = {job.key: job for job in found}
    finally:
        if store is not None:
            await store.close()
    if fixed_scaling == fixed.FIRST and files:
        measured = await fixed.measure(None, files, chosen, settings.max_pixels)
        scaling = fixed.named(scaling_name or fixed.run_name(), measured, owner)
        print(f"Would store the scaling {scaling.name!r} and apply it to every image: "
              f"{fixed.summary(scaling)}")
    counts = {"new": 0, "known": 0, "retry": 0}
    for job, path in zip(jobs, files, strict=True):
        earlier = known.get(job.key)
        if earlier is None:
            status, kind = "new", "new"
        elif earlier.state == "failed":
            status, kind = "retry (failed)", "retry"
        else:
            status, kind = f"already {earlier.state}", "known"
        counts[kind] += 1
        size = path.stat().st_size if path.exists() else None
        print(f"{status:<16} {human_bytes(size) or '-':>9}  {path}")
    print(f"{len(files)} file(s): {counts['new'] + counts['retry']} would be queued ({counts['new']} new, "
          f"{counts['retry']} failed before), {counts['known']} already queued or done. Nothing was queued "
          "(--dry-run).")
    return 0


async def watch(settings: Settings, folders: Sequence[Path]) -> int:
    """Run the folder watcher and a job runner until SIGINT or SIGTERM; files still settling then are
    caught up with at the next start, and a job in progress is handed back to the queue."""
    from app.archive import READING, Archive
    from app.lifecycle import Signals, running

    folders = list(folders) or list(settings.watch_folders)
    if not folders:
        raise ImageXError("watch: name the folders to watch, or set IMAGEX_WATCH_DIRS")
    not_folders = [str(folder) for folder in folders if not folder.is_dir()]
    if not_folders:
        raise ImageXError(f"watch: no such folder: {', '.join(not_folders)}")
    signals = Signals().install()
    async with running(Archive(settings, preload=READING), "watch", folders=folders) as archive:
        watcher, runner, stop = archive.watcher, archive.runner, signals.stop
        assert watcher is not None and runner is not None
        watching = asyncio.create_task(watcher.run(stop))
        jobs = asyncio.create_task(runner.run(stop))
        print(f"ImageX watching {', '.join(str(folder.path) for folder in watcher.folders)} into "
              f"{settings.data}; Ctrl-C stops", flush=True)
        await asyncio.wait([asyncio.create_task(stop.wait()), watching, jobs],
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        jobs.cancel()  # a job in progress goes back to the queue for the next runner
        outcome = await asyncio.gather(watching, jobs, return_exceptions=True)
        failures = [error for error in outcome if isinstance(error, Exception)]
        for error in failures:
            print(f"imagex: watch: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"Stopped watching; {watcher.queued} file(s) queued while watching.", flush=True)
        return 1 if failures else 0


def _summary(jobs: list[JobRecord], known: set[str], seconds: float, worker: str,
             searchable: float | None = None) -> int:
    failed = [job for job in jobs if job.state == "failed"]
    skipped = [job for job in jobs if job.state == "done"
               and (job.id in known or job.note.startswith("already in the archive"))]
    new = [job for job in jobs if job.state == "done" and job not in skipped]
    images = len({image_id for job in new for image_id in job.image_ids})  # a series' slices: one image
    elsewhere = sum(job.worker != worker for job in new)
    by_others = f", {elsewhere} of them by other runners" if elsewhere else ""
    print(f"{len(jobs)} file(s) in {seconds:.1f} s: {len(new)} ingested ({images} image(s){by_others}), "
          f"{len(skipped)} already in the archive, {len(failed)} failed.")
    if new and searchable is not None and searchable < seconds:
        print(f"Every file was catalogued (found by searches) after {searchable:.1f} s; the pyramids "
              "followed.")
    for job in failed:
        print(f"  FAILED {job.path}: {job.error}")
    return 1 if failed else 0


def _migrate_store_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    migrate = commands.add_parser(
        "migrate-store", parents=[common],
        help="copy a catalog to another store (SQLite to MongoDB ...); resumable",
        description="Copy images, jobs, users, API tokens, invitations, site settings, named scalings and "
        "search elements from one catalog to another. What the target holds already is skipped, so running "
        "it again after an interruption finishes the copy. Sessions are not copied: users log in again. "
        "Tiles and thumbnails stay where they are (the data folder).")
    migrate.add_argument("--from", dest="source", metavar="URL",
                         help="the catalog to copy: sqlite:///PATH or mongodb://HOST/DBNAME (default: the "
                         "catalog in use, IMAGEX_STORE)")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL",
                         help="the catalog to copy into (created when missing)")
    migrate.add_argument("--batch", type=int, default=500, metavar="N",
                         help="records per batch (default 500)")


async def migrate_store(source: str, target: str, *, batch: int = 500) -> int:
    """`imagex migrate-store`: 0 when every source record is in the target, 1 when some are not."""
    from app.exceptions import SettingError
    from app.store.migrate import Tally, migrate_store

    if batch < 1:
        raise SettingError(f"--batch must be at least 1, not {batch}")

    def progress(kind: str, tally: Tally) -> None:
        print(f"{kind}: {tally.copied} copied, {tally.present} there already", file=sys.stderr, flush=True)

    report = await migrate_store(source, target, batch=batch, progress=progress)
    for line in report.lines():
        print(line)
    if report.complete:
        print("migrate-store: every record is in the target")
        return 0
    print("migrate-store: some records are not in the target (see above); fix them and run it again",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
