"""Writes docs/configuration.md from Victor's settings and valve models themselves.

    python -m scripts.config_reference           # rewrite docs/configuration.md
    python -m scripts.config_reference --check   # exit 1 when the committed page is stale

The page lists every environment variable and valve with its type, its real default and the
description written in the code, so the reference cannot drift from what Victor reads.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import tempfile
import textwrap
import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from scripts import generated_page

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = "python -m scripts.config_reference"


@dataclass(frozen=True)
class Model:
    """One settings or valves model, and where to find it.

    `where` is "package.module:Class" (imported), or "path/to/file.py:Class.Inner" (loaded from
    that file: the Pipelines filter and the Function are files, not modules of a package).
    """

    title: str
    where: str
    kind: Literal["env", "valves"]
    intro: str
    optional: bool = False  # the class may be absent (a Function without valves)


# Where each model lives: change a path here when a model moves.
MODELS: tuple[Model, ...] = (
    Model(
        title="Victor's settings",
        where="indexer.config:Settings",
        kind="env",
        intro="Read from the environment by every Victor process: the `victor` command, the "
        "worker, the webhook, the Pipelines filter and the LiteLLM hook. The defaults fit a Mac "
        "running Ollama on 11434; with `VICTOR_DATABASE_URL` unset, Victor starts an embedded "
        "PostgreSQL of its own. When it creates that server it gives it a buffer cache "
        "(`shared_buffers`) of a quarter of the machine's memory (or of the container's limit), "
        "at most 8 GB, instead of PostgreSQL's 128 MB: searches read their pages from it rather "
        "than from the OS cache. Your own server is yours to size: `victor doctor` says when "
        "its `shared_buffers` is smaller than what searches read.",
    ),
    Model(
        title="The LiteLLM hook",
        where="victor.litellm_config:HookSettings",
        kind="env",
        intro="Read from the LiteLLM proxy's environment, next to Victor's settings above "
        "(see [litellm.md](litellm.md)).",
    ),
    Model(
        title="The Pipelines filter's valves",
        where="pipelines/lua_codebase.py:Pipeline.Valves",
        kind="valves",
        intro="Set in Open WebUI under Admin Settings → Pipelines → `lua_codebase (filter)`, "
        "and saved by the Pipelines server in `lua_codebase/valves.json` (see "
        "[openwebui.md](openwebui.md)). The database password is not a valve: the filter "
        "reads `PGPASSWORD` from the Pipelines server's environment.",
    ),
    Model(
        title="The toggle Function's valves",
        where="functions/lua_codebase.py:Filter.Valves",
        kind="valves",
        optional=True,
        intro="The Function `lua_codebase` in Open WebUI (the per-chat toggle, the sources and "
        "the status line).",
    ),
    Model(
        title="The toggle Function's user valves",
        where="functions/lua_codebase.py:Filter.UserValves",
        kind="valves",
        intro="What each user sets for themselves in Open WebUI (the Lua Codebase toggle's "
        "Valves): what the Function shows. What the model reads is the filter's business.",
    ),
)

# Variables read by something other than the models above: these rows are written here.
OTHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    (
        "PGPASSWORD",
        "every process that connects to PostgreSQL (the PostgreSQL client's own variable)",
        "The database password, kept out of `VICTOR_DATABASE_URL` and the valves.",
    ),
    (
        "PIPELINES_API_KEY",
        "the Pipelines server",
        "The key of Open WebUI's Pipelines connection; the container refuses to start without it.",
    ),
    (
        "OPEN_WEBUI_URL, OPEN_WEBUI_TOKEN",
        "`victor openwebui install-function`",
        "Open WebUI's address (default `http://localhost:3000`) and an admin's API key or JWT.",
    ),
    (
        "VICTOR_PIPELINES_PORT",
        "Docker Compose (`docker-compose.pipelines.yml`)",
        "The port "
        "published on the Mac's 127.0.0.1 for the Pipelines server (default `9099`). From the "
        "shell or a `.env` next to the compose file, not from `victor.env`.",
    ),
    (
        "VICTOR_WEBHOOK_BIND",
        "Docker Compose (`docker-compose.pipelines.yml`)",
        "The address "
        "the webhook's port 8088 is published on (default `0.0.0.0`). As above: not "
        "`victor.env`.",
    ),
    (
        "VICTOR_MCP_PORT",
        "Docker Compose (`docker-compose.pipelines.yml`)",
        "The port published on the Mac's 127.0.0.1 for `victor mcp` (default `8765`). As "
        "above: not `victor.env`.",
    ),
    (
        "OPENWEBUI_NETWORK",
        "Docker Compose (`deploy/compose/openwebui-network.yml`)",
        "Open WebUI's Docker network (`docker network ls`), when the Pipelines server joins it "
        "instead of going through the host; no default, the override refuses to run without it.",
    ),
    ("VICTOR_DEBUG", "the `victor` command", "Set: print the traceback of an error."),
)

# Defaults that depend on the machine are described, never shown as this machine's value.
DEFAULT_NOTES: dict[str, str] = {
    "Settings.data_dir": "the user data folder: `~/.local/share/victor` (Linux), "
    "`~/Library/Application Support/victor` (macOS)",
}


# --- finding the models ---------------------------------------------------------------------


def locate(model: Model) -> type[BaseModel] | None:
    target, _, qualname = model.where.partition(":")
    if target.endswith(".py"):
        path = ROOT / target
        module = _load(path)
    else:
        module = importlib.import_module(target)
    obj: Any = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            if model.optional:
                return None
            raise LookupError(f"{model.where}: no {part!r} (change MODELS in {__name__})")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise TypeError(f"{model.where} is not a pydantic model")
    return obj


def _module_name(path: Path) -> str:
    return "_config_reference." + "_".join(path.relative_to(ROOT).with_suffix("").parts)


def _package(path: Path) -> str:
    """The package a file's relative imports resolve in (indexer/x.py -> indexer)."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def _load(path: Path) -> types.ModuleType:
    """Import a file by its path, under a name of its own (pipelines/ is not a package)."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves postponed annotations through it
    spec.loader.exec_module(module)
    return module


def env_names(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias or field.alias
    if alias is not None:
        choices = getattr(alias, "choices", [alias])
        return [str(c) for c in choices]
    prefix = str(model.model_config.get("env_prefix", ""))
    return [(prefix + name).upper()]


def type_text(field: FieldInfo, kind: str = "valves") -> str:
    text = _type_name(field.annotation)
    if kind == "env" and text.startswith("list"):
        text += " (comma-separated)"
    bounds = [_bound(meta) for meta in field.metadata]
    bounds = [b for b in bounds if b]
    return f"{text}, {', '.join(bounds)}" if bounds else text


def _bound(meta: object) -> str:
    match meta:
        case Ge(ge=v):
            return f"≥ {_number(v)}"
        case Gt(gt=v):
            return f"> {_number(v)}"
        case Le(le=v):
            return f"≤ {_number(v)}"
        case Lt(lt=v):
            return f"< {_number(v)}"
        case MinLen(min_length=v):
            return f"at least {v} long"
        case MaxLen(max_length=v):
            return f"at most {v} long"
    return ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (tuple, list, set, frozenset):
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is SecretStr:
        return "secret"
    if tp is Path:
        return "path"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " | ".join(f"`{m.value}`" for m in tp)
    return getattr(tp, "__name__", str(tp))


def default_text(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    note = DEFAULT_NOTES.get(f"{model.__name__}.{name}")
    if note is not None:
        return note
    if field.default_factory is not None:
        raise ValueError(
            f"{model.__name__}.{name} has a computed default: describe it in DEFAULT_NOTES"
        )
    value = field.default
    if value is PydanticUndefined:
        return "*(required)*"
    if value is None:
        return "*(unset)*"
    if isinstance(value, SecretStr):
        return "*(secret)*"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = _number(value)
    elif isinstance(value, tuple | list | set | frozenset):
        if not value:
            return "*(empty)*"
        text = ",".join(str(v) for v in value)
    elif isinstance(value, Enum):
        text = str(value.value)
    else:
        text = str(value)
    _refuse_machine_paths(f"{model.__name__}.{name}", text)
    return f"`{text}`" if text else "*(empty)*"


def _number(value: float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _refuse_machine_paths(where: str, text: str) -> None:
    """A default that names this machine's folders would make the page differ per machine."""
    for folder in {str(Path.home()), tempfile.gettempdir(), str(ROOT)}:
        if folder not in ("", "/") and folder in text:
            raise ValueError(
                f"{where}: its default {text!r} depends on this machine: "
                "describe it in DEFAULT_NOTES"
            )


def _wrap(text: str) -> str:
    """A paragraph at 96 columns, never breaking inside `code`."""
    glued = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    wrapped = textwrap.fill(glued, width=96, break_long_words=False, break_on_hyphens=False)
    return wrapped.replace("\0", " ")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# --- the page -------------------------------------------------------------------------------


HEADER = (
    "# Configuration reference\n\n"
    + _wrap(
        "Every environment variable and valve Victor reads, with its type, its default and what it "
        "does. This page is generated from the settings and valve models in the code by "
        f"`{COMMAND}`, "
        "and `tests/test_config_reference.py` fails when it is stale: to change a description or a "
        "default, change the code and run the command again."
    )
    + "\n"
)


def section(model: Model, cls: type[BaseModel] | None, missing: list[str]) -> str:
    lines = [f"## {model.title}", "", _wrap(model.intro), ""]
    if cls is None:
        lines += ["It has no valves.", ""]
        return "\n".join(lines)
    source = _source_path(model, cls)
    lines += [f"Defined by `{source}`: `{model.where.partition(':')[2]}`.", ""]
    head = "variable" if model.kind == "env" else "valve"
    lines += [f"| {head} | type | default | what |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        if model.kind == "env":
            key = " or ".join(f"`{n}`" for n in env_names(cls, name, field))
        else:
            key = f"`{name}`"
        if not field.description:
            missing.append(f"{model.where.partition(':')[2]}.{name} ({source})")
        kind, default = type_text(field, model.kind), default_text(cls, name, field)
        row = (key, kind, default, field.description or "")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines.append("")
    return "\n".join(lines)


def _source_path(model: Model, cls: type) -> str:
    target = model.where.partition(":")[0]
    if target.endswith(".py"):
        return target
    return Path(inspect.getfile(cls)).resolve().relative_to(ROOT).as_posix()


def other_variables() -> str:
    lines = [
        "## Read by other programs",
        "",
        "Variables that are not Victor's settings, but that a part of the setup reads.",
        "",
        "| variable | read by | what |",
        "|---|---|---|",
    ]
    for names, reader, what in OTHER_VARIABLES:
        key = ", ".join(f"`{n.strip()}`" for n in names.split(","))
        lines.append(f"| {key} | {_cell(reader)} | {_cell(what)} |")
    lines.append("")
    return "\n".join(lines)


def render() -> tuple[str, list[str]]:
    """The page, and the fields that have no description."""
    missing: list[str] = []
    parts = [HEADER]
    for model in MODELS:
        parts.append(section(model, locate(model), missing))
    parts.append(other_variables())
    return "\n".join(parts).rstrip("\n") + "\n", missing


def main(argv: list[str] | None = None) -> int:
    text, missing = render()
    status = generated_page.main(argv, command=COMMAND, doc=__doc__, output=OUTPUT, text=text)
    if status == 0:
        for field in missing:
            print(f"no description: {field}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
