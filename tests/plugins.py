"""Loading the Open WebUI plugin files (pipeline, Function) the way their hosts do: by path."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
FILTER_FILE = ROOT / "pipelines" / "lua_codebase.py"
FUNCTION_FILE = ROOT / "functions" / "lua_codebase.py"
SAMPLE_BODY = ROOT / "tests" / "fixtures" / "openwebui" / "pipeline_inlet_request.json"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inlet_request(question: str | None = None, **metadata: object) -> dict:
    """A request Open WebUI sends to /{id}/filter/inlet (recorded from a real browser chat),
    with another question and metadata changes if asked."""
    request = copy.deepcopy(json.loads(SAMPLE_BODY.read_text()))
    body = request["body"]
    if question is not None:
        body["messages"][-1]["content"] = question
        body["metadata"]["user_message"]["content"] = question
    body["metadata"].update(metadata)
    return request
