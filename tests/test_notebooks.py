"""The analyst notebooks: they run top to bottom, are committed clean, and never re-type a metric.

Each notebook is executed with nbclient in a kernel of this environment against a demo lake that
the real ``mailpulse demo`` command generates in a temporary directory (and once more against an
empty lake, which must say so rather than fail). The static checks read the committed files.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from analytics.metrics import REGISTRY
from tests.helpers import REPO, mailpulse

NOTEBOOK_DIR = REPO / "notebooks"
EXPECTED = {
    "campaign_performance.ipynb",
    "deliverability.ipynb",
    "engagement_and_machines.ipynb",
    "suppression_audit.ipynb",
}
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
METRIC_NAMES = {metric.name for metric in REGISTRY}

# Environment variables that would point a run at another lake than the one under test.
_FOREIGN = ("MAILPULSE_CONFIG", "MAILPULSE_DATA_DIR")


def _environment(data_dir: Path | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN}
    if data_dir is not None:
        env["MAILPULSE_DATA_DIR"] = str(data_dir)
    return env


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def _code(path: Path) -> list[str]:
    return [cell.source for cell in _read(path).cells if cell.cell_type == "code"]


def _execute(path: Path, workdir: Path, data_dir: Path) -> Any:
    """Run every cell of a notebook in a fresh python3 kernel; raise on the first error."""
    notebook = _read(path)
    # An extra last cell, never committed: which interpreter the kernel really ran.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=240,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=_environment(data_dir))  # raises CellExecutionError on any cell error
    return notebook


def _texts(notebook: Any) -> Iterator[tuple[str, str]]:
    """(kind, text) of every output: stream name or MIME type."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.name, output.text
            for mime, value in output.get("data", {}).items():
                if isinstance(value, str):
                    yield mime, value
            if output.output_type == "error":
                yield "error", f"{output.ename}: {output.evalue}"


def _check_run(notebook: Any, data_dir: Path) -> list[tuple[str, str]]:
    texts = list(_texts(notebook))
    assert not [text for kind, text in texts if kind == "error"]
    warnings = [text for kind, text in texts if kind == "stderr" and "Warning" in text]
    assert not warnings, f"the notebook printed warnings: {warnings}"
    assert any(str(data_dir) in text for _, text in texts), "it never said which lake it read"
    interpreter = [text for kind, text in texts if kind == "stdout"][-1].strip()
    assert Path(interpreter).resolve() == Path(sys.executable).resolve(), (
        f"the python3 kernel ran {interpreter}, not {sys.executable}: a user-level python3 "
        "kernelspec shadows this environment's (see `jupyter kernelspec list`)"
    )
    return texts


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh demo lake made by the real command in a directory without a mailpulse.toml."""
    workdir = tmp_path_factory.mktemp("demo").resolve()
    result = mailpulse(
        "demo", "--messages", "300", "--no-dashboard", cwd=workdir, env=_environment()
    )
    assert result.returncode == 0, result.stderr
    assert any((workdir / "data" / "lake" / "events").glob("date=*/*.parquet")), result.stderr
    return workdir


def test_the_four_notebooks_are_there() -> None:
    assert {path.name for path in NOTEBOOKS} == EXPECTED


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom_on_the_demo_lake(path: Path, demo_lake: Path) -> None:
    data_dir = demo_lake / "data"
    notebook = _execute(path, demo_lake, data_dir)
    texts = _check_run(notebook, data_dir)
    assert any("the demo lake" in text for _, text in texts)
    assert not any("The lake is empty" in text for _, text in texts)
    _check_charts_are_offline(texts)


def _check_charts_are_offline(texts: list[tuple[str, str]]) -> None:
    """Every chart carries its JavaScript: drawn without internet, and in exported HTML."""
    charts = [text for kind, text in texts if kind == "text/html" and "vegaEmbed(" in text]
    assert charts, "no chart was drawn"
    for html in charts:
        assert not re.search(r"<script[^>]+src=", html), "a chart loads a script from elsewhere"
        assert "cdn.jsdelivr.net" not in html
        assert "const spec = {" in html  # the chart's own data and encoding
    assert not [kind for kind, _ in texts if kind.startswith("application/vnd.vegalite")]


@pytest.mark.slow
def test_campaigns_are_compared_when_unlabelled_events_outnumber_one(tmp_path: Path) -> None:
    from datetime import timedelta

    from tests.lakes import T0, row, write_lake

    def delivered(campaign: str | None, count: int) -> list[dict[str, Any]]:
        return [
            row(
                f"{campaign}-{n}",
                "delivered",
                f"{campaign}{n}@x.io",
                T0 + timedelta(minutes=n),
                campaign=campaign,
                message_id=f"{campaign}-m{n}",
            )
            for n in range(count)
        ]

    data_dir = tmp_path.resolve() / "data"
    write_lake(data_dir, delivered("big", 30) + delivered(None, 20) + delivered("small", 10))
    notebook = _execute(NOTEBOOK_DIR / "campaign_performance.ipynb", tmp_path, data_dir)
    texts = " ".join(text for _, text in _check_run(notebook, data_dir))
    assert "**big** compared with **small**" in texts
    assert "Comparing needs two campaigns" not in texts


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_on_an_empty_lake_says_so_and_still_runs(path: Path, tmp_path: Path) -> None:
    data_dir = tmp_path.resolve() / "data"
    notebook = _execute(path, tmp_path, data_dir)
    texts = _check_run(notebook, data_dir)
    assert any("The lake is empty" in text and "make demo" in text for _, text in texts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    notebook = _read(path)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        assert "execution" not in cell.metadata, "clear the cell timings"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"clear the outputs of cell {cell.id}"
            assert cell.execution_count is None, f"clear the execution count of cell {cell.id}"


# ---------------------------------------------------------------------------------------------
# No metric of the registry is computed in a cell: every one comes from lake.metrics().


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _registry_sql() -> set[str]:
    parts = {metric.numerator_sql for metric in REGISTRY}
    parts |= {metric.denominator_sql for metric in REGISTRY if metric.denominator_sql}
    return {" ".join(part.lower().split()) for part in parts}


def _counted_columns() -> set[str]:
    """The per-message columns the registry's SQL counts (is_delivered, human_opened, ...)."""
    columns: set[str] = set()
    for part in _registry_sql():
        part = re.sub(r"'[^']*'", "", part)  # string literals
        part = re.sub(r"\b[a-z_]+\s*\(", "(", part)  # function names
        columns |= _words(part) - {"and", "or", "not"}
    return columns


COUNTED = _counted_columns()
AGGREGATES = r"(?:sum|avg|mean|count|count_if|bool_or|bool_and|fsum|favg)"


def _recomputations(source: str) -> list[str]:
    """Every place in one code cell that computes a registry metric by hand."""
    found = []
    tree = ast.parse(source)
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    flat = " ".join(source.lower().split())
    for fragment in _registry_sql():
        if fragment in flat:
            found.append(f"the registry's SQL {fragment!r}")
    if "count_if(" in flat:
        found.append("count_if(...), the registry's way of counting")
    for text in strings:
        for column in COUNTED:
            if re.search(rf"\b{AGGREGATES}\s*\(\s*(?:distinct\s+)?{column}\b", text, re.I):
                found.append(f"SQL aggregate over {column!r}: {text.strip()[:80]!r}")
            if re.search(rf"\bfilter\s*\(\s*where\b[^)]*\b{column}\b", text, re.I):
                found.append(f"SQL FILTER on {column!r}: {text.strip()[:80]!r}")
        if "/" in text and _words(text) & (METRIC_NAMES | COUNTED):
            found.append(f"a division in SQL naming a metric: {text.strip()[:80]!r}")
    for node in ast.walk(tree):
        # a / b where either side names a metric or a counted column
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div | ast.FloorDiv):
            segment = ast.get_source_segment(source, node) or ""
            named = _words(segment) | _string_words(node)
            if named & (METRIC_NAMES | COUNTED):
                found.append(f"a division naming {sorted(named & (METRIC_NAMES | COUNTED))}")
        # pl.col("human_opened").mean(), frame["is_delivered"].sum(), ...
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"sum", "mean", "count", "len", "value_counts"}
        ):
            receiver = ast.get_source_segment(source, node.func.value) or ""
            match = re.fullmatch(r"""(?:\w+\.)?(?:col\(|\w+\[)\s*["'](\w+)["']\s*[\])]""", receiver)
            if match and match.group(1) in COUNTED:
                found.append(f"{receiver}.{node.func.attr}() aggregates a counted column")
    return found


def _string_words(node: ast.AST) -> set[str]:
    words: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            words |= _words(child.value)
    return words


def test_the_check_catches_re_typed_metrics() -> None:
    """The detector below is only worth something if it flags the usual ways of re-typing."""
    by_hand = [
        'frame["unique_opens"] / frame["delivered"]',
        'frame.with_columns(rate=pl.col("unique_clicks") / pl.col("delivered"))',
        'messages["human_opened"].mean()',
        'messages.select(pl.col("is_delivered").sum())',
        'lake.sql("SELECT count_if(human_opened) FROM messages")',
        'lake.sql("SELECT sum(open_events) FROM m")',
        'lake.sql("SELECT count(*) FILTER (WHERE is_bounced) / count(*) FROM m")',
        'lake.sql("SELECT avg(complained::INT) FROM m")',
    ]
    for source in by_hand:
        assert _recomputations(source), source
    fine = [
        'lake.metrics(by="campaign", metrics=["unique_opens", "delivered", "unique_open_rate"])',
        'config.data_dir / "exports" / "suppressions-csv.csv"',
        '(pl.col("first_human_open_at") - pl.col("first_delivered_at")).dt.total_seconds() / 60',
        'frame.filter(pl.col("is_delivered")).group_by("cohort").len()',
    ]
    for source in fine:
        assert not _recomputations(source), source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_cell_recomputes_a_registry_metric(path: Path) -> None:
    problems = {
        f"cell {number}": found
        for number, source in enumerate(_code(path))
        if (found := _recomputations(source))
    }
    assert not problems, f"take these from lake.metrics() instead: {problems}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_opens_the_configured_lake_with_one_call(path: Path) -> None:
    tree = ast.parse("\n".join(_code(path)))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    ]

    def named(call: ast.Call, name: str) -> bool:
        func = call.func
        return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) == name

    opens = [call for call in calls if named(call, "open_lake")]
    assert len(opens) == 1, "open the lake once"
    assert ast.unparse(opens[0]) == "open_lake(config)", "open the lake of load_config()"
    assert any(named(call, "load_config") and not call.args for call in calls)
    assert any(named(call, "metrics") for call in calls), "use the registry: lake.metrics(...)"


def test_every_registry_metric_is_shown_in_a_notebook() -> None:
    named: set[str] = set()
    for path in NOTEBOOKS:
        for source in _code(path):
            named |= _string_words(ast.parse(source))
    missing = sorted(METRIC_NAMES - named)
    assert not missing, f"no notebook shows {missing}"
