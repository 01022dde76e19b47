# The Open WebUI Pipelines server with Victor installed at build time and the "Lua Codebase"
# filter (docker-compose.pipelines.yml). Build context: the project folder.
ARG PIPELINES_IMAGE=ghcr.io/open-webui/pipelines:main
FROM ${PIPELINES_IMAGE}

# Victor's core, which the filter imports.
WORKDIR /tmp/victor
COPY pyproject.toml README.md ./
COPY indexer ./indexer
COPY victor ./victor
COPY webhook ./webhook
COPY db ./db
COPY functions ./functions
RUN pip install --no-cache-dir . && rm -rf /tmp/victor

# The pipelines folder is a volume (the valves saved from Open WebUI live there), so the filter
# is not baked into it: the entrypoint copies this image's filter in at every start, then runs
# the upstream image's start script.
COPY pipelines/lua_codebase.py /opt/victor/lua_codebase.py
COPY docker/pipelines-entrypoint.sh /opt/victor/entrypoint.sh
WORKDIR /app
ENV PIPELINES_DIR=/app/pipelines \
    VICTOR_FILTER_FILE=/opt/victor/lua_codebase.py
ENTRYPOINT ["bash", "/opt/victor/entrypoint.sh"]
CMD ["bash", "start.sh"]
