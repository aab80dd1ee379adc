# One image runs everything: the operator (default command), the metadata service and the backends
# (the operator sets their commands). User images with model code build FROM this one and copy
# their modules to /opt/dataclay/models.
#   docker build -t dataclay-k8s:0.1.0 .
# BASE: any image with Python 3.11 (python3 and its venv module), e.g. one built from Debian
# packages where no registry is reachable (scripts/build-image.sh).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same unprivileged uid/gid the operator's pod security context uses (children.RUN_AS).
RUN groupadd --gid 10001 dataclay \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin dataclay \
 && mkdir -p /data /opt/dataclay/models \
 && chown 10001:10001 /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY client ./client
COPY backend ./backend
COPY operator ./operator
# A virtualenv: Debian's own python3 refuses system-wide pip installs (PEP 668); `python` is the
# venv's, whatever the base calls its interpreter.
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install ".[operator]" && cd / && rm -rf /src
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /data
ENV DC_DATA_DIR=/data \
    DC_MODEL_PATH=/opt/dataclay/models
USER 10001:10001
EXPOSE 16587 6867 8080
CMD ["python", "-m", "dataclay_operator"]
