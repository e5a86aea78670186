"""Clinic configs: the 3-key reference config suffices; every bad config is a one-line error
naming the file and the key, and never stops the other clinics."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ClinicConfig, load_clinic_configs, parse_clinic_config
from pipelines.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "config"


def _write(d: Path, name: str, text: str) -> Path:
    (d / "clinics").mkdir(parents=True, exist_ok=True)
    p = d / "clinics" / f"{name}.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_three_keys_are_a_complete_reference_config() -> None:
    cfg = parse_clinic_config(
        {"clinic_id": "riverside", "timezone": "America/New_York", "format": "reference"},
        "riverside.yaml",
    )
    assert cfg.layout == "long" and cfg.file_type == "csv" and cfg.delimiter == ","
    assert cfg.instrument_version("SRS") == "3.0"


def test_the_shipped_sample_configs_load() -> None:
    good, errors = load_clinic_configs(REPO_CONFIGS)
    assert errors == []
    assert {"pcoms_north", "wai_central", "euro_praxis", "ref_clinic"} <= set(good)
    assert good["pcoms_north"].wide is not None
    assert set(good["pcoms_north"].wide.resolved()) == {"SRS", "ORS"}
    assert good["euro_praxis"].decimal == "," and good["euro_praxis"].encoding == "latin-1"
    emails = [e for cfg in good.values() for e in cfg.clinicians.values()]
    assert emails and all(e.endswith(".invalid") for e in emails)


BAD = {
    "unknown_key": (
        "clinic_id: unknown_key\ntimezone: UTC\nformat: reference\ncolour: blue\n",
        "colour",
    ),
    "wrong_type": (
        "clinic_id: wrong_type\ntimezone: UTC\nformat: custom\ncadence_days: weekly\n",
        "cadence_days",
    ),
    "bad_date": (
        "clinic_id: bad_date\ntimezone: UTC\nformat: custom\ndate_format: '%d.%m'\n",
        "date_format",
    ),
    "bad_mapping": (
        "clinic_id: bad_mapping\ntimezone: UTC\nformat: custom\ncolumns:\n  client: Client ID\n",
        "columns",
    ),
    "bad_status": (
        "clinic_id: bad_status\ntimezone: UTC\nformat: custom\nstatus_values:\n  Show: here\n",
        "status_values",
    ),
    "wide_no_blocks": (
        "clinic_id: wide_no_blocks\ntimezone: UTC\nformat: custom\nlayout: wide\nwide: {}\n",
        "wide",
    ),
}


def test_each_bad_config_is_one_line_naming_file_and_key_and_others_load(tmp_path: Path) -> None:
    _write(tmp_path, "good", "clinic_id: good\ntimezone: Europe/Berlin\nformat: reference\n")
    for name, (text, _) in BAD.items():
        _write(tmp_path, name, text)
    good, errors = load_clinic_configs(tmp_path)
    assert list(good) == ["good"]
    by_file = {Path(e.file).stem: e for e in errors}
    assert set(by_file) == set(BAD)
    for name, (_, key) in BAD.items():
        err = by_file[name]
        msg = str(err)
        assert "\n" not in msg
        assert msg.startswith(str(tmp_path / "clinics" / f"{name}.yaml"))
        assert err.key.split(".")[0] == key, msg
        assert len(err.problem) > 10  # says what is wrong / what would fix it


def test_wide_block_must_list_every_item() -> None:
    data = {
        "clinic_id": "w",
        "timezone": "UTC",
        "format": "custom",
        "layout": "wide",
        "wide": {"blocks": {"SRS": {"items": ["a", "b"], "total": "t"}}},
    }
    with pytest.raises(ConfigError, match="SRS has 4 items"):
        parse_clinic_config({**data, "clinic_id": "ww"}, "ww.yaml")


def test_wide_prefix_templates_resolve() -> None:
    cfg = ClinicConfig.model_validate(
        {
            "clinic_id": "wp",
            "timezone": "UTC",
            "format": "custom",
            "layout": "wide",
            "wide": {"prefixes": {"ORS": "ors"}},
        }
    )
    assert cfg.wide is not None
    assert cfg.wide.resolved()["ORS"] == (["ors_1", "ors_2", "ors_3", "ors_4"], "ors_total")


def test_clinic_id_must_match_file_name() -> None:
    with pytest.raises(ConfigError, match="clinic_id"):
        parse_clinic_config(
            {"clinic_id": "abc", "timezone": "UTC", "format": "reference"}, "x.yaml"
        )


@pytest.mark.parametrize("tz", ["localtime", "posixrules", "posix/Europe/Berlin", "right/UTC"])
def test_a_timezone_duckdb_cannot_use_is_refused(tz: str) -> None:
    """The tz database opens aliases that DuckDB, whose views count each clinic's weeks in its
    timezone, does not know: one such config broke the data-quality view for every clinic."""
    import duckdb

    with pytest.raises(ConfigError, match="unknown IANA timezone"):
        parse_clinic_config(
            {"clinic_id": "tz_alias", "timezone": tz, "format": "reference"}, "tz_alias.yaml"
        )
    for good in ("Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires"):
        parse_clinic_config(
            {"clinic_id": "tz_ok", "timezone": good, "format": "reference"}, "tz_ok.yaml"
        )
        duckdb.connect().execute("select timezone(?, now())", [good]).fetchall()
