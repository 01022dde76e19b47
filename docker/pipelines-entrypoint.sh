#!/usr/bin/env bash
# Start of the Pipelines container (docker/pipelines.Dockerfile): check the API key, put this
# image's "Lua Codebase" filter into the pipelines folder, then run the given command (the
# upstream image's `bash start.sh`, which runs `uvicorn main:app` on port 9099).
#   PIPELINES_DIR       the pipelines folder, a volume: valves saved there persist
#   VICTOR_FILTER_FILE  the filter file shipped in the image
#   PIPELINES_API_KEY   the key Open WebUI's Pipelines connection uses (from victor.env)
set -euo pipefail
: "${PIPELINES_DIR:?PIPELINES_DIR is not set}"
: "${VICTOR_FILTER_FILE:?VICTOR_FILTER_FILE is not set}"

# The server's built-in default key is public: refuse it, and refuse no key at all.
if [ -z "${PIPELINES_API_KEY:-}" ] || [ "$PIPELINES_API_KEY" = "0p3n-w3bu!" ]; then
    echo "victor: PIPELINES_API_KEY is not set: put a long random key in victor.env and the" \
        "same key in Open WebUI's Pipelines connection" >&2
    exit 64
fi

mkdir -p "$PIPELINES_DIR"
# A copy the server could not load once is moved to failed/; this start brings a fresh one.
rm -f "$PIPELINES_DIR/failed/lua_codebase.py"
cp "$VICTOR_FILTER_FILE" "$PIPELINES_DIR/lua_codebase.py.new"
mv "$PIPELINES_DIR/lua_codebase.py.new" "$PIPELINES_DIR/lua_codebase.py"
echo "victor: the Lua Codebase filter is in $PIPELINES_DIR"
exec "$@"
