"""Configuration and file sources: defaults, safety rules, git semantics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer.config import Settings, known_prompts
from indexer.errors import SourceError
from indexer.indexing.sources import FolderSource, GitSource, blob_id, decode_lua, open_source
from tests.conftest import git, make_git_repo


def test_defaults_match_the_users_stack(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("VICTOR_", "OLLAMA_")):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.ollama_host == "http://localhost:11434"
    assert s.embed_model == "nomic-embed-text"
    assert s.embed_backend == "ollama"
    assert s.database_url is None  # embedded PostgreSQL
    assert s.prefixes == ("search_document: ", "search_query: ")
    assert s.include == ("*.lua",)


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://host.docker.internal:11434")
    monkeypatch.setenv("VICTOR_EMBED_MODEL", "mxbai-embed-large:latest")
    monkeypatch.setenv("VICTOR_INCLUDE", "*.lua, *.luau")
    monkeypatch.setenv("VICTOR_DATABASE_URL", "postgresql://victor:s3cret@localhost:5433/victor")
    s = Settings()
    assert s.ollama_host == "http://host.docker.internal:11434"
    assert s.include == ("*.lua", "*.luau")
    assert s.prefixes[1].startswith("Represent this sentence")
    assert "s3cret" not in repr(s)  # secrets never print


def test_embedding_space_separates_models_and_prefixes():
    a = Settings(embed_model="nomic-embed-text")
    b = Settings(embed_model="nomic-embed-text:latest")
    c = Settings(embed_model="nomic-embed-text", query_prefix="")
    d = Settings(embed_backend="local")
    assert a.embedding_space == b.embedding_space
    assert len({a.embedding_space, c.embedding_space, d.embedding_space}) == 3


def test_bad_setting_is_rejected(monkeypatch):
    monkeypatch.setenv("VICTOR_EMBED_BACKEND", "openai")
    with pytest.raises(ValueError, match="embed_backend"):
        Settings()


def test_decode_handles_bom_crlf_and_latin1():
    assert decode_lua(b"\xef\xbb\xbflocal a = 1\r\nlocal b = 2\r\n") == "local a = 1\nlocal b = 2\n"
    assert decode_lua("-- caf\xe9\n".encode("latin-1")) == "-- caf\xe9\n"


def test_blob_id_matches_git(tmp_path):
    repo = make_git_repo(tmp_path / "r", {"a.lua": "return 1\n"})
    assert git(repo, "rev-parse", "HEAD:a.lua") == blob_id(b"return 1\n")


def _folder_with_traps(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "ok.lua").write_text("local function ok() end\n")
    (root / "src" / "name with spaces é.lua").write_text("return 1\n")
    (root / "notes.txt").write_text("not lua")
    (root / "src" / "blob.lua").write_bytes(b"\x00\x01binary")
    (root / "src" / "big.lua").write_text("-- x\n" * 5000)
    (root / "src" / "passwd.lua").symlink_to("/etc/passwd")
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.lua").write_text("return 'secret'\n")
    (root / "src" / "linked").symlink_to(outside, target_is_directory=True)
    (root / "src" / "loop").symlink_to(root, target_is_directory=True)
    return root


def test_folder_source_never_follows_symlinks(tmp_path):
    root = _folder_with_traps(tmp_path / "repo")
    source = FolderSource(root, ("*.lua",), max_bytes=10_000)
    files, skipped = source.scan()
    assert sorted(f.path for f in files) == ["src/name with spaces é.lua", "src/ok.lua"]
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["src/passwd.lua"].startswith("symlink")
    assert reasons["src/blob.lua"].startswith("binary")
    assert reasons["src/big.lua"].startswith("larger than")
    read = dict((f.path, data) for f, data in source.read(files))
    assert read["src/ok.lua"] == b"local function ok() end\n"
    assert all(b"secret" not in data and b"root:" not in data for data in read.values())


def test_git_source_indexes_what_git_tracks(tmp_path):
    repo = make_git_repo(
        tmp_path / "g",
        {
            "a.lua": "local a = 1\n",
            ".gitignore": "ignored.lua\n",
            "lib/b.lua": "local b = 2\n",
        },
    )
    (repo / "ignored.lua").write_text("local ignored = true\n")
    (repo / "untracked.lua").write_text("local u = true\n")
    (repo / "evil.lua").symlink_to("/etc/passwd")
    git(repo, "add", "evil.lua")
    git(repo, "commit", "-q", "-m", "symlink")
    source = GitSource(repo, None, ("*.lua",), max_bytes=10_000)
    files, skipped = source.scan()
    assert sorted(f.path for f in files) == ["a.lua", "lib/b.lua"]
    assert [s.path for s in skipped] == ["evil.lua"]
    contents = {f.path: data for f, data in source.read(files)}
    assert contents == {"a.lua": b"local a = 1\n", "lib/b.lua": b"local b = 2\n"}
    assert source.commit == git(repo, "rev-parse", "HEAD")


def test_git_source_at_an_older_ref(tmp_path):
    repo = make_git_repo(tmp_path / "g", {"a.lua": "local a = 1\n"})
    first = git(repo, "rev-parse", "HEAD")
    (repo / "b.lua").write_text("local b = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    source = GitSource(repo, first, ("*.lua",), max_bytes=10_000)
    assert [f.path for f in source.scan()[0]] == ["a.lua"]
    with pytest.raises(SourceError, match="not a commit"):
        GitSource(repo, "no-such-branch", ("*.lua",), max_bytes=10_000)


def test_open_source_errors_are_clear(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(
            str(tmp_path / "nope"),
            ref=None,
            include=("*.lua",),
            max_bytes=1,
            clones_dir=tmp_path,
            name="x",
        )
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="--ref needs a git repository"):
        open_source(
            str(tmp_path / "plain"),
            ref="main",
            include=("*.lua",),
            max_bytes=1,
            clones_dir=tmp_path,
            name="x",
        )


def test_git_url_is_cloned(tmp_path):
    upstream = make_git_repo(tmp_path / "up", {"m.lua": "return {}\n"})
    source = open_source(
        f"file://{upstream}",
        ref=None,
        include=("*.lua",),
        max_bytes=10_000,
        clones_dir=tmp_path / "clones",
        name="up",
    )
    assert [f.path for f in source.scan()[0]] == ["m.lua"]
    assert (tmp_path / "clones" / "up" / "HEAD").is_file()


QWEN3_QUERY = "Instruct: Given a code search query, retrieve relevant code\nQuery: "


@pytest.mark.parametrize(
    ("model", "document", "query"),
    [
        ("qwen3-embedding", "", QWEN3_QUERY),
        ("qwen3-embedding:0.6b", "", QWEN3_QUERY),
        ("library/qwen3-embedding:8b", "", QWEN3_QUERY),
        ("hf.co/Qwen/Qwen3-Embedding-0.6B-GGUF:Q8_0", "", QWEN3_QUERY),
        ("embeddinggemma:300m", "title: none | text: ", "task: code retrieval | query: "),
        ("nomic-embed-text:v1.5", "search_document: ", "search_query: "),
        ("mxbai-embed-large", "", "Represent this sentence for searching relevant passages: "),
        ("snowflake-arctic-embed2:568m", "", "query: "),
        (
            "snowflake-arctic-embed:335m",
            "",
            "Represent this sentence for searching relevant passages: ",
        ),
        ("bge-m3:latest", "", ""),
        ("all-minilm:l6-v2", "", ""),
    ],
)
def test_each_known_model_gets_its_own_prompts(model, document, query):
    settings = Settings(embed_model=model)
    assert settings.prefixes == (document, query)
    assert settings.prompt_notice == ""
    assert known_prompts(model) == (document, query)


def test_the_local_backend_needs_no_prompt():
    assert Settings(embed_backend="local", embed_model="qwen3-embedding").prefixes == ("", "")
    assert Settings(embed_backend="local").prompt_notice == ""


@pytest.mark.parametrize("model", ["acme-code-embed", "bge-m3x", "my/qwen3:4b", "embeddinggem"])
def test_an_unknown_model_gets_no_prompt_and_a_notice_saying_how_to_set_one(model):
    assert known_prompts(model) is None
    settings = Settings(embed_model=model)
    assert settings.prefixes == ("", "")
    notice = settings.prompt_notice
    assert f"No query/document prompt is known for the embedding model {model!r}" in notice
    assert "with no prompt" in notice
    assert "VICTOR_QUERY_PREFIX" in notice and "VICTOR_DOCUMENT_PREFIX" in notice
    assert "qwen3-embedding" in notice  # the models it does know


def test_prompts_set_by_hand_win_and_silence_the_notice():
    half = Settings(embed_model="acme-code-embed", query_prefix="find: ")
    assert half.prefixes == ("", "find: ")
    assert "queries with 'find: '" in half.prompt_notice
    both = Settings(embed_model="acme-code-embed", query_prefix="find: ", document_prefix="")
    assert both.prompt_notice == ""
    assert Settings(embed_model="qwen3-embedding", query_prefix="").prefixes == ("", "")
