# One image for every part of dws-snapshots; the compose file picks the part to run.
# Debian bookworm, pinned: the postgres driver runs pg_dump and pg_restore, which must be
# of the compose server's major version (postgres:15); bookworm ships postgresql-client-15.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events ./events
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV SNAPSHOT_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["snapshotctl"]
CMD ["service"]
