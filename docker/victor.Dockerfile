# Victor's image for the GitHub webhook app, the sync worker and `victor mcp`
# (docker-compose.pipelines.yml), with the MCP SDK (the `mcp` extra):
# Python 3.11, git for the clones, Victor installed at build time (never at start).
# Build context: the project folder.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /tmp/victor
COPY pyproject.toml README.md ./
COPY indexer ./indexer
COPY victor ./victor
COPY webhook ./webhook
COPY db ./db
COPY functions ./functions
RUN pip install --no-cache-dir ".[mcp]" && rm -rf /tmp/victor

# Not root. /data holds the git clones (VICTOR_DATA_DIR/repos): a volume in the compose file.
RUN useradd --create-home --uid 10001 victor && mkdir /data && chown victor /data
USER victor
WORKDIR /home/victor
ENV VICTOR_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME /data

# The compose file gives the command: gunicorn for the webhook, `victor worker` for the worker,
# `victor mcp` for the MCP server.
CMD ["victor", "--help"]
