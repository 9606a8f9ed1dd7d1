# The run image for container executors (written by `mm4watch init`). mm4watch builds it
# on the engine that runs it (the Mini), so it is native there (arm64 on an M4), with
# BuildKit where that machine's docker CLI has it, and tags it by a hash of the build
# context: an unchanged project reuses its image.
#
# Layers from slowest-changing to fastest: the dependency layer stays cached on the
# engine; a code change rebuilds only the last COPY. Notebooks are not part of the
# context: each run sends the one notebook it executes.
FROM python:3.11-slim

# uv installs packages in seconds; this layer is built once and stays cached
RUN pip install --no-cache-dir "uv>=0.5"
# copy out of uv's cache (a cache mount is another file system); the system's certificates
# (a company proxy's too); the environment the notebooks run in comes first on PATH
ENV UV_LINK_MODE=copy UV_SYSTEM_CERTS=1 UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# What every run needs (papermill runs the notebook, ipykernel is its kernel) and what the
# notebooks import, in two layers. The first holds a base that mm4watch passes and changes
# rarely (the requirements of the project's earlier images on this Mini); the second brings
# that environment exactly to requirements.txt, in place, preferring the versions the base
# has: adding a package writes and compiles that package only, a layer of its size. uv's
# downloads stay in a cache mount on the Mini, shared by every project there. Everything is
# compiled here, so no run compiles what it imports (checking what is compiled already takes
# one process: -j1). `docker build` by hand (no base) works too: the second layer then
# installs it all. For a private index add
#   ENV UV_INDEX_URL=https://pypi.example.com/simple
# above this line (or `--index-url ...` to `uv pip compile`); keep tokens out of the Dockerfile.
ARG MM4_BASE_REQUIREMENTS=""
RUN --mount=type=cache,target=/root/.cache/uv \
    set -e; \
    printf 'papermill>=2.6\nipykernel>=6.29\n%s\n' "$MM4_BASE_REQUIREMENTS" > /tmp/base.txt; \
    uv venv -q --relocatable /opt/venv; \
    uv pip compile -q -o /opt/venv/mm4-base.lock /tmp/base.txt; \
    uv pip sync /opt/venv/mm4-base.lock; \
    python -m compileall -q -j0 /opt/venv/lib > /dev/null
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    set -e; \
    printf 'papermill>=2.6\nipykernel>=6.29\n' > /tmp/run.txt; \
    cp /opt/venv/mm4-base.lock /tmp/lock.txt; \
    uv pip compile -q -o /tmp/lock.txt /tmp/run.txt /tmp/requirements.txt; \
    uv pip sync /tmp/lock.txt; \
    python -m compileall -q -j1 /opt/venv/lib > /dev/null

# the project's code; notebooks run with their own folder as working directory
WORKDIR /project
COPY . /project
# mm4watch runs containers as uid 1000 with no new privileges; nothing here needs root
