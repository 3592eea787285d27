"""Issue 10, finding 10: every exported CSV cell is neutralised against spreadsheet formulas.

An address may itself start with ``=``, ``+``, ``-`` or ``'`` and still be valid; exported as is, a
spreadsheet runs it. Both exports (CLI and admin API) prefix such a cell with ``'``, and an import of
the export gives back the original address.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from newsletter.cli import cli
from newsletter.config import Settings
from subscribers.import_file import ImportRow, read_csv
from subscribers.spreadsheet import neutralise, restore
from tests.web_fixtures import ADMIN_TOKEN, Web, web, web_factory

__all__ = ["web", "web_factory"]

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# valid addresses a spreadsheet would read as a formula (or, for the last, as an escaped one)
FORMULA_ADDRESSES = [
    "=cmd|'/Ccalc'!A0@example.com",
    "+1@x.org",
    "-2+3@example.net",
    "=1+2@example.org",
    "'=1@example.com",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _assert_defused(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, text
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(TRIGGERS), (column, value)
    return rows


@pytest.fixture
def run(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_finding_10_cli_export_defuses_formula_addresses_and_reads_back(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    for address in FORMULA_ADDRESSES:
        added = run("subscribers", "add", "--confirmed", "--", address)
        assert added.exit_code == 0, added.output
    target = tmp_path / "export.csv"
    result = run("subscribers", "export", "--output", str(target))
    assert result.exit_code == 0, result.output
    rows = _assert_defused(target.read_text(encoding="utf-8"))
    assert sorted(row["email"] for row in rows) == sorted("'" + a for a in FORMULA_ADDRESSES)
    back = [row for row in read_csv(target) if isinstance(row, ImportRow)]
    assert sorted(row.email for row in back) == sorted(FORMULA_ADDRESSES)
    again = run("subscribers", "import", str(target), "--confirmed")
    assert again.exit_code == 0, again.output
    listed = run("subscribers", "list").stdout
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == sorted(FORMULA_ADDRESSES)


def test_finding_10_api_export_defuses_every_column(web: Web) -> None:
    for address in FORMULA_ADDRESSES:
        answer = web.client.post(
            "/api/subscribers",
            headers=AUTH,
            json={"email": address, "name": "-" + address, "confirmed": True},
        )
        assert answer.status_code == 201, answer.text
    exported = web.client.get("/api/subscribers/export", headers=AUTH)
    assert exported.status_code == 200
    rows = _assert_defused(exported.text)
    assert sorted(row["email"] for row in rows) == sorted("'" + a for a in FORMULA_ADDRESSES)
    assert sorted(row["name"] for row in rows) == sorted("'-" + a for a in FORMULA_ADDRESSES)
    # the export imports back into the same addresses: nothing added, nothing rejected
    answer = web.client.post(
        "/api/subscribers/import",
        headers=AUTH,
        files={"file": ("export.csv", exported.content, "text/csv")},
    )
    report = answer.json()
    assert (report["added"], report["already_present"], report["rejected"]) == (
        0,
        len(FORMULA_ADDRESSES),
        [],
    )


@given(st.text())
def test_finding_10_a_neutralised_cell_is_restored_exactly(value: str) -> None:
    cell = neutralise(value)
    assert not cell.startswith(TRIGGERS)
    assert restore(cell) == value
