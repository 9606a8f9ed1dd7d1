# The run image for container executors. mm4watch builds it on the engine that
# runs it (the Mini), so it is native there (arm64 on an M4), and tags it by a
# hash of the build context: an unchanged project reuses its image.
#
# Layers from slowest-changing to fastest: the dependency layers stay cached on
# the engine; a code change rebuilds only the last COPY. Notebooks are not part
# of the context: each run sends the one notebook it executes.
FROM python:3.11-slim

# what every run needs: papermill runs the notebook, ipykernel is its kernel
RUN pip install --no-cache-dir "papermill>=2.6" "ipykernel>=6.29"

# what the notebooks import
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# the project's code; notebooks run with their own folder as working directory
WORKDIR /project
COPY . /project
# mm4watch runs containers as uid 1000 with no new privileges; nothing here needs root
