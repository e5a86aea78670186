"""The `alliance-watch` command line per CONTRACT: --help lists commands; bad usage is one line
and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["ingest", "detect", "digest", "generate", "evaluate"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("alliance-watch")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in COMMANDS:
        assert cmd in out.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd: str) -> None:
    out = run_cli(cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: alliance-watch " + cmd in out.stdout


def test_missing_required_option_is_one_line_and_nonzero() -> None:
    out = run_cli("ingest", "--landing", "x")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_folder_is_one_line_error(tmp_path: Path) -> None:
    out = run_cli(
        "ingest",
        "--config-dir",
        str(tmp_path / "nope"),
        "--landing",
        str(tmp_path),
        "--warehouse",
        str(tmp_path / "w.duckdb"),
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--config-dir" in out.stderr


def test_unknown_command_fails() -> None:
    out = run_cli("frobnicate")
    assert out.returncode == 2


def test_internal_errors_are_one_line_without_the_message(tmp_path: Path) -> None:
    not_a_db = tmp_path / "truth.csv"
    not_a_db.write_text("kind,client_id\nrupture,C0001\n")
    out = run_cli("detect", "--warehouse", str(not_a_db))
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and "C0001" not in out.stderr


def test_unusable_path_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config" / "clinics"
    cfg.mkdir(parents=True)
    (cfg / "ref_clinic.yaml").write_text(
        "clinic_id: ref_clinic\ntimezone: UTC\nformat: reference\n"
    )
    (tmp_path / "landing").mkdir()
    out = run_cli(
        "ingest",
        "--config-dir",
        str(tmp_path / "config"),
        "--landing",
        str(tmp_path / "landing"),
        "--warehouse",
        "/dev/null/w.duckdb",
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_negative_seed_is_refused() -> None:
    out = run_cli("generate", "--out", "/tmp/unused", "--seed", "-5")
    assert out.returncode == 2 and "--seed" in out.stderr
