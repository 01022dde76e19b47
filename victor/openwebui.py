"""Installing the "Lua Codebase" toggle Function (and a model preset) in Open WebUI.

Through Open WebUI's own HTTP API, as in 0.12.4 (open_webui/routers/functions.py and
models.py): a Function is created at POST /api/v1/functions/create or replaced at
/api/v1/functions/id/{id}/update, and switched on with /toggle (active) and /toggle/global
(offered in every model's chats). A model preset is a workspace model on top of a real one
(`base_model_id`); `meta.filterIds` attaches the Function to it and `meta.defaultFilterIds`
switches the toggle on in each new chat with it. Every call needs an admin's token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from indexer.errors import VictorError

FUNCTION_ID = "lua_codebase"
FUNCTION_NAME = "Lua Codebase"
FUNCTION_DESCRIPTION = "Put the relevant code of your Lua codebase in front of the model"
PRESET_NAME = "Claude · Lua"
PRESET_DESCRIPTION = "Answers about your Lua codebase, with the Lua Codebase toggle on"
PRESET_SYSTEM_PROMPT = """\
You are a senior Lua developer answering questions about the user's own Lua codebase.
Messages may come with code retrieved from that codebase, in a lua_codebase_context block.
Ground your answer in it: name the functions involved and cite them as `path:start-end`,
exactly as in the snippet headers; quote only the lines that matter. If the retrieved code
does not answer the question, say what is missing rather than inventing functions or APIs.
Prefer short, concrete answers, with code when it helps."""
PUBLIC_READ = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]


class OpenWebUIError(VictorError):
    """Open WebUI cannot be reached, refused the token, or refused a request."""


def function_source() -> str:
    """functions/lua_codebase.py: packaged in the wheel, read from the source tree in a checkout."""
    packaged = resources.files("victor").joinpath("functions/lua_codebase.py")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "functions" / "lua_codebase.py").read_text(
        encoding="utf-8"
    )


def slug(name: str) -> str:
    """`Claude · Lua` -> `claude-lua`: a model id from a display name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "lua-codebase"


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.text[:200] or response.reason_phrase)


class OpenWebUI:
    """A thin client for the few admin routes the installer needs."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> OpenWebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        params: dict | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """JSON of a call, or None for a 404 when `missing_ok`; OpenWebUIError otherwise."""
        try:
            response = self.client.request(method, path, json=payload, params=params)
        except httpx.TimeoutException:
            raise OpenWebUIError(
                f"Open WebUI at {self.url} did not answer {method} {path} in time."
            ) from None
        except httpx.HTTPError as exc:
            raise OpenWebUIError(
                f"Cannot reach Open WebUI at {self.url} ({exc.__class__.__name__}: {exc}). "
                "Is the URL right? (in the usual Docker setup: http://localhost:3000)"
            ) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403):
            raise OpenWebUIError(
                f"Open WebUI at {self.url} refused the token ({response.status_code}: "
                f"{_detail(response)}). Use an admin's API key or JWT (Settings → Account)."
            )
        if response.status_code == 404:
            raise OpenWebUIError(
                f"{self.url} has no {path} (404): is this the URL of Open WebUI (0.12 or newer)?"
            )
        if response.status_code >= 400:
            raise OpenWebUIError(
                f"Open WebUI refused {method} {path} ({response.status_code}): {_detail(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise OpenWebUIError(
                f"{self.url}{path} did not answer with JSON: is this the URL of Open WebUI?"
            ) from None


@dataclass(frozen=True)
class FunctionInstalled:
    action: str  # "created" or "updated"
    active: bool
    is_global: bool


def install_function(
    api: OpenWebUI,
    source: str,
    *,
    make_global: bool = True,
    function_id: str = FUNCTION_ID,
    name: str = FUNCTION_NAME,
) -> FunctionInstalled:
    """Create or update the Function, then make sure it is active (and global)."""
    existing = {f["id"]: f for f in api.call("GET", "/api/v1/functions/list")}
    form = {
        "id": function_id,
        "name": name,
        "content": source,
        "meta": {"description": FUNCTION_DESCRIPTION},
    }
    if function_id in existing:
        function = api.call("POST", f"/api/v1/functions/id/{function_id}/update", form)
        action = "updated"
    else:
        function = api.call("POST", "/api/v1/functions/create", form)
        action = "created"
    if function.get("type") != "filter":
        raise OpenWebUIError(f"Open WebUI loaded {function_id} as a {function.get('type')!r}.")
    if not function.get("is_active"):
        function = api.call("POST", f"/api/v1/functions/id/{function_id}/toggle")
    if bool(function.get("is_global")) != make_global:
        function = api.call("POST", f"/api/v1/functions/id/{function_id}/toggle/global")
    return FunctionInstalled(action, bool(function["is_active"]), bool(function["is_global"]))


def model_ids(api: OpenWebUI) -> list[str]:
    return [m["id"] for m in api.call("GET", "/api/models")["data"]]


def install_preset(
    api: OpenWebUI,
    base_model: str,
    *,
    name: str = PRESET_NAME,
    preset_id: str | None = None,
    function_id: str = FUNCTION_ID,
    system_prompt: str = PRESET_SYSTEM_PROMPT,
) -> tuple[str, str]:
    """Create or update a model preset with the toggle on by default; (id, action)."""
    preset_id = preset_id or slug(name)
    available = model_ids(api)
    if base_model not in available:
        raise OpenWebUIError(
            f"Open WebUI has no model {base_model!r} to base the preset on. "
            f"Available model ids: {', '.join(available) or 'none'}."
        )
    form = {
        "id": preset_id,
        "base_model_id": base_model,
        "name": name,
        "meta": {
            "description": PRESET_DESCRIPTION,
            "filterIds": [function_id],
            "defaultFilterIds": [function_id],
        },
        "params": {"system": system_prompt},
        "is_active": True,
    }
    if api.call("GET", "/api/v1/models/model", params={"id": preset_id}, missing_ok=True) is None:
        api.call("POST", "/api/v1/models/create", {**form, "access_grants": PUBLIC_READ})
        return preset_id, "created"
    api.call("POST", "/api/v1/models/model/update", form)
    return preset_id, "updated"
