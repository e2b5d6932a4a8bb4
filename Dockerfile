# msgkpi: one image for every subcommand.
#   docker build -t msgkpi:0.1.0 .
#   docker run --rm msgkpi:0.1.0 gateway | worker | simulate ... | replay FILE.jsonl
# Configuration is the MSGKPI_* environment (README, docs/deploy.md). In the image the gateway
# and the worker bind 0.0.0.0 (outside a container the default stays 127.0.0.1).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with msgkpi and its dependencies (wheels from the index)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY processor/ processor/
RUN python -m venv /opt/msgkpi \
    && /opt/msgkpi/bin/pip install --no-cache-dir /src \
    && /opt/msgkpi/bin/msgkpi --help >/dev/null

# ---- runtime: the same slim base, the venv copied over; no compilers, no build files
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="msgkpi" \
      org.opencontainers.image.description="Real-time customer-care KPI engine for messaging channels" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 msgkpi \
    && useradd --system --uid 10001 --gid msgkpi --home-dir /var/lib/msgkpi --create-home \
       --shell /usr/sbin/nologin msgkpi
COPY --from=build /opt/msgkpi /opt/msgkpi
ENV PATH=/opt/msgkpi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MSGKPI_GATEWAY_HOST=0.0.0.0 \
    MSGKPI_WORKER_HOST=0.0.0.0 \
    MSGKPI_UI_HOST=0.0.0.0 \
    MSGKPI_WORKER_DATA_DIR=/var/lib/msgkpi/worker
WORKDIR /var/lib/msgkpi
USER 10001:10001
# gateway (MSGKPI_GATEWAY_PORT), worker (MSGKPI_WORKER_PORT), live page (MSGKPI_UI_PORT)
EXPOSE 8080 6066 8070
# gateway, worker and ui: /healthz on their port; simulate and replay: healthy while running
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "processor.healthcheck"]
ENTRYPOINT ["msgkpi"]
CMD ["--help"]
