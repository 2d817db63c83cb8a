"""Uploads: the upload page, `PUT /api/uploads/<name>` (the page's XMLHttpRequest and scripts alike), and
one job's state as JSON (`/api/jobs/<id>`) and as the fragment the page polls until the file is ready.

An upload body is never held in memory: the request of `PUT /api/uploads/...` gets a `StreamedBody`,
read chunk by chunk into the spool (`app.ingest.spool`), with no total size cap of Quart's (the spool
enforces the site's own limits) and with backpressure: at most HIGH_WATER bytes wait in memory, and the
connection is not read further until the spool has taken them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Generator
from typing import Any

from quart import Blueprint, Quart, jsonify, redirect, render_template, request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers import Request
from quart.wrappers.request import Body
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, RequestTimeout, Unauthorized
from werkzeug.routing import PathConverter

from app.archive import Archive, get_archive
from app.formats import KNOWN_FORMATS
from app.identity import current_site, current_user
from app.ingest import spool
from app.openapi import ERROR, STRING, Param, RequestBody, described, text
from app.permissions import may, may_see_job, upload_refusal
from app.routes import schemas
from app.routes.views import image_summary, job_fields, parse_visibility, storage
from app.site_policy import Site
from app.store.records import JobRecord, User

bp = Blueprint("upload", __name__)


UPLOAD_PREFIX = "/api/uploads/"
HIGH_WATER = 1 << 20  # body bytes buffered in memory at most, per upload
LINGER = 5.0  # seconds the rest of a refused upload's body is read and dropped before the connection closes


class StreamedBody(Body):
    """A request body read with `async for`, chunk by chunk as they arrived (no copies): no total size cap,
    and at most HIGH_WATER bytes buffered (the connection waits for `room()`). Awaiting it whole, which no
    upload route does, falls back to Quart's own body with its usual cap and no backpressure, so it can
    never wait forever."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, None)
        self._whole_cap = max_content_length
        self._streaming = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()

    def append(self, data: bytes) -> None:
        if not self._streaming:
            super().append(data)
            return
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            self._has_data.set()
            if self._buffered >= HIGH_WATER:
                self._room.clear()

    async def __anext__(self) -> bytes:
        if not self._streaming:
            return await super().__anext__()
        while not self._chunks:
            if self._complete.is_set():
                raise StopAsyncIteration()
            self._has_data.clear()
            await self._has_data.wait()
        # everything buffered at once: one join, fewer trips through the route for many small chunks
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._room.set()
        return data

    def __await__(self) -> Generator[Any, None, Any]:
        self._streaming = False
        self._max_content_length = self._whole_cap
        for chunk in self._chunks:
            super().append(chunk)
        self._chunks.clear()
        self._room.set()
        return super().__await__()

    async def room(self) -> None:
        """Wait until the route has taken what is buffered."""
        await self._room.wait()

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    async def discard(self, timeout: float) -> None:
        """Read and drop what is left of the body, for up to `timeout` seconds."""
        with contextlib.suppress(TimeoutError, HTTPException):
            async with asyncio.timeout(timeout):
                async for _ in self:
                    pass


class UploadRequest(Request):
    """Quart's request, except that `PUT /api/uploads/...` gets a StreamedBody and never parses a form:
    the CSRF check must not read an upload's body looking for a form field (a browser sends the token in
    the X-CSRF-Token header)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.method == "PUT" and self.path.startswith(UPLOAD_PREFIX):
            self.body = StreamedBody(self.content_length, kwargs.get("max_content_length"))
            self._form = MultiDict()
            self._files = MultiDict()


class UploadConnection(ASGIHTTPConnection):
    """Quart's ASGI connection, but it reads a streamed body's messages only when there is room for them,
    so a fast client waits for the disk instead of filling memory; and it lingers before ending the answer
    to an upload whose body has not all arrived (a refusal)."""

    async def handle_request(self, request: Request, send: Any) -> None:
        if isinstance(request.body, StreamedBody):
            send = functools.partial(_linger, send, request.body)
        await super().handle_request(request, send)

    async def handle_messages(self, request: Request, receive: Any) -> None:
        body = request.body
        if not isinstance(body, StreamedBody):
            await super().handle_messages(request, receive)
            return
        while True:
            await body.room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return


async def _linger(send: Any, body: StreamedBody, message: dict[str, Any]) -> None:
    """Send `message`; but before ending an answer while the body is still arriving, read and drop the
    rest of it for up to LINGER seconds. The server closes the connection when the answer ends, and closing
    with unread data resets it: a client still sending would never read the refusal."""
    if message["type"] == "http.response.body" and not message.get("more_body") and not body.complete:
        await send({**message, "more_body": True})
        await body.discard(LINGER)
        message = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(message)


class ClientNameConverter(PathConverter):
    """The client's file name in an upload URL: anything, slashes included (even a leading one: the name
    is cleaned, never used as a path)."""

    regex = ".+"
    part_isolating = False


class StreamingQuart(Quart):
    """The application class: Quart whose requests let `PUT /api/uploads/...` bodies stream (see the
    module's docstring). `create_app` makes it and adds the `client_name` converter before any route."""

    request_class = UploadRequest
    asgi_http_class = UploadConnection


# who may upload --------------------------------------------------------------------------------------
def uploader() -> User:
    """The user uploading, or the refusal: 401 for a guest, 403 for a user the site does not let upload."""
    user, site = current_user(), current_site()
    reason = upload_refusal(user, site)
    if reason:
        raise Unauthorized(reason) if user is None else Forbidden(reason)
    assert user is not None
    return user


def upload_visibility(value: str | None, user: User, site: Site) -> str:
    """Who will see the uploaded images: private unless the uploader may choose and asks for more."""
    if not value:
        return "private"
    visibility = parse_visibility(value)
    if visibility != "private" and not user.is_admin and site.sharing != "choose":
        raise Forbidden(f"the site's sharing policy ({site.sharing}) does not let owners choose who sees "
                        "their images: upload without a visibility")
    return visibility


# one job's state -------------------------------------------------------------------------------------
async def job_view(archive: Archive, job: JobRecord) -> dict[str, Any]:
    """A job as its owner follows it: state, message, and the images it made that the asker may view."""
    user, site = current_user(), current_site()
    images = []
    for image_id in job.image_ids:
        image = await archive.store.get_image(image_id)
        if image is not None and may(user, "view", image, site):
            images.append(image_summary(archive, image))
    return {**job_fields(job, {image["id"] for image in images}), "images": images}


async def load_job(archive: Archive, job_id: str) -> JobRecord:
    """A job its owner (or an admin) asks about; anyone else gets the same 404 as for a missing job."""
    user = current_user()
    if user is None:
        raise Unauthorized("log in or send an API token to see ingest jobs")
    jobs = await archive.store.get_jobs([job_id])
    if not jobs or not may_see_job(user, jobs[0]):
        raise NotFound(f"there is no job {job_id!r}")
    return jobs[0]


@bp.get("/api/jobs/<job_id>")
@described("One ingest job, with the images it made", access="user", tag="jobs",
           params=(Param("job_id", STRING, where="path"),),
           answers={200: ("the job", schemas.JOB_VIEW)})
async def api_job(job_id: str) -> Any:
    archive = get_archive()
    return jsonify(await job_view(archive, await load_job(archive, job_id)))


@bp.get("/upload/jobs/<job_id>")
async def job_fragment(job_id: str) -> Any:
    """The ingest state of one upload, polled by the upload page until the job is done or failed."""
    archive = get_archive()
    job = await load_job(archive, job_id)
    fragment = await render_template("_upload_job.html", job=await job_view(archive, job))
    # a finished job changed what the user stores: the page's storage line asks for itself again
    return fragment, 200, ({"HX-Trigger": STORED_EVENT} if job.state == "done" else {})


@bp.get("/upload/storage")
async def storage_fragment() -> Any:
    """The upload page's line of storage used, after an upload was catalogued."""
    archive, user, site = get_archive(), uploader(), current_site()
    return await render_template("_upload_storage.html", limits=spool.Limits.of(user, site),
                                 storage=await storage(archive, user, site))


STORED_EVENT = "imagex-stored"


# the page and the upload ----------------------------------------------------------------------------
@bp.get("/upload")
async def page() -> Any:
    archive, user, site = get_archive(), current_user(), current_site()
    if user is None:
        return redirect("/login?next=/upload")
    reason = upload_refusal(user, site)
    values: dict[str, Any] = {"refusal": reason, "limits": spool.Limits.of(user, site),
                              "storage": await storage(archive, user, site),
                              "may_choose": user.is_admin or site.sharing == "choose",
                              "known_formats": KNOWN_FORMATS}
    return await render_template("upload.html", **values), 403 if reason else 200


@bp.put(UPLOAD_PREFIX + "<client_name:name>", merge_slashes=False)
@described("Upload one file: the body is the file", access="user", tag="uploads", params=(
    Param("name", text(minLength=1), "the file's name on the client (kept as metadata only)", where="path"),
    Param("visibility", schemas.VISIBILITY, "who will see the images (default: private)")),
    body=RequestBody({"type": "string", "format": "binary"}, "the file", binary=True),
    answers={201: ("the job that ingests it (follow `status_url`)", schemas.JOB_VIEW),
             403: ("this account may not upload, or may not choose the visibility", ERROR),
             408: ("the client sent nothing for too long", ERROR),
             413: ("past the maximum file size, the quota or the declared length", ERROR),
             422: ("content that is not an image ImageX reads", ERROR),
             507: ("the server cannot store the upload", ERROR)})
async def api_upload(name: str) -> Any:
    """The body is the file; `name` its name on the client (kept, cleaned, as metadata only);
    `?visibility=` who will see it. 201 with the job, which `status_url` follows to the images."""
    archive, site = get_archive(), current_site()
    user = uploader()
    visibility = upload_visibility(request.args.get("visibility"), user, site)
    client_name = spool.clean_client_name(name)
    upload = spool.Upload(archive, user, spool.Limits.of(user, site), client_name, request.content_length)
    async with upload:
        await _stream(upload, archive.settings.upload_timeout)
        job = await upload.finish(visibility)
    view = await job_view(archive, job)
    return jsonify(view), 201, {"Location": view["status_url"]}


async def _stream(upload: spool.Upload, idle: float) -> None:
    """Feed the request body to `upload`; a client silent for `idle` seconds is cut off with 408."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(idle) as deadline:
            async for chunk in request.body:
                deadline.reschedule(loop.time() + idle)
                await upload.receive(chunk)
    except TimeoutError:
        raise RequestTimeout(f"{upload.client_name}: nothing arrived for {idle:g} s after "
                             f"{upload.received:,} bytes; the upload was abandoned and nothing was kept") \
            from None
