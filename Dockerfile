# showme: one replica. `docker compose up` (compose.yaml) runs two behind a load balancer with PostgreSQL,
# Redis and MinIO; alone, this image runs the single-machine default (SQLite and media under /app/data).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md config.yaml ./
COPY core ./core
COPY storage ./storage
COPY tools ./tools
COPY bot ./bot
RUN pip install . \
    && useradd --create-home --uid 10001 showme \
    && mkdir -p /app/data \
    && chown showme /app/data

USER showme
# Listen on every interface of the container; the public URL is what people and platforms reach.
ENV SHOWME_SERVER__HOST=0.0.0.0 \
    SHOWME_SERVER__PORT=8080
EXPOSE 8080
VOLUME ["/app/data"]

# Liveness only: /readyz (database, Redis, the bucket) is for the load balancer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"

CMD ["showme", "serve"]
