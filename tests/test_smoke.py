from pathlib import Path

from tests.helpers import ingest


async def test_one_fits_file_becomes_one_ready_image(archive, write_fits):
    path = write_fits("one.fits", size=300, EXPTIME=42.0)
    [job] = await ingest(archive, path)
    assert job.state == "done", job.error
    [image] = await archive.store.find_images()
    assert image.width == 300 and image.header["EXPTIME"] == 42.0
    folder = archive.tile_folder(image.id)
    assert (folder / "image.dzi").is_file() and (folder / "thumb.jpeg").is_file()
    assert Path(image.path) == path
