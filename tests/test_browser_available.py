"""Finding 14: on a machine without Chromium the browser tests skip with a one-line reason.

Every test marked ``browser`` goes through one check (``tests/conftest.py``): outside CI a missing
Chromium skips it, as an unreachable PostgreSQL does; in CI (``CI=true``) it stays a failure. The
missing case is made by pointing the lookup at a path that does not exist, not by uninstalling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter import screenshot
from tests.conftest import CHROMIUM_ENV, ROOT, chromium_path, require_chromium


def test_finding_14_the_lookup_defaults_to_the_products_chromium(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CHROMIUM_ENV, raising=False)
    assert chromium_path() == screenshot.CHROMIUM


def test_finding_14_missing_chromium_skips_with_a_one_line_reason_outside_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv(CHROMIUM_ENV, str(missing))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium()
    reason = skipped.value.msg
    assert f"no Chromium at {missing}" in reason
    assert "apt" in reason or "chromium package" in reason
    assert "\n" not in reason


def test_finding_14_missing_chromium_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv(CHROMIUM_ENV, str(missing))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_chromium()
    assert f"no Chromium at {missing}" in failed.value.msg


def test_finding_14_a_directory_or_plain_file_is_not_a_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    not_executable = tmp_path / "chromium"
    not_executable.write_text("#!/bin/sh\n", encoding="utf-8")
    for candidate in (tmp_path, not_executable):
        monkeypatch.setenv(CHROMIUM_ENV, str(candidate))
        with pytest.raises(pytest.skip.Exception):
            require_chromium()


@pytest.mark.slow
def test_finding_14_every_browser_test_skips_on_a_machine_without_chromium(
    tmp_path: Path,
) -> None:
    """The whole suite's browser tests (the preview PNG and phone-width ones included), run apart."""
    environment = {name: value for name, value in os.environ.items() if name != "CI"}
    environment[CHROMIUM_ENV] = str(tmp_path / "no-chromium")
    command = [sys.executable, "-m", "pytest", "-m", "browser", "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(
        [*command, "-rs", "tests"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    counted = re.match(r"(\d+) skipped, \d+ deselected", summary)
    assert counted, summary
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert int(counted.group(1)) >= 3  # the journey, the preview PNGs, the phone width
    assert sum(_count(line) for line in skips) == int(counted.group(1))
    for line in skips:
        assert f"no Chromium at {tmp_path / 'no-chromium'}" in line
    for name in (
        "test_preview_png_writes_desktop_and_phone_screenshots",
        "test_nothing_overflows_on_a_375_px_phone",
    ):
        assert name not in result.stdout  # skipped, not failed or errored


def _count(line: str) -> int:
    found = re.match(r"SKIPPED \[(\d+)\]", line)
    return int(found.group(1)) if found else 0
