# One image for `event-bridge api`, `event-bridge worker` and every CLI command.
#   docker build -t event-bridge .                      (from PyPI)
#   docker build --build-arg BASE_IMAGE=... --build-arg PIP_NO_INDEX=1 .   (offline: wheels placed
#   in deploy/wheels/ beforehand, as `make test-deploy` does)
# The base is any Debian-like image with Python 3.11+ and `python3 -m venv`.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX=
ENV PIP_NO_INDEX=${PIP_NO_INDEX} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/event-bridge
WORKDIR /src
COPY deploy/wheels/ /wheels/
COPY constraints.txt pyproject.toml README.md ./
COPY bridge/ bridge/
# The Avro schemas ship inside the package (bridge.schemas reads them from there when installed).
COPY schemas/ bridge/resources/schemas/
# Exactly the pinned versions of constraints.txt; no editable install, no sources kept.
RUN /opt/event-bridge/bin/pip install --find-links /wheels -c constraints.txt . \
 && /opt/event-bridge/bin/pip uninstall -y pip \
 && find /opt/event-bridge -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="event-bridge" \
      org.opencontainers.image.description="Kafka-backed, Artemis-compatible event subscription service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/event-bridge/event-bridge"
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp bridge
COPY --from=build /opt/event-bridge /opt/event-bridge
COPY deploy/healthcheck.py /opt/event-bridge/healthcheck.py
# Nothing is written outside /tmp (a read-only root filesystem works with /tmp mounted writable).
ENV PATH=/opt/event-bridge/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_HTTP_HOST=0.0.0.0 \
    BRIDGE_CACHE_DIR=/tmp/event-bridge
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9108
# api: GET :8080/healthz; worker: GET :9108/metrics (set BRIDGE_HEALTH_URL).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/event-bridge/healthcheck.py"]
ENTRYPOINT ["event-bridge"]
CMD ["api"]
