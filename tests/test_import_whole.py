"""Issue 14: an import is all-or-nothing, and its field and line limits are settings with clear errors.

600 good rows then one 200,000-character field used to end in "not valid CSV" with 500 rows already
confirmed. A file that turns out to be unusable partway through now imports nothing, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.db import Database
from subscribers.errors import ImportFileError
from subscribers.import_file import read_csv
from subscribers.model import Subscriber
from subscribers.transfer import import_rows
from tests.web_fixtures import ADMIN_TOKEN, Web, web_db, web_factory  # noqa: F401

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    try:
        yield database
    finally:
        database.dispose()


def subscriber_count(database: Database) -> int:
    with database.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def good_rows(count: int) -> str:
    return "".join(f"user{n}@example.com,User {n}\n" for n in range(count))


def huge_field_file(folder: Path) -> Path:
    """The hostile file of the finding: 600 good rows, then a 200,000-character name (line 602)."""
    path = folder / "huge.csv"
    path.write_text(
        "email,name\n" + good_rows(600) + "big@example.com," + "x" * 200_000 + "\n",
        encoding="utf-8",
    )
    return path


def test_a_200000_character_field_after_600_good_rows_imports_nothing(
    database: Database, tmp_path: Path
) -> None:
    with pytest.raises(ImportFileError) as caught:
        import_rows(
            database.transaction,
            read_csv(huge_field_file(tmp_path)),
            confirmed=True,
            source="t",
        )
    message = str(caught.value)
    # The line limit is met first (the whole line is over 10,000 characters).
    assert "line 602" in message
    assert "10,000 characters" in message
    assert "NEWSLETTER_IMPORT_MAX_LINE_CHARS" in message
    assert "nothing was imported" in message
    assert subscriber_count(database) == 0


def test_a_field_over_its_limit_late_in_the_file_imports_nothing(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "field.csv"
    path.write_text(
        "email,name\n" + good_rows(600) + "long@example.com," + "z" * 5000 + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as caught:
        import_rows(database.transaction, read_csv(path), confirmed=True, source="t")
    message = str(caught.value)
    assert "line 602" in message and "1,000 characters" in message
    assert "NEWSLETTER_IMPORT_MAX_FIELD_CHARS" in message
    assert "nothing was imported" in message
    assert subscriber_count(database) == 0


def test_a_field_limit_raised_by_the_setting_lets_the_file_in(
    database: Database, tmp_path: Path
) -> None:
    report = import_rows(
        database.transaction,
        read_csv(huge_field_file(tmp_path), max_field_chars=250_000, max_line_chars=300_000),
        confirmed=True,
        source="t",
    )
    # The long name is the subscriber's business; the address is what is checked.
    assert report.added + len(report.rejected) == 601
    assert report.added >= 600


def test_an_overlong_line_imports_nothing_and_names_the_setting(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "line.csv"
    path.write_text("email,name\n" + good_rows(600) + '"' + "y" * 20_000 + "\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as caught:
        import_rows(database.transaction, read_csv(path), confirmed=False, source="t")
    message = str(caught.value)
    assert "line 602" in message and "10,000 characters" in message
    assert "NEWSLETTER_IMPORT_MAX_LINE_CHARS" in message
    assert "nothing was imported" in message
    assert subscriber_count(database) == 0


def test_an_unclosed_quote_late_in_the_file_imports_nothing_and_points_at_it(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        "email,name\n" + good_rows(700) + 'open@example.com,"Ada\n' + good_rows(300),
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as caught:
        import_rows(
            database.transaction, read_csv(path), confirmed=True, source="t", chunk_size=100
        )
    message = str(caught.value)
    assert "lines 702-" in message and "quote left open" in message
    assert "nothing was imported" in message
    assert subscriber_count(database) == 0


def test_the_cli_import_of_the_hostile_file_says_nothing_was_imported(
    make_settings: Callable[..., Settings], sqlite_url: str, tmp_path: Path
) -> None:
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": sqlite_url,
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    make_settings()  # clears the environment of stray NEWSLETTER_ variables
    path = huge_field_file(tmp_path)
    result = CliRunner().invoke(
        cli, ["subscribers", "import", str(path), "--confirmed"], env=env, catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "line 602" in result.output and "nothing was imported" in result.output
    assert "NEWSLETTER_IMPORT_MAX_LINE_CHARS" in result.output
    listed = CliRunner().invoke(cli, ["subscribers", "list"], env=env, catch_exceptions=False)
    assert "user1@example.com" not in listed.output
    smaller = CliRunner().invoke(
        cli,
        ["subscribers", "import", str(path), "--confirmed"],
        env=env | {"NEWSLETTER_IMPORT_MAX_LINE_CHARS": "300000"},
        catch_exceptions=False,
    )
    assert smaller.exit_code == 2
    assert "NEWSLETTER_IMPORT_MAX_FIELD_CHARS" in smaller.output  # the next limit, named


def test_the_api_import_of_the_hostile_file_is_a_422_and_imports_nothing(
    web_db: Web,  # noqa: F811
    tmp_path: Path,
) -> None:
    answer = web_db.client.post(
        "/api/subscribers/import",
        headers=AUTH,
        files={"file": ("list.csv", huge_field_file(tmp_path).read_bytes(), "text/csv")},
        params={"confirmed": "true"},
    )
    assert answer.status_code == 422
    assert "line 602" in answer.json()["error"]
    assert "nothing was imported" in answer.json()["error"]
    assert subscriber_count(Database.from_url(web_db.app.settings.database_url)) == 0
