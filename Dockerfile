# ImageX in one container: `imagex serve` with the embedded SQLite catalog in the /data volume.
#   docker build -t imagex .
#   docker run --init -p 8000:8000 -v imagex-data:/data imagex
# The same image runs `imagex worker` (see compose.yaml). Build with `--build-arg IMAGEX_EXTRAS=mongodb` for
# the MongoDB store. It builds with BuildKit or the classic builder (DOCKER_BUILDKIT=0), and pulls nothing but
# its two base images, which build arguments may replace with local ones (no `# syntax=` line, which would
# pull a frontend): `make test-docker` builds it from stand-ins made on the machine.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# 1. Front-end packages from npm (OpenSeadragon, htmx, Aladin Lite), copied as `make vendor` does.
FROM ${NODE_IMAGE} AS vendor
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund \
    && mkdir -p vendor/openseadragon \
    && cp node_modules/openseadragon/build/openseadragon/openseadragon.min.js vendor/openseadragon/ \
    && cp -r node_modules/openseadragon/build/openseadragon/images vendor/openseadragon/images \
    && cp node_modules/htmx.org/dist/htmx.min.js vendor/ \
    && mkdir -p vendor/aladin-lite \
    && cp node_modules/aladin-lite/dist/aladin.js vendor/aladin-lite/

# 2. The Python environment. Every dependency comes as a binary wheel (libvips itself, with its compiled
# binding, from pyvips-binary) except two pure-Python source packages, ImageX and pyvips: no compiler is
# needed. Versions are pinned by requirements/docker.txt (`make lock`), given to pip as constraints, which
# also reach the isolated environments pip builds those two in. The source tree is installed editable at
# /app, the path it keeps in the final image: the catalog finds its migrations next to the package
# (/app/migrations). pip and setuptools leave the venv afterwards: the image runs, it installs nothing.
# What the packages ship for their developers goes too: their test suites (numpy's, astropy's, dask's: about
# 80 MB with their bytecode; astropy/tests stays, astropy imports its test runner), C and Cython sources, and
# the symbol tables of the shared libraries (about 90 MB; `strip` from binutils, in this stage only). A
# library strip cannot rewrite cleanly, or that no longer loads after it (some that auditwheel's patchelf
# rearranged, such as numpy's OpenBLAS: "ELF load command address/offset not page-aligned"), is kept as it
# was; the packages are then imported and libvips and a codec run once, failing the build if one is broken.
# pip writes no bytecode (--no-compile): docker/bytecode.py writes it for the modules ImageX imports only
# (about 20 MB instead of 40), so the processes still start from bytecode on the read-only filesystem.
FROM ${PYTHON_IMAGE} AS build
ARG IMAGEX_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/app/requirements/docker.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/imagex
WORKDIR /app
COPY requirements/docker.txt ./requirements/
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
COPY docker/bytecode.py ./docker/
RUN /opt/imagex/bin/pip install --no-compile --only-binary=:all: --no-binary=imagex,pyvips \
        -e "/app${IMAGEX_EXTRAS:+[${IMAGEX_EXTRAS}]}" \
    && /opt/imagex/bin/python -m pip uninstall --yes pip setuptools \
    && site=$(/opt/imagex/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
    && find "$site" -mindepth 2 -type d \( -name tests -o -name testsuite \) ! -path "$site/astropy/tests" \
        -prune -exec rm -rf {} + \
    && find "$site" -type f \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' \) -delete \
    && find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) -exec sh -c 'for lib; do \
        cp -p "$lib" "$lib.orig"; \
        if strip --strip-unneeded "$lib" 2>"$lib.log" && [ ! -s "$lib.log" ] \
            && /opt/imagex/bin/python -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$lib" 2>/dev/null; \
        then rm "$lib.orig"; else mv "$lib.orig" "$lib"; fi; rm -f "$lib.log"; done' strip {} + \
    && /opt/imagex/bin/python -c 'import pyvips, imagecodecs, pylibjpeg, libjpeg, openjpeg, rle; \
pyvips.Image.black(64, 64).jpegsave_buffer(); imagecodecs.zlib_encode(b"x")' \
    && /opt/imagex/bin/python /app/docker/bytecode.py \
    && /opt/imagex/bin/python -m compileall -q /app/app
COPY --from=vendor /src/vendor ./app/static/vendor

# 3. The image that runs: the slim Python base, the environment and the source; no build tools, no npm.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ImageX" \
      org.opencontainers.image.description="A push-button archive for scientific images" \
      org.opencontainers.image.licenses="BSD-3-Clause"
RUN groupadd --system --gid 10001 imagex \
    && useradd --system --uid 10001 --gid imagex --home-dir /data --no-create-home --shell /usr/sbin/nologin imagex \
    && mkdir /data \
    && chown imagex:imagex /data
COPY --from=build /opt/imagex /opt/imagex
COPY --from=build /app /app
ENV PATH=/opt/imagex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMAGEX_DATA=/data \
    IMAGEX_HOST=0.0.0.0 \
    IMAGEX_PORT=8000
WORKDIR /data
USER imagex
VOLUME /data
EXPOSE 8000
# GET /healthz at the address IMAGEX_HOST and IMAGEX_PORT name (app/healthcheck.py); it answers 503 when the
# catalog does not, and the probe then exits 1
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]
CMD ["imagex", "serve"]
