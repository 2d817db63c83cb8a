"""Files streamed to the client as one zip while it is written: memory does not grow with the files."""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 1 << 20


class _Chunks:
    """A write-only file for zipfile that keeps what was written until it is taken (zipfile writes
    streaming-style, with data descriptors, when the file cannot tell its position)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


async def zip_stream(files: list[tuple[str, Path]]) -> AsyncIterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, path in files:
            try:
                handle = await asyncio.to_thread(path.open, "rb")
            except OSError:
                continue  # vanished since it was listed; the others still arrive
            try:
                with archive.open(name, "w", force_zip64=True) as entry:
                    while chunk := await asyncio.to_thread(handle.read, CHUNK):
                        entry.write(chunk)
                        yield sink.take()
            finally:
                handle.close()
            yield sink.take()
    yield sink.take()
