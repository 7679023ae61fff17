# One image for every part of dws-snapshots; the compose file picks the part to run.
FROM python:3.11-slim
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
