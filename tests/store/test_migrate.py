"""imagex migrate-store: a catalog copied to another store, resumable, counts checked. SQLite to SQLite
always; to and from MongoDB when IMAGEX_TEST_MONGODB_URL is set."""

from __future__ import annotations

import sys

import pytest

from app.cli import main
from app.exceptions import StoreError
from app.store import open_store
from app.store.base import Store
from app.store.migrate import KINDS, migrate_store
from app.store.query import Cone, DateRange, TextMatch
from app.store.records import (
    ApiToken,
    ImageLocation,
    Invitation,
    NamedScaling,
    NewJob,
    SearchElement,
    User,
    new_id,
    now,
)
from tests.store.examples import image, sky_at
from tests.store.store_helpers import MONGODB_ENV, store_url

PAIRS = [("sqlite", "sqlite"),
         pytest.param("sqlite", "mongodb", marks=pytest.mark.skipif(
             not __import__("os").environ.get(MONGODB_ENV), reason=f"needs {MONGODB_ENV}")),
         pytest.param("mongodb", "sqlite", marks=pytest.mark.skipif(
             not __import__("os").environ.get(MONGODB_ENV), reason=f"needs {MONGODB_ENV}"))]


async def fill(store: Store, images: int = 7) -> dict[str, object]:
    """A small catalog with something of every kind that is copied."""
    alice = User(new_id(), "Alice", "admin", "hash-a", email="a@x.org", quota=10**9, last_login=5.0)
    bob = User(new_id(), "bob", "user", "hash-b", disabled=True)
    await store.add_user(alice)
    await store.add_user(bob)
    await store.add_token(ApiToken(new_id(), alice.id, "laptop", "tok-1", created=1.0, last_used=2.0))
    await store.add_token(ApiToken(new_id(), bob.id, "ci", "tok-2", created=3.0))
    await store.add_invitation(Invitation(new_id(), "code-1", alice.id, expires=now() + 600, created=1.0))
    await store.add_invitation(Invitation(new_id(), "code-2", alice.id, expires=now() + 600, created=2.0,
                                          used_by="carol", used_at=3.0))
    await store.save_site_settings({"site_name": "Observatory", "default_quota": 5 * 10**9})
    await store.save_scaling(NamedScaling("deep", "zscale", "asinh", -1.0, 99.5, source="/a.fits"))
    for element in (SearchElement("exp", "number", "Exposure", ["EXPTIME", "EXPOSURE"]),
                    SearchElement("when", "date", "Date", ["DATE-OBS", "MJD-OBS"]),
                    SearchElement("obj", "text", "Object", ["OBJECT"], enabled=False)):
        await store.add_element(element)
    await store.order_elements(["obj"])
    jobs = await store.enqueue([NewJob(f"k{n}", f"/in/{n}.fits", owner=alice.id, options={"size": n})
                                for n in range(4)])
    claimed = await store.claim_job("w1", 60)
    await store.finish_job(claimed.id, "w1", state="done", note="2 images", image_ids=["x", "y"])
    await store.claim_job("w2", 60)  # left running, lease and all
    records = [image(f"img{n}", owner=alice.id, created=100.0 + n, EXPTIME=float(n), OBJECT=f"M{n}",
                     DATE_OBS=f"2024-01-{n + 1:02d}T00:00:00",
                     sky=sky_at(150.0 + n, 2.0) if n % 2 == 0 else None)
               for n in range(images)]
    records += [image("hdu0", sha256="multi", hdu=0, created=1.0, FILTER="r"),
                image("hdu1", sha256="multi", hdu=1, created=1.0, FILTER="g")]
    for record in records:
        record.job_id = jobs[0].id
    await store.add_images(records)
    # copies of two files found under other paths
    await store.add_locations([ImageLocation(records[0].id, "/in/tree/copy-0.fits", 200.0),
                               ImageLocation(records[-1].id, "/in/tree/multi.fits", 201.0)])
    await store.charge_content(alice.id, records[0].sha256, 10**7)  # a compressed upload's unfolded size
    return {"images": records, "jobs": jobs}


async def same_catalog(source: Store, target: Store) -> None:
    """Everything copied reads back the same from the target, and its searches work there."""
    images = await source.find_images(limit=1000)
    assert images and [await target.get_image(record.id) for record in images] == images
    assert await target.count_images() == len(images)
    assert await target.keyword_counts() == await source.keyword_counts()
    ids = [record.id for record in images]
    assert await target.image_locations(ids) == await source.image_locations(ids)
    for query in (DateRange(("DATE-OBS",), start=60313.0), Cone(152.0, 2.0, 0.05), TextMatch("OBJECT", "m1")):
        found = {r.id for r in await target.find_images(query)}
        assert found == {r.id for r in await source.find_images(query)} != set()
    jobs = await source.list_jobs(limit=1000)
    assert sorted(await target.get_jobs([job.id for job in jobs]), key=lambda job: job.id) == sorted(
        jobs, key=lambda job: job.id)
    assert await target.job_counts() == await source.job_counts()
    assert await target.list_users() == await source.list_users()
    for user in await source.list_users():
        assert await target.list_tokens(user.id) == await source.list_tokens(user.id)
    assert await target.list_invitations() == await source.list_invitations()
    assert await target.site_settings() == await source.site_settings()
    assert await target.list_scalings() == await source.list_scalings()
    assert await target.content_charges() == await source.content_charges()
    elements = [e.public() for e in await source.list_elements()]
    assert [e.public() for e in await target.list_elements()] == elements
    assert await target.indexed_keywords() == ["EXPOSURE", "EXPTIME", "OBJECT"]


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS)
async def test_a_catalog_is_copied_whole_and_checked(source_kind, target_kind, tmp_path, request):
    source_url = store_url(source_kind, tmp_path, request, "source")
    target_url = store_url(target_kind, tmp_path, request, "target")
    source = open_store(source_url)
    await source.open()
    try:
        await fill(source)
    finally:
        await source.close()

    report = await migrate_store(source_url, target_url, batch=3)
    assert report.complete
    tallies = report.tallies
    assert {kind: (t.source, t.copied, t.present, t.refused, t.found) for kind, t in tallies.items()} == {
        "images": (9, 9, 0, 0, 9), "locations": (11, 2, 9, 0, 11), "jobs": (4, 4, 0, 0, 4),
        "users": (2, 2, 0, 0, 2),
        "tokens": (2, 2, 0, 0, 2),
        "invitations": (2, 2, 0, 0, 2), "settings": (2, 2, 0, 0, 2), "scalings": (1, 1, 0, 0, 1),
        "elements": (3, 3, 0, 0, 3), "charges": (1, 1, 0, 0, 1)}

    source, target = open_store(source_url), open_store(target_url)
    await source.open()
    await target.open()
    try:
        await same_catalog(source, target)
        # the copy is a working catalog: the running job's lease, the queue order
        assert (await target.claim_job("w3", 60)).key == "k2"
    finally:
        await source.close()
        await target.close()

    again = await migrate_store(source_url, target_url)
    assert again.complete
    assert all(t.copied == 0 and t.present == t.source for kind, t in again.tallies.items()
               if kind != "jobs") and again.tallies["jobs"].present == 4


def sqlite_urls(folder) -> tuple[str, str]:
    return f"sqlite:///{folder / 'source.sqlite'}", f"sqlite:///{folder / 'target.sqlite'}"


class Interrupted(Exception):
    pass


async def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path):
    source_url, target_url = sqlite_urls(tmp_path)
    source = open_store(source_url)
    await source.open()
    await fill(source, images=10)
    await source.close()

    batches: list[int] = []

    def stop_after_two(kind, tally):
        if kind == "images":
            batches.append(tally.copied)
            if len(batches) == 2:
                raise Interrupted

    with pytest.raises(Interrupted):
        await migrate_store(source_url, target_url, batch=4, progress=stop_after_two)
    assert batches == [4, 8]

    report = await migrate_store(source_url, target_url, batch=4)
    images = report.tallies["images"]
    assert (images.source, images.present, images.copied, images.found) == (12, 8, 4, 12)
    assert report.complete
    target = open_store(target_url)
    await target.open()
    try:
        assert await target.count_images() == 12
        assert (await target.keyword_counts())["EXPTIME"] == 10  # nothing counted twice
    finally:
        await target.close()


async def test_records_the_target_holds_differently_are_reported_not_overwritten(tmp_path):
    source_url, target_url = sqlite_urls(tmp_path)
    source, target = open_store(source_url), open_store(target_url)
    await source.open()
    await target.open()
    try:
        filled = await fill(source, images=3)
        clash = filled["images"][1]  # type: ignore[index]
        # the same file catalogued in the target under another id, and a username taken there
        other = image("theirs", sha256=clash.sha256, hdu=clash.hdu, owner=clash.owner)
        await target.add_images([other])
        await target.add_user(User(new_id(), "BOB", "user", "hash-other"))
    finally:
        await source.close()
        await target.close()

    report = await migrate_store(source_url, target_url, batch=10)
    assert not report.complete
    images, users = report.tallies["images"], report.tallies["users"]
    assert (images.source, images.copied, images.refused, images.found) == (5, 4, 1, 4)
    assert (users.source, users.copied, users.refused, users.found) == (2, 1, 1, 1)
    assert "already catalogued" in images.problems[0] and clash.path in images.problems[0]
    assert "'bob' belongs to another account" in users.problems[0]
    lines = "\n".join(report.lines())
    assert "MISSING 1" in lines
    target = open_store(target_url)
    await target.open()
    try:
        assert (await target.get_image(other.id)).name == "theirs"
    finally:
        await target.close()


async def test_the_command(tmp_path, capsys):
    source_url, target_url = sqlite_urls(tmp_path)
    source = open_store(source_url)
    await source.open()
    await fill(source, images=2)
    await source.close()

    assert await _main(["migrate-store", "--from", source_url, "--to", target_url, "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "every record is in the target" in out
    for kind in KINDS:
        assert any(line.startswith(kind) and line.rstrip().endswith("ok") for line in out.splitlines()), kind

    # without --from: the catalog in use (IMAGEX_STORE / --store)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    assert await _main(["migrate-store", "--store", source_url, "--to", elsewhere]) == 0
    assert "every record is in the target" in capsys.readouterr().out
    copy = open_store(elsewhere)
    await copy.open()
    assert await copy.count_images() == 4
    await copy.close()

    assert await _main(["migrate-store", "--from", source_url, "--to", target_url, "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
    assert await _main(["migrate-store", "--from", source_url, "--to", source_url]) == 2
    assert "the same catalog" in capsys.readouterr().err
    assert await _main(["migrate-store", "--from", source_url, "--to", "redis://x"]) == 2
    assert "unknown store URL" in capsys.readouterr().err
    typo = tmp_path / "sourse.sqlite"
    assert await _main(["migrate-store", "--from", f"sqlite:///{typo}", "--to", target_url]) == 2
    assert f"there is no catalog at {typo}" in capsys.readouterr().err
    assert not typo.exists()


async def _main(argv: list[str]) -> int:
    """`main` runs its own event loop: call it from a thread, as the shell would from a process."""
    import asyncio

    return await asyncio.to_thread(main, argv)


def test_without_pymongo_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymongo", None)  # what `import pymongo` meets when it is not installed
    for name in [name for name in sys.modules if name.split(".")[:3] == ["app", "store", "mongo"]]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(StoreError, match=r"pip install 'imagex\[mongodb\]'"):
        open_store("mongodb://localhost/imagex")


async def test_an_unreachable_mongodb_is_a_clear_store_error():
    store = open_store("mongodb://user:secret@127.0.0.1:9/imagex?serverSelectionTimeoutMS=300")
    with pytest.raises(StoreError, match="cannot open the MongoDB catalog") as caught:
        await store.open()
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreError, match="not open"):
        await store.count_images()
    await store.close()
