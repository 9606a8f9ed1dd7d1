# The run image for container executors (written by `mm4watch init`). mm4watch builds it
# on the engine that runs it (the Mini), so it is native there (arm64 on an M4), with
# BuildKit where that machine's docker CLI has it, and tags it by a hash of the build
# context: an unchanged project reuses its image.
#
# Layers from slowest-changing to fastest: the dependency layers stay cached on the
# engine; a code change rebuilds only the last COPY. Notebooks are not part of the
# context: each run sends the one notebook it executes.
FROM python:3.11-slim

# uv installs packages in seconds; this layer is built once and stays cached
RUN pip install --no-cache-dir "uv>=0.5"
# install into the image's Python; copy from the cache (a cache mount is another file
# system); use the system's certificates (a company proxy's too)
ENV UV_SYSTEM_PYTHON=1 UV_LINK_MODE=copy UV_SYSTEM_CERTS=1

# what every run needs (papermill runs the notebook, ipykernel is its kernel) and what the
# notebooks import. The cache mount keeps uv's downloads on the Mini between builds: adding
# a package to requirements.txt downloads that package only. For a private index add
#   ENV UV_INDEX_URL=https://pypi.example.com/simple
# above this line (or `--index-url ...` to the command); keep tokens out of the Dockerfile.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install "papermill>=2.6" "ipykernel>=6.29" -r /tmp/requirements.txt

# the project's code; notebooks run with their own folder as working directory
WORKDIR /project
COPY . /project
# mm4watch runs containers as uid 1000 with no new privileges; nothing here needs root
