"""Hostile FITS headers sent to `PUT /api/uploads/<name>`: a broken structural card is refused with 422 and a
message naming the upload, the HDU and the card (never a 500 or an internal error), and nothing is kept; a
card that can be read anyway is, and the image's note says what was repaired."""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from tests.fitsedit import CARD, card, edited
from tests.routes.upload_helpers import error_of, put, run_jobs, spooled, token_for, uploaded


@pytest.fixture
async def alice_token(archive, make_user):
    return await token_for(archive, await make_user("alice"))

def plain() -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.arange(32 * 32, dtype=np.float32).reshape(32, 32)).writeto(buffer)
    return buffer.getvalue()


def compressed() -> bytes:
    buffer = io.BytesIO()
    pixels = np.arange(32 * 32, dtype=np.int16).reshape(32, 32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(pixels, compression_type="RICE_1")]).writeto(buffer)
    return buffer.getvalue()


def naxis(value: str) -> bytes:
    return edited(plain(), "NAXIS", card("NAXIS", value))


def fz(keyword: str, value: str) -> bytes:
    return edited(compressed(), keyword, card(keyword, value), hdu=1)


FZ = "HDU 1 (COMPRESSED_IMAGE)"
REFUSED: list[tuple[str, Any, str]] = [
    ("naxis1-text", lambda: edited(plain(), "NAXIS1", card("NAXIS1", "'abc'")),
     "HDU 0: NAXIS1 = 'abc' is not a whole number"),
    ("naxis1-negative", lambda: edited(plain(), "NAXIS1", card("NAXIS1", "-300")),
     "HDU 0: NAXIS1 = -300 must be at least 0"),
    ("naxis1-huge", lambda: edited(plain(), "NAXIS1", card("NAXIS1", "99999999999999")),
     "HDU 0 declares 99999999999999x32 = 3,199,999,999,999,968 pixels, more than the limit of "
     "8,000,000,000 (IMAGEX_MAX_PIXELS)"),
    ("naxis1-float", lambda: edited(plain(), "NAXIS1", card("NAXIS1", "3.5")),
     "HDU 0: NAXIS1 = 3.5 is not a whole number"),
    ("naxis3-missing", lambda: naxis("3"),
     "HDU 0: the required card NAXIS3 is missing (NAXIS = 3 declares it)"),
    ("naxis-huge", lambda: naxis("1000"), "HDU 0: NAXIS = 1,000 must be between 0 and 999"),
    ("naxis-negative", lambda: naxis("-1"), "HDU 0: NAXIS = -1 must be between 0 and 999"),
    ("bitpix-odd", lambda: edited(plain(), "BITPIX", card("BITPIX", "12")),
     "HDU 0: BITPIX = 12 is not one of 8, 16, 32, 64, -32, -64"),
    ("bitpix-text", lambda: edited(plain(), "BITPIX", card("BITPIX", "'big'")),
     "HDU 0: BITPIX = 'big' is not a whole number"),
    ("bscale-zero", lambda: edited(plain(), "BSCALE", card("BSCALE", "0")),
     "HDU 0: BSCALE = 0 would make every pixel the same value (BZERO); a pixel scale must not be zero"),
    ("garbled", lambda: edited(plain(), "NAXIS2", bytes(range(33, 113))),
     "HDU 0: the required card NAXIS2 is missing (NAXIS = 2 declares it)"),
    ("no-end", lambda: plain().replace(b"END" + b" " * 77, b"XND" + b" " * 77, 1),
     "HDU 0: the header has no END card (the file ends 8,640 bytes into it)"),
    ("fz-znaxis1-negative", lambda: fz("ZNAXIS1", "-300"), f"{FZ}: ZNAXIS1 = -300 must be at least 1"),
    ("fz-znaxis1-text", lambda: fz("ZNAXIS1", "'wide'"), f"{FZ}: ZNAXIS1 = 'wide' is not a whole number"),
    ("fz-zcmptype-bogus", lambda: fz("ZCMPTYPE", "'BOGUS_9'"),
     f"{FZ}: ZCMPTYPE = 'BOGUS_9' is not a compression FITS defines (RICE_1, RICE_ONE, GZIP_1, GZIP_2, "
     "PLIO_1, HCOMPRESS_1, NOCOMPRESS)"),
    ("fz-zbitpix-odd", lambda: fz("ZBITPIX", "7"),
     f"{FZ}: ZBITPIX = 7 is not one of 8, 16, 32, 64, -32, -64"),
    ("fz-znaxis-huge", lambda: fz("ZNAXIS", "1200"), f"{FZ}: ZNAXIS = 1,200 must be between 1 and 999"),
]


@pytest.mark.parametrize(("name", "make", "reason"), REFUSED, ids=[name for name, *_ in REFUSED])
async def test_a_hostile_header_is_refused_naming_the_card(client, archive, alice_token, name, make, reason):
    message = await error_of(await put(client, f"{name}.fits", make(), alice_token), 422)
    assert message == f"{name}.fits: {reason}. Nothing was kept."
    assert spooled(archive) == [] and uploaded(archive) == []


REPAIRED: list[tuple[str, Any, str, dict[str, Any]]] = [
    ("non-ascii", lambda: edited(
        plain(), "OBJECT", "OBJECT  = 'caf\xe9 \xff\xfe'".ljust(CARD).encode("latin-1")),
     "header repaired: OBJECT: characters outside printable ASCII shown as '?'", {"OBJECT": "caf? ??"}),
    ("nul-bytes", lambda: edited(plain(), "OBJECT", b"OBJ\0\0\0\0\0= 'x'".ljust(CARD)),
     "header repaired: OBJ?????: characters outside printable ASCII shown as '?'; card 'OBJ?????' left out "
     "(a keyword FITS does not allow)", {}),
    ("unquoted", lambda: edited(plain(), "OBJECT", b"OBJECT  = M31 galaxy".ljust(CARD)),
     "header repaired: OBJECT: not a valid FITS value, read as 'M31 galaxy'", {"OBJECT": "M31 galaxy"}),
    ("bad-number", lambda: edited(plain(), "EXPTIME", b"EXPTIME = 1.2.3 / seconds".ljust(CARD)),
     "header repaired: EXPTIME: not a valid FITS value, read as '1.2.3'", {"EXPTIME": "1.2.3"}),
]


@pytest.mark.parametrize(("name", "make", "note", "cards"), REPAIRED, ids=[name for name, *_ in REPAIRED])
async def test_a_repairable_header_is_read_and_the_repair_noted(client, archive, alice_token, name, make,
                                                                note, cards):
    response = await put(client, f"{name}.fits", make(), alice_token)
    assert response.status_code == 201, await response.get_data(as_text=True)
    answer = await response.get_json()
    await run_jobs(archive)
    job = await (await client.get(answer["status_url"], headers=alice_token)).get_json()
    assert job["state"] == "done", job["error"]
    assert job["note"] == f"HDU 0: {note}"
    [image_id] = job["image_ids"]
    image = await archive.store.get_image(image_id)
    assert image is not None
    assert image.note == note
    assert {key: image.header.get(key) for key in cards} == cards
    assert all(key.isprintable() for key in image.header)


def zeros_gzipped(side: int) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.zeros((side, side), dtype=np.float64)).writeto(buffer)
    return gzip.compress(buffer.getvalue())


def zeros_compressed(side: int) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((side, side), dtype=np.int32),
                                                       compression_type="RICE_1")]).writeto(buffer)
    return buffer.getvalue()


async def test_a_compressed_file_is_judged_by_what_it_unfolds_into(client, archive, alice_token):
    body = zeros_gzipped(1000)  # a few kB that decompress into 8,000,000 bytes of pixels
    assert len(body) < 20_000
    await archive.store.save_site_settings({"max_file_size": 1_000_000})
    message = await error_of(await put(client, "bomb.fits.gz", body, alice_token), 413)
    assert message == (f"bomb.fits.gz ({len(body):,} bytes; 8,000,000 bytes once decompressed) is larger "
                       "than this site's maximum file size of 1,000,000 bytes")
    assert spooled(archive) == [] and uploaded(archive) == []
    await archive.store.save_site_settings({"max_file_size": 8_000_000})
    assert (await put(client, "bomb.fits.gz", body, alice_token)).status_code == 201


async def test_a_tile_compressed_file_must_fit_the_quota_once_decompressed(client, archive, make_user):
    alice = await make_user("carol")
    token = await token_for(archive, alice)
    body = zeros_compressed(1000)  # int32: 4,000,000 bytes of pixels
    await archive.store.update_user(alice.id, quota=1_000_000)
    message = await error_of(await put(client, "bomb.fits.fz", body, token), 413)
    assert message.startswith(f"bomb.fits.fz ({len(body):,} bytes; 4,000,000 bytes once decompressed) does "
                              "not fit in your quota of 1,000,000 bytes")
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_an_upload_that_fails_ingest_is_not_kept(client, archive, alice_token):
    body = bytearray(compressed())
    heap = len(body) - 2880  # the compressed tiles: the upload check reads headers, not these
    body[heap:heap + 200] = bytes(range(200))
    response = await put(client, "broken.fits.fz", bytes(body), alice_token)
    assert response.status_code == 201, await response.get_data(as_text=True)
    answer = await response.get_json()
    assert len(uploaded(archive)) == 1
    await run_jobs(archive)
    job = await (await client.get(answer["status_url"], headers=alice_token)).get_json()
    assert job["state"] == "failed"
    assert job["error"].startswith("broken.fits.fz: HDU 1: the compressed pixel data cannot be read (")
    assert job["error"].endswith("; the upload was not kept")
    assert uploaded(archive) == [] and await archive.store.usage() == {}


def zeros_gzipped_with(side: int, value: float) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((side, side), value, dtype=np.float64)).writeto(buffer)
    return gzip.compress(buffer.getvalue())


async def test_a_compressed_upload_is_charged_what_it_unfolds_into(client, archive, make_user):
    carol = await make_user("carol")
    token = await token_for(archive, carol)
    await archive.store.update_user(carol.id, quota=20_000_000)
    first, second, third = (zeros_gzipped_with(1000, value) for value in (0.0, 1.0, 2.0))
    assert (await put(client, "first.fits.gz", first, token)).status_code == 201
    # waiting to be ingested, it counts as its 8,000,000 bytes of pixels
    assert (await put(client, "second.fits.gz", second, token)).status_code == 201
    message = await error_of(await put(client, "third.fits.gz", third, token), 413)
    assert message.startswith(f"third.fits.gz ({len(third):,} bytes; 8,000,000 bytes once decompressed) does "
                              "not fit in your quota of 20,000,000 bytes: 0 bytes stored, 16,000,000 bytes "
                              "uploaded and waiting to be ingested")
    await run_jobs(archive)
    usage = (await archive.store.usage())["carol"]
    assert usage.images == 2 and usage.bytes == 16_000_000  # catalogued, still charged as unfolded
    message = await error_of(await put(client, "third.fits.gz", third, token), 413)
    assert "16,000,000 bytes stored" in message

    [image, _] = await archive.store.find_images()
    await archive.store.delete_images([image.id])  # the charge goes with the last image of its content
    assert (await archive.store.usage())["carol"].bytes == 8_000_000
    assert (await put(client, "third.fits.gz", third, token)).status_code == 201
