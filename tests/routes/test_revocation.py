"""Tile links die at once when an image's visibility changes, when it is deleted and when its owner is
disabled: the image's tile folder gets a new generation name, so a token for the old one finds nothing
(403, reload the page) without any catalog query; a page rendered afterwards gets working links.
Images published in the old layout (files directly in `<id>/`) are moved into a generation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from app.archive import Archive
from app.store.records import ImageRecord
from app.tiles import pyramid, render, science
from app.tokens import GEN
from tests.helpers import QUICK_PASSWORDS
from tests.routes.pages import Ingested, text_of

SPEC = "zscale~sqrt~viridis"


async def links_of(client: Any, image_id: str) -> list[str]:
    """The tile URLs a page rendered now gives for an image: the thumbnail, the descriptor, a static
    tile, a display tile and a pixel value."""
    detail = await (await client.get(f"/api/images/{image_id}")).get_json()
    assert detail["dzi_url"], detail
    base = detail["dzi_url"].removesuffix("/image.dzi")
    return [detail["thumbnail_url"], detail["dzi_url"], f"{base}/image_files/0/0_0.jpeg",
            f"{detail['display_url']}{SPEC}/image_files/0/0_0.jpeg", f"{base}/pixel/3_4"]


async def statuses(client: Any, urls: list[str]) -> list[int]:
    return [(await client.get(url)).status_code for url in urls]


async def assert_revoked(client: Any, urls: list[str]) -> None:
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 403, url
        assert "revoked; reload the page" in await text_of(response)


async def test_changing_visibility_revokes_the_old_links_at_once(archive, actors, mine):
    olive = await actors("olive")
    old = await links_of(olive.client, mine.id)
    assert await statuses(olive.client, old) == [200] * 5  # the display tile is rendered and cached
    old_folder = archive.tile_folder(mine.id)

    response = await olive.set_visibility_json(mine.id, {"visibility": "public"})
    assert response.status_code == 200
    await assert_revoked(olive.client, old)
    assert not old_folder.exists()

    new = await links_of(olive.client, mine.id)
    assert set(new).isdisjoint(old)
    assert await statuses(olive.client, new) == [200] * 5
    # the display cache moved with the folder: nothing had to be rendered again
    assert render.tile_path(archive.tile_folder(mine.id), SPEC, 0, 0, 0).is_file()

    # back to private: the public links die too, whoever holds them
    guest = olive.client.app.test_client()
    public_links = await links_of(guest, mine.id)
    assert await statuses(guest, public_links) == [200] * 5
    assert (await olive.set_visibility_json(mine.id, {"visibility": "private"})).status_code == 200
    await assert_revoked(guest, public_links)


async def test_deleting_revokes_the_links_and_removes_the_files(archive, actors, mine):
    olive = await actors("olive")
    old = await links_of(olive.client, mine.id)
    assert await statuses(olive.client, old) == [200] * 5
    assert (await olive.delete_json(mine.id)).status_code == 200
    await assert_revoked(olive.client, old[:4])  # the pixel route asks the catalog: the image is gone
    assert (await olive.client.get(old[4])).status_code in (403, 404)
    assert not archive.tile_root(mine.id).exists()
    work = archive.settings.tiles_dir / ".work"
    assert not any(path.name.startswith("removed-") for path in work.iterdir())  # the files are gone too


async def test_disabling_the_owner_revokes_the_links_of_all_their_images(archive, actors, mine,
                                                                         add_image: Ingested):
    second = await add_image("second.fits", owner="olive", visibility="public", OBJECT="Second")
    others = await add_image("others.fits", owner="otto", visibility="public", OBJECT="Otto's")
    olive, ada = await actors("olive"), await actors("ada")
    olives = await links_of(olive.client, mine.id) + await links_of(olive.client, second.id)
    ottos = await links_of(olive.client, others.id)
    assert await statuses(olive.client, olives + ottos) == [200] * 15

    user = await archive.store.get_user_by_name("olive")
    assert user is not None
    response = await ada.client.post(f"/admin/users/{user.id}/disable", form={"csrf_token": ada.token})
    assert response.status_code == 200, await text_of(response)
    await assert_revoked(ada.client, olives)
    assert await statuses(ada.client, ottos) == [200] * 5  # another owner's images are untouched
    # an administrator's page rendered now gets working links to the disabled owner's images
    assert await statuses(ada.client, await links_of(ada.client, mine.id)) == [200] * 5


async def test_a_render_finishing_after_a_revoke_does_not_bring_the_old_folder_back(archive, image):
    folder = archive.tile_folder(image.id)
    science_path = str(folder / science.NAME)
    moved = await archive.run_in_pool(render.render_tile, str(folder), science_path, SPEC, 9, 0, 0, 85)
    assert moved is not None
    await archive.revoke_tiles([image.id])
    new_folder = archive.tile_folder(image.id)
    # a render that started before the revoke writes into the old path: it must not make it again
    data = render.render_tile(str(folder), str(new_folder / science.NAME), SPEC, 9, 1, 1, 85)
    assert data is not None and data[:2] == b"\xff\xd8"
    assert not folder.exists()
    assert os.listdir(archive.tile_root(image.id)) == [new_folder.name]


def old_layout(archive: Archive, image: ImageRecord) -> Path:
    """Put an image's files back where versions without generations kept them: directly in `<id>/`."""
    root, folder = archive.tile_root(image.id), archive.tile_folder(image.id)
    for name in os.listdir(folder):
        os.rename(folder / name, root / name)
    folder.rmdir()
    assert (root / "image.dzi").is_file()
    return root


async def test_an_old_layout_folder_is_moved_into_a_generation_on_first_use(client, archive, image):
    root = old_layout(archive, image)
    detail = await (await client.get(f"/api/images/{image.id}")).get_json()
    [gen] = os.listdir(root)
    assert GEN.fullmatch(gen) and f".{gen}." in detail["dzi_url"]
    assert (root / gen / "image.dzi").is_file() and (root / gen / science.NAME).is_file()
    response = await client.get(detail["dzi_url"])
    assert response.status_code == 200
    assert await response.get_data() == (root / gen / "image.dzi").read_bytes()


async def test_an_interrupted_move_is_finished_by_the_next_look(archive, image):
    root = old_layout(archive, image)
    (root / "0123456789abcdef").mkdir()
    os.rename(root / "thumb.jpeg", root / "0123456789abcdef" / "thumb.jpeg")  # a move cut short
    folder = archive.tile_folder(image.id)
    assert folder == root / "0123456789abcdef"
    assert sorted(os.listdir(root)) == [folder.name]
    assert (folder / "thumb.jpeg").is_file() and (folder / "image.dzi").is_file()


async def test_startup_moves_every_old_layout_folder_once(settings, pool, archive, add_image: Ingested):
    images = [await add_image(f"f{n}.fits", OBJECT=f"F{n}") for n in range(2)]
    roots = [old_layout(archive, image) for image in images]
    mark = settings.tiles_dir / pyramid.LAYOUT_MARK
    assert mark.is_file()  # written by the first start
    mark.unlink()
    again = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await again.startup()
    try:
        for root in roots:
            [gen] = os.listdir(root)
            assert GEN.fullmatch(gen) and (root / gen / "image.dzi").is_file()
        assert mark.is_file()
        assert pyramid.migrate_layout(settings.tiles_dir) == 0  # done once: the mark says so
    finally:
        await again.close()


@pytest.mark.parametrize("name", ["thumb.jpeg", "image.dzi", "image_files/9/0_0.jpeg"])
async def test_a_token_for_the_current_generation_of_a_missing_file_is_a_404(client, archive, image, name):
    """Inside an existing generation folder a missing file is a 404, not a revocation."""
    (archive.tile_folder(image.id) / name).unlink()
    response = await client.get(f"/tiles/{image.id}/{archive.tile_token(image.id)}/{name}")
    assert response.status_code == 404
    assert "no such tile" in await text_of(response)
