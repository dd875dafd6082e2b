"""The docs check: DAG snippets in README.md and docs/ run under Airflow, and relative links resolve.

A python block that imports from ``airflow_s3stream.operators`` or ``airflow.sdk`` is a DAG
snippet: it is executed inside ``with DAG(...)``, so every operator it builds is validated as at
DAG parse time, with the names of :data:`FIXTURES` defined (a snippet may use them as given, e.g.
the ``ranges`` a planning task would return). Other python blocks (core API sketches using a
``client`` they do not build) must at least compile. A link without a scheme must name an
existing file, and its ``#anchor`` a heading of that file (GitHub's slugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pendulum
import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DAG_IMPORTS = ("from airflow_s3stream.operators import", "from airflow.sdk import")
# Names a DAG snippet may use without defining them: what an upstream task would hand it.
FIXTURES = {
    "ranges": [
        {"parameters": {"lo": 1, "hi": 1_000_001}, "s3_key": "exp/orders/range-00000"},
        {"parameters": {"lo": 1_000_001, "hi": 2_000_001}, "s3_key": "exp/orders/range-00001"},
    ],
}


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == "python":
                line = text[: match.start()].count("\n") + 1
                found.append((str(page.relative_to(REPO)), line, match.group(2)))
    return found


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


BLOCKS = _blocks()


def test_there_are_docs_with_dag_snippets_for_every_operator() -> None:
    snippets = "\n".join(code for _, _, code in BLOCKS if any(i in code for i in DAG_IMPORTS))
    for operator in (
        "PostgresToS3StreamOperator",
        "S3ToPostgresStreamOperator",
        "S3ZipVerifyOperator",
        "S3ToBagItZipOperator",
        "S3MultipartUploadOperator",
    ):
        assert f"{operator}(" in snippets, operator


@pytest.mark.parametrize(("page", "line", "code"), BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_python_block_parses_and_dag_snippets_build_their_operators(page: str, line: int, code: str) -> None:
    compiled = compile(code, f"{page}:{line}", "exec")
    if not any(i in code for i in DAG_IMPORTS):
        return
    from airflow.sdk import DAG

    with DAG(dag_id="docs_check", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        exec(compiled, {"__name__": "docs_snippet", **FIXTURES})
    assert dag.task_dict or "@dag" in code or "@task" in code, f"{page}:{line} builds no task"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []
