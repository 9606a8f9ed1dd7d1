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
# notebooks import. Two cache mounts stay on the Mini between builds: uv's downloads (one
# for every project there), and this project's environment (its id), which uv brings
# exactly to the new requirements (adding a package installs and compiles that package
# only) before it is copied into the image, compiled,
# so no run compiles what it imports (checking what is compiled already takes one
# process: -j1; a new environment is compiled by all cores). For a private index add
#   ENV UV_INDEX_URL=https://pypi.example.com/simple
# above this line (or `--index-url ...` to `uv pip compile`); keep tokens out of the Dockerfile.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=cache,id=mm4-mm4watch-env,target=/root/env,sharing=locked \
    set -e; \
    j=1; test -x /root/env/bin/python || { uv venv -q --relocatable /root/env; j=0; }; \
    printf 'papermill>=2.6\nipykernel>=6.29\n' > /tmp/run.txt; \
    uv pip compile -q -o /tmp/lock.txt /tmp/run.txt /tmp/requirements.txt; \
    uv pip sync --python /root/env/bin/python /tmp/lock.txt; \
    python -m compileall -q -j$j /root/env/lib > /dev/null; \
    cp -a /root/env /opt/venv

# the project's code; notebooks run with their own folder as working directory
WORKDIR /project
COPY . /project
# mm4watch runs containers as uid 1000 with no new privileges; nothing here needs root
