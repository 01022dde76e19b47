"""All SQL is parameterised: values travel as $1, $2... and never inside the statement text.

1. An audit of the source (`ast`): every call of a query method (execute, fetch, fetchrow,
   fetchval, executemany, copy_*, cursor, prepare) in indexer/, webhook/, pipelines/ and
   functions/ must pass statement text built only from literals and module constants. An
   f-string, `%`, `.format` or `+` with anything else fails the test, unless the call is in
   ALLOWED, with the reason it cannot carry text from outside.
2. Behaviour: a repository name, a folder, a file path and queries full of quotes and
   `'; DROP TABLE chunks; --` are stored and searched as the text they are.
"""

from __future__ import annotations

import ast

from indexer.service import open_victor
from tests.conftest import ROOT
from tests.support.search import results as search_one

SCANNED = ("indexer", "webhook", "pipelines", "functions")
QUERY_METHODS = {
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "cursor",
    "prepare",
    "copy_from_query",
    "copy_from_table",
    "copy_to_table",
    "copy_records_to_table",
}

# (file, function): why the statement text built there cannot carry outside text
ALLOWED = {
    ("indexer/store/space.py", "bind_space"): (
        "ALTER TABLE ... TYPE vector(N): a type modifier cannot be a parameter; N is passed "
        "through int(), so only digits reach the statement; SET LOCAL takes no parameter: "
        "maintenance_work_mem is the constant limits.BUILD_MEMORY"
    ),
    ("indexer/search/lexical.py", "lexical_ids"): (
        "store.named() turns the literal query's :name placeholders into $n: the values "
        "travel as parameters"
    ),
    ("indexer/search/lexical.py", "lexical_side"): (
        "the same as lexical_ids (store.named() on the module constant _CANDIDATES)"
    ),
    ("indexer/search/__init__.py", "fetch_results"): (
        "RESULT_SELECT, a module constant of indexer/search/results.py, and a literal WHERE "
        "clause; the ids are a $n parameter"
    ),
    ("indexer/search/calls.py", "callees"): (
        "RESULT_SELECT (indexer/search/results.py) and a literal WHERE clause; $n parameters"
    ),
    ("indexer/search/calls.py", "callers"): (
        "RESULT_SELECT (indexer/search/results.py) and a literal WHERE clause; $n parameters"
    ),
    ("indexer/store/postings.py", "add_files"): (
        "the lexical index's statements are module constants joined with a constant WHERE "
        "clause (_FILES); paths and ids travel as $n parameters"
    ),
    ("indexer/store/postings.py", "remove_files"): (
        "a module constant with the constant WHERE clause _FILES; values are $n parameters"
    ),
    ("indexer/store/postings.py", "add_chunks"): (
        "the same module constant as add_files, joined with the constant WHERE clause "
        "_CHUNKS; chunk ids travel as $n parameters"
    ),
    ("indexer/store/postings.py", "remove_chunks"): (
        "a module constant with the constant WHERE clause _CHUNKS; ids are $n parameters"
    ),
    ("indexer/search/dense.py", "_nearest"): (
        "runs the statement it is given: the module constant _HNSW (hnsw_ids) or "
        "scoped_statement(), the module constants _SCOPED and _OWN_GRAPH with repository ids "
        "passed through int(); the vector, depth and ids are $n parameters"
    ),
    ("indexer/store/repo_graphs.py", "_build"): (
        "CREATE INDEX ... WHERE repo_id = N: a partial index's predicate cannot be a "
        "parameter; the index name and N come from int() of a repository id; SET takes no "
        "parameter: maintenance_work_mem is the constant limits.BUILD_MEMORY"
    ),
    ("indexer/store/repo_graphs.py", "drop"): (
        "DROP INDEX takes no parameter; the name is index_name(), built from int(repo_id)"
    ),
    ("indexer/store/repo_graphs.py", "drop_all"): (
        "DROP INDEX takes no parameter; index_name() of ids parsed as digits from the catalog"
    ),
    ("indexer/store/postings.py", "remove_repo"): (
        "the table name comes from a constant tuple of the lexical index's own tables"
    ),
    ("indexer/store/postings.py", "rebuild"): (
        "module constants, and the definitions of the lexical index's own indexes read back "
        "from PostgreSQL's catalog (pg_indexes) to drop and recreate them around the bulk load"
    ),
    ("indexer/store/postings.py", "check"): (
        "module constants (the impact expression built from the reference tuning's numbers); "
        "the repository id is a $n parameter"
    ),
    ("indexer/store/migrations.py", "migrate"): (
        "db/migrations/*.sql, read from the package or the source tree: files of the program, "
        "not data"
    ),
}


def constant_names(tree: ast.Module) -> set[str]:
    """Module-level names assigned once, to statement text made of literals."""
    assigned: dict[str, list[ast.expr]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                assigned.setdefault(target.id, []).append(node.value)
    names: set[str] = set()
    for name, values in assigned.items():
        if len(values) == 1 and is_literal(values[0], names, {}):
            names.add(name)
    return names


def local_text(function: ast.AST | None) -> dict[str, list[ast.expr]]:
    """name -> every value assigned to it in the function (a name assigned twice is looked at
    in all its values)."""
    found: dict[str, list[ast.expr]] = {}
    if function is None:
        return found
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            found.setdefault(node.target.id, []).append(node.value or ast.Constant(None))
    return found


def is_literal(expr: ast.expr, constants: set[str], local: dict[str, list[ast.expr]]) -> bool:
    """True when the statement text can only be what the program itself spells out."""
    if isinstance(expr, ast.Constant):
        return isinstance(expr.value, str)
    if isinstance(expr, ast.JoinedStr):  # f"...{X}...": every X must be literal too
        return all(
            isinstance(part, ast.Constant)
            or (isinstance(part, ast.FormattedValue) and is_literal(part.value, constants, local))
            for part in expr.values
        )
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return is_literal(expr.left, constants, local) and is_literal(expr.right, constants, local)
    if isinstance(expr, ast.IfExp):  # a choice between two spelled-out texts
        return is_literal(expr.body, constants, local) and is_literal(expr.orelse, constants, local)
    if isinstance(expr, ast.Name):
        if expr.id in local:
            values = local[expr.id]
            rest = {k: v for k, v in local.items() if k != expr.id}  # no endless recursion
            return all(is_literal(v, constants, rest) for v in values)
        return expr.id in constants
    return False  # `%`, .format(), calls, attributes, subscripts: anything could be in them


def violations(source: str, filename: str) -> list[tuple[str, str, int, str]]:
    """(file, function, line, statement) of each query call whose text is not literal."""
    tree = ast.parse(source)
    constants = constant_names(tree)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_METHODS
        ):
            continue
        query = node.args[0] if node.args else None
        for kw in node.keywords:
            if kw.arg == "query":
                query = kw.value
        if query is None or isinstance(query, ast.Starred):
            continue
        function = node
        while function in parents and not isinstance(
            function, ast.FunctionDef | ast.AsyncFunctionDef
        ):
            function = parents[function]
        inside = function if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) else None
        if not is_literal(query, constants, local_text(inside)):
            name = inside.name if inside else "<module>"
            found.append((filename, name, node.lineno, ast.unparse(query)[:80]))
    return found


def test_the_audit_catches_sql_built_from_values():
    """Each way of building SQL from a value is caught; constants and parameters are not."""
    bad = """
async def f(conn, name, table):
    await conn.execute(f"DELETE FROM repos WHERE name = '{name}'")
    await conn.fetch("SELECT * FROM repos WHERE name = '%s'" % name)
    await conn.fetchrow("SELECT * FROM {} WHERE id = 1".format(table))
    await conn.fetchval("SELECT count(*) FROM " + table)
    sql = "SELECT 1 FROM repos WHERE name = '" + name + "'"
    await conn.executemany(sql, [])
    await conn.copy_records_to_table(table, records=[])
    col = "name" if name else table
    await conn.fetch(f"SELECT {col} FROM repos")
"""
    good = '''
_SELECT = "SELECT * FROM repos"
_WHERE = f"{_SELECT} WHERE name = $1"
async def g(conn, name):
    await conn.execute("DELETE FROM repos WHERE name = $1", name)
    await conn.fetch(f"{_SELECT} WHERE id = $1", 1)
    sql = f"""{_WHERE} AND ref = $2"""
    await conn.fetchrow(sql, name, "main")
    await conn.fetchval(query="SELECT 1" + " FROM repos")
    cos = "1 - (embedding <=> $2)" if name else "0.0"
    await conn.fetch(f"SELECT {cos} FROM chunks WHERE id = $1", 1)
'''
    found = violations(bad, "bad.py")
    assert [line for _, _, line, _ in found] == [3, 4, 5, 6, 8, 9, 11], found
    assert violations(good, "good.py") == []


def test_no_sql_is_built_from_values():
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += violations(path.read_text(encoding="utf-8"), rel)
    unexplained = [f for f in found if (f[0], f[1]) not in ALLOWED]
    assert not unexplained, "SQL built from values (use $1 parameters):\n" + "\n".join(
        f"{file}:{line} in {function}: {text}" for file, function, line, text in unexplained
    )
    stale = set(ALLOWED) - {(f[0], f[1]) for f in found}
    assert not stale, f"ALLOWED names calls that no longer build SQL: {stale}"


def test_identifier_case_passes_only_digits():
    """bind_space's vector(N) is the one value in statement text: int() makes it digits."""
    source = (ROOT / "indexer" / "store" / "space.py").read_text(encoding="utf-8")
    assert (
        'f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dims)}), {_IN_ROW}"' in source
    )
    assert '_IN_ROW = "ALTER COLUMN embedding SET STORAGE MAIN"' in source


# --- behaviour -------------------------------------------------------------------------------

NASTY = "o'brien\"; DROP TABLE chunks; --"


async def test_quotes_and_sql_in_names_paths_and_queries_are_text(settings, ollama, tmp_path):
    folder = tmp_path / 'it\'s "src"; DROP TABLE repos; --'
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "a'b\"; DELETE FROM files; --.lua").write_text(
        "-- '; DROP TABLE chunks; --\n"
        "local M = {}\n"
        'function M.quote_sql(s) return "\'" .. s:gsub("\'", "\'\'") .. "\'" end\n'
        "return M\n"
    )
    async with open_victor(settings) as victor:
        report = await victor.index(str(folder), name=NASTY)
        assert report.files_new == 1
        before = await victor.pool.fetchval("SELECT count(*) FROM chunks")
        assert before > 0
        for query in (
            "'; DROP TABLE chunks; --",
            '" OR 1=1 --',
            "quote_sql'); DELETE FROM repos; --",
            "$1 $2 %s {0} \\x00",
            "Robert'); DROP TABLE students;--",
        ):
            for mode in ("hybrid", "lexical", "dense"):
                results = await search_one(victor, query, mode=mode, repos=[NASTY])
                assert all(r.repo == NASTY for r in results)
        found = await search_one(victor, "quote_sql", mode="lexical", repos=[NASTY])
        assert found and found[0].path == "lib/a'b\"; DELETE FROM files; --.lua"
        assert found[0].repo == NASTY
        assert [r.name for r in await victor.repos()] == [NASTY]
        (repo,) = await victor.repos()
        assert repo.source == str(folder)
        # the tables are all there, with what they held
        assert await victor.pool.fetchval("SELECT count(*) FROM chunks") == before
        assert await victor.pool.fetchval("SELECT count(*) FROM files") == 1
        await victor.remove(NASTY)
        assert await victor.repos() == []
