"""The portal page `/`: newest images first, paging, the ingest queue and its failures, htmx fragments."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from app.formatting import human_bytes, human_time
from app.ingest.scan import job_for
from tests.helpers import QUICK_PASSWORDS, ingest
from tests.routes.pages import text_of

CARD = re.compile(r'<li class="card">(.*?)</li>', re.S)


def cards(html: str) -> list[dict[str, str]]:
    """Each image card of the catalog: its name, thumbnail URL, link and the text of its meta lines."""
    out = []
    for body in CARD.findall(html):
        name = re.search(r'<a class="name" href="([^"]*)">(.*?)</a>', body, re.S)
        thumb = re.search(r'<img src="([^"]*)"', body)
        assert name and thumb, body
        metas = [unescape(m).strip() for m in re.findall(r'<span class="meta[^"]*">(.*?)</span>', body, re.S)]
        out.append({"href": name.group(1), "name": unescape(name.group(2)), "thumb": unescape(thumb.group(1)),
                    "meta": " | ".join(metas), "raw": body})
    return out


async def test_lists_images_newest_first_with_name_date_size_and_thumbnail(client, add_image):
    first = await add_image("first.fits", OBJECT="NGC 1", DATE_OBS="2026-01-02T03:04:05")
    unnamed = await add_image("unnamed.fits", OBJECT="")
    last = await add_image("last.fits", OBJECT="NGC 3", size=80)
    assert first.created < unnamed.created < last.created

    response = await client.get("/")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    html = await text_of(response)
    assert "3 images in the archive." in html
    listed = cards(html)
    assert [card["name"] for card in listed] == ["NGC 3", "unnamed.fits", "NGC 1"]
    assert [card["href"] for card in listed] == [f"/images/{i.id}" for i in (last, unnamed, first)]

    by_name = {card["name"]: card for card in listed}
    assert "2026-01-02T03:04:05" in by_name["NGC 1"]["meta"]
    # without DATE-OBS the ingest time stands in for the date
    assert human_time(unnamed.created) in by_name["unnamed.fits"]["meta"]
    for image in (first, unnamed, last):
        card = by_name[image.name]
        assert human_bytes(image.size) in card["meta"] and image.size > 0
        assert f"{image.width}\u00d7{image.height}" in card["meta"]

    for card in listed:
        thumb = await client.get(card["thumb"])
        assert thumb.status_code == 200, card["thumb"]
        assert thumb.content_type == "image/jpeg"
        body = await thumb.get_data()
        assert body.startswith(b"\xff\xd8\xff") and len(body) > 100


async def test_empty_archive_says_how_to_add_images(admin):
    html = await text_of(await admin.get("/"))
    assert "0 images in the archive." in html
    assert "No images yet" in html and "imagex ingest" in html
    assert '<li class="card">' not in html


async def test_the_empty_archive_shows_the_ways_in(admin):
    html = await text_of(await admin.get("/"))
    ways = html[html.index('id="how-to-add"'):]
    assert "imagex ingest PATH" in ways and 'href="/upload"' in ways
    assert "drop files into" not in ways  # this app watches no folder (no watcher runs in the test client)


async def test_the_inbox_is_named_where_a_watcher_runs(tmp_path, pool, make_user):
    from app import create_app
    from app.settings import Settings
    from tests.helpers import log_in

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = Settings.load(environ={}, hips=False,
                             data=str(tmp_path / "watched"), workers=2, watch_dirs=str(inbox))
    app = create_app(settings, first_admin=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        from app.identity import new_user
        from tests.helpers import PASSWORD

        await new_user(app.extensions["imagex"], "root", PASSWORD, role="admin")
        await log_in(client, "root")
        html = await text_of(await client.get("/"))
        assert f"drop files into <code>{inbox}</code>" in html


async def test_a_guest_is_told_when_public_images_are_on_their_way(client, archive):
    """Only that public images are coming, never what or whose: a private upload in the queue says nothing
    to a guest."""
    private = job_for(Path("/data/mine.fits"), owner="alice")
    private.options["visibility"] = "private"
    await archive.store.enqueue([private])
    html = await text_of(await client.get("/"))
    assert 'id="preparing"' not in html and 'hx-trigger="every 2s"' not in html and "mine.fits" not in html
    public = job_for(Path("/data/sample.fits"))
    public.options["visibility"] = "public"
    await archive.store.enqueue([public])
    html = await text_of(await client.get("/"))
    assert "Images are being prepared" in html and 'hx-trigger="every 2s"' in html  # the page follows
    assert "sample.fits" not in html and "queued" not in html


async def test_failures_link_to_the_monitor_for_administrators(admin, archive):
    failing = job_for(Path("/data/broken.fits"))
    await archive.store.enqueue([failing])
    claimed = await archive.store.claim_job("w", 60)
    await archive.store.finish_job(claimed.id, "w", state="failed", error="broken")
    html = await text_of(await admin.get("/"))
    assert '<a href="/admin/monitor" class="bad">1 file failed</a>' in html


async def test_a_guest_who_sees_nothing_is_asked_to_log_in(client, add_image):
    await add_image("hidden.fits", visibility="private")
    html = await text_of(await client.get("/"))
    assert "0 images in the archive." in html and '<li class="card">' not in html
    assert "imagex ingest" not in html and 'href="/login">Log in</a> to see more' in html


async def test_paging_splits_the_listing(client, add_image):
    images = [await add_image(f"p{n}.fits", OBJECT=f"Field {n}") for n in range(3)]
    newest_first = [image.name for image in reversed(images)]

    page1 = await text_of(await client.get("/?page=1&per_page=2"))
    page2 = await text_of(await client.get("/", query_string={"page": "2", "per_page": "2"}))
    assert [card["name"] for card in cards(page1)] == newest_first[:2]
    assert [card["name"] for card in cards(page2)] == newest_first[2:]
    assert "page 1 of 2" in page1 and "page 2 of 2" in page2
    assert re.search(r'href="/\?page=2&(amp;)?per_page=2">older', page1)
    assert re.search(r'href="/\?page=1&(amp;)?per_page=2">&larr; newer', page2)
    # one page holds everything: no pager
    everything = await text_of(await client.get("/?per_page=3"))
    assert len(cards(everything)) == 3 and "page 1 of" not in everything


@pytest.mark.parametrize(("query", "message"), [
    ("page=0", "page must be 1 or more"),
    ("page=-2", "page must be 1 or more"),
    ("page=abc", "must be whole numbers"),
    ("per_page=1.5", "must be whole numbers"),
    ("per_page=0", "per_page 1-200"),
    ("per_page=201", "per_page 1-200"),
    ("page=", "must be whole numbers"),
    (f"page={2**63 - 1}", "at most 1000000000"),  # its offset would not fit the store's integers
])
async def test_bad_paging_values_are_a_400_page_with_a_message(client, query, message):
    response = await client.get(f"/?{query}")
    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    html = await text_of(response)
    assert "<h1>400</h1>" in html and message in html


async def test_ingest_failures_show_file_name_and_message(client, admin, archive, tmp_path: Path, write_fits):
    folder = tmp_path / "bad"
    folder.mkdir()
    text = folder / "notes.fits"
    text.write_text("these are observing notes, not pixels\n")
    good = write_fits("whole.fits")
    truncated = folder / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:-2880])
    jobs = {Path(job.path).name: job for job in await ingest(archive, text, truncated, good)}
    assert jobs["whole.fits"].state == "done"
    assert jobs["notes.fits"].state == jobs["truncated.fits"].state == "failed"

    html = await text_of(await client.get("/"))
    assert "2 files failed</a>." in html and "Ingest failures" in html
    failures = re.search(r'<table class="jobs failed">(.*?)</table>', html, re.S)
    assert failures
    table = unescape(failures.group(1))
    for name in ("notes.fits", "truncated.fits"):
        assert name in table
        assert jobs[name].error and jobs[name].error in table
    assert "not an image" in jobs["notes.fits"].error
    assert "truncated" in jobs["truncated.fits"].error
    assert "whole.fits" not in table
    assert "1 image in the archive." in html


async def test_failed_job_with_a_hostile_file_name_is_escaped(client, admin, archive, tmp_path: Path):
    hostile = tmp_path / "<img src=x onerror=alert(9)>.fits"
    hostile.write_bytes(b"<html><body>not a FITS file</body></html>")
    [job] = await ingest(archive, hostile)
    assert job.state == "failed" and "HTML page" in job.error
    html = await text_of(await client.get("/"))
    assert "<img src=x onerror=alert(9)>" not in html
    assert "&lt;img src=x onerror=alert(9)&gt;.fits" in html


async def test_htmx_request_gets_only_the_catalog_fragment(client, add_image):
    image = await add_image("frag.fits", OBJECT="Fragment field")
    full = await text_of(await client.get("/"))
    assert full.lstrip().lower().startswith("<!doctype html>") and "<html" in full

    response = await client.get("/?page=1&per_page=5", headers={"HX-Request": "true"})
    assert response.status_code == 200
    fragment = await text_of(response)
    assert fragment.lstrip().startswith('<section id="catalog"')
    assert fragment.rstrip().endswith("</section>")
    assert "<html" not in fragment and "<head" not in fragment and "<body" not in fragment
    assert "<!doctype" not in fragment.lower()
    assert [card["name"] for card in cards(fragment)] == [image.name]
    # the fragment is the same catalog section the full page embeds
    assert fragment.strip() in full


async def test_pending_jobs_make_the_catalog_poll_itself(client, admin, archive, write_fits):
    await archive.store.enqueue([job_for(write_fits("waiting.fits"))])
    fragment = await text_of(await client.get("/?per_page=7", headers={"HX-Request": "true"}))
    assert "Ingesting: 0 running, 1 queued." in fragment
    assert re.search(r'hx-get="/\?page=1&(amp;)?per_page=7"', fragment)
    assert 'hx-trigger="every 2s"' in fragment
    assert "No images yet" not in fragment

    assert await ingest(archive) == []  # nothing new to queue: the runner drains the waiting job
    idle = await text_of(await client.get("/", headers={"HX-Request": "true"}))
    assert "hx-trigger" not in idle and "Ingesting" not in idle
    assert "1 image in the archive." in idle
