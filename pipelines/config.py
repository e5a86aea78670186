"""Clinic configuration: typed, validated at the edge, with defaults for everything but three keys.

A clinic in the reference export format needs only::

    clinic_id: riverside
    timezone: America/New_York
    format: reference

Errors name the file, the key and what would fix it (`ConfigError`). One bad config never stops
the other clinics: `load_clinic_configs` returns the good configs and the errors separately.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines.errors import ConfigError
from pipelines.registry import (
    APPOINTMENT_STATUSES,
    INSTRUMENTS,
    REFERENCE_MEASURE_COLUMNS,
)

# The canonical names a `columns:` / `appointment_columns:` mapping may map to.
# `episode_id` (a treatment episode: part of the measurement key; blank = "") is optional.
MEASURE_KEYS: tuple[str, ...] = (*REFERENCE_MEASURE_COLUMNS, "episode_id")
WIDE_KEYS: tuple[str, ...] = (
    "client_id",
    "clinician_id",
    "session_date",
    "session_number",
    "episode_id",
)
# Instruments whose paper form is scored by hand (a mark on a 10 cm line per item): a clinic
# may load their totals without items (`allow_total_only`). Never PHQ-9, GAD-7 or WAI-SR: an
# item missing there makes the measure invalid (DOMAIN.md).
TOTAL_ONLY_INSTRUMENTS: tuple[str, ...] = ("SRS", "ORS")
# A row condition: `<column> == <value>` or `<column> != <value>` (the value as text), or
# `<column> in (<value>, <value>, ...)` / `not in (...)`: one of several values, for a column an
# export writes as a code or as its label (Qualtrics' `Finished`: 1 or True).
_CONDITION = re.compile(r"^\s*(?P<column>.+?)\s*(?P<op>==|!=)\s*(?P<value>.*?)\s*$")
_CONDITION_IN = re.compile(
    r"^\s*(?P<column>.+?)\s+(?P<op>in|not\s+in)\s*\((?P<value>.*)\)\s*$", re.IGNORECASE
)
APPOINTMENT_KEYS: tuple[str, ...] = ("client_id", "clinician_id", "appointment_date", "status")
# A pseudonymous code: letters (of any script: "ÄÖ-0012", "ЖК-17"), digits 0-9, "_" or "-", and
# "/" between two letters or digits (case numbers "2024/00317"), with at least one digit, so a
# bare name ("Smithson") in a code column is never taken for a code; up to 64 characters, so
# UUIDs (36) and hex digests (SHA-256: 64) are codes. Python `re` (the engine of validation and
# of the guard's pattern checks): `[^\W\d_]` is a letter of any script.
_CODE_CHAR = r"(?:[^\W\d_]|[0-9])"
DEFAULT_CODE_PATTERN = (
    rf"^(?=[^0-9]*[0-9]){_CODE_CHAR}(?:{_CODE_CHAR}|[_-]|/(?={_CODE_CHAR})){{0,63}}$"
)
CLINIC_ID_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitedDataSet(_Strict):
    """The data-use agreement under which session dates are received (DOMAIN.md)."""

    agreement_id: str = "unsigned"
    signed: bool = False


@functools.cache
def _iana_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Notifications(_Strict):
    data_team_email: str | None = None
    # a receipt to the data team after every ingest run that found files (needs the address)
    ingest_receipt: bool = True
    immediate_high_severity: bool = False
    send_all_clear: bool = False


def parse_condition(text: str) -> tuple[str, str, str]:
    """(column, operator, value) of a `keep_rows` condition; ValueError when it is not one."""
    m = _CONDITION_IN.match(text) if isinstance(text, str) else None
    if m is not None and m["column"]:
        op = "not in" if m["op"].lower().startswith("not") else "in"
        return m["column"], op, m["value"]
    m = _CONDITION.match(text) if isinstance(text, str) else None
    if m is None or not m["column"]:
        raise ValueError(
            f"{text!r} is not a condition; write '<column> == <value>', '<column> != <value>' "
            "or '<column> in (<value>, <value>)', e.g. 'Finished in (1, True)'"
        )
    return m["column"], m["op"], m["value"]


def condition_values(op: str, value: str) -> list[str]:
    """The values a parsed condition compares with: one, or the list of an `in` condition."""
    if op in ("in", "not in"):
        return [v.strip() for v in value.split(",")]
    return [value]


def _conditions(v: list[str]) -> list[str]:
    for text in v:
        parse_condition(text)
    return v


class WideBlock(_Strict):
    """One instrument's columns on a wide line: its item headers in item order, and its total;
    `keep_rows`: conditions this instrument's entries must meet (e.g. REDCap's
    `phq9_complete == 2`), others are filtered and counted; `session_date`: the header of this
    instrument's own date column, where each form carries its date (REDCap: two repeating
    instruments, `srs_date` and `phq9_date`), read for this block instead of
    `columns.session_date`."""

    items: list[str]
    total: str | None = None
    keep_rows: list[str] = Field(default_factory=list)
    session_date: str | None = None

    @field_validator("keep_rows")
    @classmethod
    def _keep(cls, v: list[str]) -> list[str]:
        return _conditions(v)


class WideLayout(_Strict):
    """One row per session, each instrument's items in its own columns.

    Either list each instrument's columns in ``blocks`` (``{SRS: {items: [...], total: ...}}``)
    or give ``prefixes`` (instrument -> the clinic's prefix) and the templates ``item_column`` and
    ``total_column`` over ``{prefix}`` and ``{item}`` (1-based). ``blocks`` wins where both name
    an instrument.
    """

    item_column: str = "{prefix}_{item}"
    total_column: str = "{prefix}_total"
    prefixes: dict[str, str] = Field(default_factory=dict)
    blocks: dict[str, WideBlock] = Field(default_factory=dict)

    @field_validator("prefixes", "blocks")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _known_instruments(v)

    @model_validator(mode="after")
    def _complete(self) -> WideLayout:
        if not self.prefixes and not self.blocks:
            raise ValueError("name at least one instrument under 'blocks:' or 'prefixes:'")
        for code, block in self.blocks.items():
            n = INSTRUMENTS[code].n_items
            if len(block.items) != n:
                raise ValueError(
                    f"blocks.{code}.items lists {len(block.items)} columns; {code} has {n} items"
                )
        return self

    def own_dates(self) -> dict[str, str]:
        """Instrument -> the header of its own date column, for the blocks that name one."""
        return {code: b.session_date for code, b in self.blocks.items() if b.session_date}

    def resolved(self) -> dict[str, tuple[list[str], str | None]]:
        """Instrument -> (item headers in item order, total header or None)."""
        out: dict[str, tuple[list[str], str | None]] = {}
        for code, prefix in self.prefixes.items():
            items = [
                self.item_column.format(prefix=prefix, instrument=code, item=i)
                for i in range(1, INSTRUMENTS[code].n_items + 1)
            ]
            out[code] = (items, self.total_column.format(prefix=prefix, instrument=code))
        for code, block in self.blocks.items():
            out[code] = (list(block.items), block.total)
        return out


# Detection keys of earlier versions whose population floors the clinic's own calibration
# replaced (docs/detection.md): a config that still sets one is told what to use instead.
REMOVED_THRESHOLDS: dict[str, str] = {
    "deflection_sd_floor": "min_drop_sd",
    "part_sd_floor": "part_z",
    "flag_min_drop": "min_drop_sd",
}


class Thresholds(_Strict):
    """Per-clinic overrides of detection parameters (docs/detection.md); None keeps the
    default. Names match `pipelines.detect.ruptures.DetectParams`."""

    srs_cutoff: float | None = Field(default=None, ge=0, le=40)
    wai_cutoff: float | None = Field(default=None, ge=1, le=5)
    deflection_sd: float | None = Field(default=None, gt=0)
    flag_evidence: float | None = Field(default=None, gt=0)
    min_drop_sd: float | None = Field(default=None, ge=0)
    part_z: float | None = Field(default=None, gt=0)
    cusum_k: float | None = Field(default=None, ge=0)
    cusum_h: float | None = Field(default=None, gt=0)
    # share of alliance sessions the clinic wants flagged (e.g. 0.05); see docs/detection.md
    alert_budget: float | None = Field(default=None, gt=0, lt=0.5)
    # without a budget: the share of sessions flagged above which the threshold rises; false: off
    alert_ceiling: float | Literal[False] | None = Field(default=None)
    budget_min_sessions: int | None = Field(default=None, ge=1)
    decline_sessions: int | None = Field(default=None, ge=3, le=5)
    decline_min_drop: float | None = Field(default=None, gt=0)
    min_history: int | None = Field(default=None, ge=1)
    ended_after_days: int | None = Field(default=None, ge=1)

    @field_validator("alert_ceiling", mode="before")
    @classmethod
    def _ceiling_share(cls, value: Any) -> Any:
        # checked before parsing: 0 would otherwise pass as false
        if value is True or (
            isinstance(value, int | float) and value is not False and not 0 < value < 0.5
        ):
            raise ValueError("a share between 0 and 0.5 (e.g. 0.085), or false to switch it off")
        return value

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in REMOVED_THRESHOLDS.items():
                if key in data:
                    raise ValueError(
                        f"thresholds.{key} was removed: detection now takes its floors from the "
                        f"clinic's own data (docs/detection.md); delete the key, or set "
                        f"thresholds.{instead} or thresholds.alert_budget instead"
                    )
        return data


class SessionNumberFrom(_Strict):
    """Where the session number comes from when the export has no session-number column.

    * ``column`` + ``pattern``: a regular expression with one group, matched against the
      column's text (``'^session_(\\d+)_arm_\\d+$'`` on REDCap's ``redcap_event_name``);
    * ``column`` + ``values``: a map of the column's values to numbers (event names);
    * ``column`` alone: the column holds the number (``redcap_repeat_instance``);
    * ``order: session_date``: the rank of the session date among the file's rows of the same
      client, episode and instrument (two on one date are quarantined, never ordered).
    """

    column: str | None = None
    pattern: str | None = None
    values: dict[str, int] = Field(default_factory=dict)
    order: Literal["session_date"] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SessionNumberFrom:
        if (self.column is None) == (self.order is None):
            raise ValueError(
                "give either 'column' (with 'pattern', 'values' or neither) or 'order: "
                "session_date'"
            )
        if self.pattern is not None and self.values:
            raise ValueError("give 'pattern' or 'values', not both")
        if self.order is not None and (self.pattern is not None or self.values):
            raise ValueError("'order' takes no 'pattern' or 'values'")
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression: {e}") from None
            if groups != 1:
                raise ValueError(
                    "pattern needs exactly one group, the session number: e.g. "
                    "'^session_(\\d+)_arm_\\d+$'"
                )
        for label, n in self.values.items():
            if n < 1:
                raise ValueError(f"values.{label} is {n}; session numbers start at 1")
        return self


# The keys a `files:` entry may set for its own files; the others are the clinic's.
FILE_SPEC_KEYS: tuple[str, ...] = (
    "file_type",
    "layout",
    "delimiter",
    "encoding",
    "decimal",
    "date_format",
    "columns",
    "instrument_values",
    "status_values",
    "wide",
    "instrument",
    "header_rows",
    "keep_rows",
    "session_number_from",
    "fill_from_client",
    "item_values",
)
# `date_format: excel`: dates written as Excel's serial day numbers (45749 = 2025-04-02), as a
# spreadsheet column that lost its date format saves them
EXCEL_SERIAL = "excel"
# columns `fill_from_client` may fill (a client's fixed attributes, never a session's values)
FILL_FROM_CLIENT_KEYS: tuple[str, ...] = ("clinician_id", "episode_id")


def _answer_keys_as_text(v: Any) -> Any:
    """YAML reads `{1: 0, 2: 1}` with number keys: the answers are compared as text."""
    if not isinstance(v, dict):
        return v
    return {
        code: {str(k): s for k, s in answers.items()} if isinstance(answers, dict) else answers
        for code, answers in v.items()
    }


# instrument -> {answer as exported: score} (`item_values`), the answers compared as text
ItemValues = Annotated[dict[str, dict[str, float]], BeforeValidator(_answer_keys_as_text)]


class FileSpec(_Strict):
    """One kind of file a clinic delivers (`files:`): its name pattern, dataset and how to read
    it. A key not given here is taken from the clinic's top level."""

    pattern: str
    dataset: Literal["measures", "appointments"] = "measures"
    file_type: Literal["csv", "parquet"] | None = None
    layout: Literal["long", "wide"] | None = None
    delimiter: str | None = None
    encoding: str | None = None
    decimal: Literal[".", ","] | None = None
    date_format: str | None = None
    # for an appointments file: the appointment columns
    columns: dict[str, str] | None = None
    instrument_values: dict[str, str] | None = None
    status_values: dict[str, str] | None = None
    wide: WideLayout | None = None
    instrument: str | None = None
    header_rows: int | None = Field(default=None, ge=0, le=20)
    keep_rows: list[str] | None = None
    session_number_from: SessionNumberFrom | None = None
    fill_from_client: list[str] | None = None
    item_values: ItemValues | None = None


class ClinicConfig(_Strict):
    clinic_id: str
    timezone: str
    format: Literal["reference", "custom"]
    file_type: Literal["csv", "parquet"] = "csv"
    layout: Literal["long", "wide"] = "long"
    delimiter: str = ","
    encoding: str = "utf-8"
    decimal: Literal[".", ","] = "."
    date_format: str = "%Y-%m-%d"
    measures_pattern: str = "measures*"
    appointments_pattern: str = "appointments*"
    # canonical column name -> the clinic's header
    columns: dict[str, str] = Field(default_factory=dict)
    appointment_columns: dict[str, str] = Field(default_factory=dict)
    # the clinic's status words -> canonical status
    status_values: dict[str, str] = Field(default_factory=dict)
    # the clinic's instrument labels -> registry code (e.g. PHQ9 -> PHQ-9)
    instrument_values: dict[str, str] = Field(default_factory=dict)
    wide: WideLayout | None = None
    instruments: dict[str, str] = Field(default_factory=dict)  # instrument -> version
    # a file that holds one instrument only (no instrument column): its registry code
    instrument: str | None = None
    # extra header rows after the column names (Qualtrics: 2), skipped
    header_rows: int = Field(default=0, ge=0, le=20)
    # conditions a row must meet to be taken in (on any column, loaded or not); rows that fail
    # one are filtered and counted with the condition (`ingest_files.rows_filtered`)
    keep_rows: list[str] = Field(default_factory=list)
    session_number_from: SessionNumberFrom | None = None
    # canonical columns whose blank cells take the value the same client's other rows of the
    # file hold (REDCap: a field of a non-repeating form sits on the record's base row only,
    # blank on its repeating instances); a client with two values there is left blank
    fill_from_client: list[str] = Field(default_factory=list)
    # instruments whose entries may carry a total without items (paper forms scored by hand)
    allow_total_only: list[str] = Field(default_factory=list)
    # instrument -> {answer as exported: score}: items exported as choice text ("Not at all")
    # or as a survey tool's own codes (Qualtrics' default 1-4 for a 0-3 scale); every item of
    # that instrument must be one of the answers listed, others are row issues
    item_values: ItemValues = Field(default_factory=dict)
    # several kinds of file: each its own pattern, dataset and reading keys (FILE_SPEC_KEYS);
    # empty: the top-level keys describe the clinic's one measures and one appointments file
    files: list[FileSpec] = Field(default_factory=list)
    # the shape of pseudonymous codes: `code_pattern` sets both columns, the two others one
    # each (and win over it); a declared pattern is authoritative for the values it matches
    # (see pipelines.ingest.guard). None: the default.
    code_pattern: str | None = None
    client_code_pattern: str | None = None
    clinician_code_pattern: str | None = None
    # the clinic's own extra columns that the header check must not take for identifiers
    safe_columns: list[str] = Field(default_factory=list)
    limited_data_set: LimitedDataSet = LimitedDataSet()
    clinicians: dict[str, str] = Field(default_factory=dict)  # clinician code -> email
    notifications: Notifications = Notifications()
    thresholds: Thresholds = Thresholds()
    cadence_days: int = Field(default=7, ge=1, le=90)
    max_field_bytes: int = Field(default=4096, ge=64)

    @field_validator("clinic_id")
    @classmethod
    def _clinic_id(cls, v: str) -> str:
        if not re.fullmatch(CLINIC_ID_PATTERN, v):
            raise ValueError(
                "must be 2-40 lowercase letters, digits or underscores, starting with a letter"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        # the IANA names only: the tz database also opens aliases such as `localtime`,
        # `posixrules`, `posix/...` and `right/...`, which DuckDB (whose views count a clinic's
        # weeks in its timezone) does not know
        if v not in _iana_timezones() or v == "localtime":
            raise ValueError(f"unknown IANA timezone {v!r} (e.g. Europe/Berlin)")
        return v

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v: str) -> str:
        if v == EXCEL_SERIAL:
            return v
        # the month as a number (%m) or a name (%b: Apr, APR as SPSS writes; %B: April)
        if (
            not any(d in v for d in ("%d", "%j"))
            or not any(m in v for m in ("%m", "%b", "%B"))
            and "%j" not in v
            or "%Y" not in v
        ):
            raise ValueError(
                f"{v!r} is not a full date format; use strftime codes with %Y, %m (or %b) and "
                "%d, e.g. %d.%m.%Y"
            )
        probe = dt.date(2024, 11, 23)
        try:
            if dt.datetime.strptime(probe.strftime(v), v).date() != probe:
                raise ValueError
        except ValueError:
            raise ValueError(f"{v!r} does not round-trip a date; e.g. %d.%m.%Y") from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _delim(cls, v: str) -> str:
        if len(v) != 1:
            raise ValueError("must be a single character, e.g. ',' or ';'")
        return v

    @field_validator("encoding")
    @classmethod
    def _enc(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}; e.g. utf-8 or latin-1") from None
        return v

    @field_validator("code_pattern", "client_code_pattern", "clinician_code_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_mapping(v, MEASURE_KEYS)

    @field_validator("appointment_columns")
    @classmethod
    def _appointment_columns(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_mapping(v, APPOINTMENT_KEYS)

    @field_validator("status_values")
    @classmethod
    def _status_values(cls, v: dict[str, str]) -> dict[str, str]:
        for word, status in v.items():
            if status not in APPOINTMENT_STATUSES:
                raise ValueError(
                    f"{word!r} maps to {status!r}; map it to one of {', '.join(APPOINTMENT_STATUSES)}"
                )
        return v

    @field_validator("instrument_values")
    @classmethod
    def _instrument_values(cls, v: dict[str, str]) -> dict[str, str]:
        for label, code in v.items():
            if code not in INSTRUMENTS:
                raise ValueError(
                    f"{label!r} maps to {code!r}; map it to one of {', '.join(INSTRUMENTS)}"
                )
        return v

    @field_validator("clinicians")
    @classmethod
    def _clinicians(cls, v: dict[str, str]) -> dict[str, str]:
        for code, email in v.items():
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                raise ValueError(f"the address for clinician {code!r} is not an email address")
        return v

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, v: dict[str, str]) -> dict[str, str]:
        return _known_instruments(v)

    @field_validator("instrument")
    @classmethod
    def _instrument(cls, v: str | None) -> str | None:
        if v is not None:
            _known_instruments({v: v})
        return v

    @field_validator("keep_rows")
    @classmethod
    def _keep_rows(cls, v: list[str]) -> list[str]:
        return _conditions(v)

    @field_validator("fill_from_client")
    @classmethod
    def _fill_from_client(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in FILL_FROM_CLIENT_KEYS:
                raise ValueError(
                    f"{c!r} cannot be filled from the client's other rows; use "
                    f"{', '.join(FILL_FROM_CLIENT_KEYS)}"
                )
        return v

    @field_validator("item_values")
    @classmethod
    def _item_values(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for code, answers in v.items():
            ins = INSTRUMENTS.get(code)
            if ins is None:
                raise ValueError(
                    f"{code!r} is not an instrument; key item_values by one of "
                    f"{', '.join(INSTRUMENTS)}"
                )
            if not answers:
                raise ValueError(f"item_values.{code} lists no answers")
            folded: dict[str, str] = {}
            for answer, score in answers.items():
                if not answer.strip():
                    raise ValueError(f"item_values.{code}: an answer is blank")
                key = answer.strip().lower()
                if key in folded:
                    raise ValueError(
                        f"item_values.{code}: {folded[key]!r} and {answer!r} are the same answer "
                        "(compared trimmed, case-insensitive)"
                    )
                folded[key] = answer
                if not ins.item_min <= score <= ins.item_max:
                    raise ValueError(
                        f"item_values.{code}: {answer!r} scores {score:g}, outside the "
                        f"{code} item range {ins.item_min:g}-{ins.item_max:g}"
                    )
        return v

    @field_validator("allow_total_only")
    @classmethod
    def _total_only(cls, v: list[str]) -> list[str]:
        for code in v:
            if code not in TOTAL_ONLY_INSTRUMENTS:
                raise ValueError(
                    f"{code!r} cannot be loaded without items; allow_total_only takes the "
                    f"instruments scored by hand on paper: {', '.join(TOTAL_ONLY_INSTRUMENTS)}"
                )
        return v

    @model_validator(mode="after")
    def _layout(self) -> ClinicConfig:
        if self.layout == "wide" and self.wide is None:
            raise ValueError("layout: wide needs a 'wide:' section with the instrument prefixes")
        if self.format == "reference" and (
            self.layout != "long" or self.columns or self.appointment_columns
        ):
            raise ValueError(
                "format: reference is the long layout with the reference headers; "
                "use format: custom to map columns or use a wide layout"
            )
        if self.instrument is not None and (self.layout != "long" or "instrument" in self.columns):
            raise ValueError(
                "instrument: names the one instrument of a long file without an instrument "
                "column; remove columns.instrument (or the instrument: key), and in a wide "
                "layout name the instruments under wide.blocks"
            )
        if self.session_number_from is not None and "session_number" in self.columns:
            raise ValueError(
                "give the session number either as a column (columns.session_number) or "
                "derived (session_number_from), not both"
            )
        if self.files:
            given = sorted({"measures_pattern", "appointments_pattern"} & self.model_fields_set)
            if given:
                raise ValueError(
                    f"with files: each file kind has its own pattern (files[].pattern); "
                    f"remove {', '.join(given)}"
                )
            for i, spec in enumerate(self.files):
                try:
                    self._for_spec(spec)
                except ValidationError as e:
                    first = e.errors()[0]
                    key = ".".join(str(p) for p in first["loc"])
                    msg = first["msg"].removeprefix("Value error, ")
                    raise ValueError(f"files.{i}{'.' + key if key else ''}: {msg}") from None
        if self.layout == "wide":
            extra = sorted(set(self.columns) - set(WIDE_KEYS))
            if extra:
                raise ValueError(
                    f"layout: wide takes only {', '.join(WIDE_KEYS)} under 'columns:' "
                    f"(not {', '.join(extra)}); instrument columns go under 'wide:'"
                )
        return self

    def _for_spec(self, spec: FileSpec) -> ClinicConfig:
        data = self.model_dump(exclude={"files"})
        for key in FILE_SPEC_KEYS:
            value = getattr(spec, key)
            if value is None:
                continue
            if key == "columns" and spec.dataset == "appointments":
                key = "appointment_columns"
            elif key == "columns":
                value = {**data["columns"], **value}  # the file's columns over the clinic's
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        if spec.dataset == "measures" and spec.instrument is None and spec.layout == "wide":
            data["instrument"] = None
        data["measures_pattern"] = spec.pattern if spec.dataset == "measures" else ""
        data["appointments_pattern"] = spec.pattern if spec.dataset == "appointments" else ""
        return ClinicConfig.model_validate(data)

    def file_kinds(self) -> list[tuple[str, str]]:
        """(pattern, dataset) of every kind of file the clinic delivers, in matching order."""
        if self.files:
            return [(s.pattern, s.dataset) for s in self.files]
        return [(self.measures_pattern, "measures"), (self.appointments_pattern, "appointments")]

    def reader_for(self, name: str) -> tuple[str, ClinicConfig] | None:
        """(dataset, the config to read the file with) for a delivered file name, or None when
        no pattern matches. With `files:`, the first entry whose pattern matches, its keys over
        the clinic's; without, the top-level patterns and this config."""
        import fnmatch

        if not self.files:
            for pattern, dataset in self.file_kinds():
                if pattern and fnmatch.fnmatch(name, pattern):
                    return dataset, self
            return None
        for spec in self.files:
            if fnmatch.fnmatch(name, spec.pattern):
                return spec.dataset, self._for_spec(spec)
        return None

    def source_column(self, dataset: str, canonical: str) -> str:
        """The clinic's header for a canonical column (the canonical name when not mapped)."""
        mapping = self.columns if dataset == "measures" else self.appointment_columns
        return mapping.get(canonical, canonical)

    def declared_code_pattern(self, column: str) -> str | None:
        """The pattern the clinic declared for a code column (client_id or clinician_id), or
        None when it relies on the default."""
        own = self.client_code_pattern if column == "client_id" else self.clinician_code_pattern
        return own if own is not None else self.code_pattern

    def code_pattern_for(self, column: str) -> str:
        """The pattern a code column's values must match: declared, else the default."""
        return self.declared_code_pattern(column) or DEFAULT_CODE_PATTERN

    def instrument_version(self, code: str) -> str:
        return self.instruments.get(code, INSTRUMENTS[code].default_version)


def _known_instruments(v: dict[str, Any]) -> dict[str, Any]:
    """A config mapping keyed by instrument code: every key must be a registry instrument."""
    for code in v:
        if code not in INSTRUMENTS:
            raise ValueError(f"unknown instrument {code!r}; use one of {', '.join(INSTRUMENTS)}")
    return v


def _check_mapping(v: dict[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    for key, header in v.items():
        if key not in allowed:
            raise ValueError(f"{key!r} is not a canonical column; map one of {', '.join(allowed)}")
        if not isinstance(header, str) or not header.strip():
            raise ValueError(f"{key!r} must map to the clinic's column header (a non-empty text)")
    if len(set(v.values())) != len(v):
        raise ValueError("two canonical columns map to the same header; each needs its own")
    return v


def _format_pydantic_error(file: str, err: ValidationError) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        problem = "unknown key; remove it or check its spelling (see docs/clinic-onboarding.md)"
    elif kind == "missing":
        problem = "required key is missing"
    else:
        problem = first["msg"].removeprefix("Value error, ")
    return ConfigError(file, key, problem)


def parse_clinic_config(data: Any, file: str) -> ClinicConfig:
    """Validate one config mapping; raise ConfigError naming `file` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(file, "(top level)", "must be a YAML mapping of keys to values")
    try:
        cfg = ClinicConfig.model_validate(data)
    except ValidationError as e:
        raise _format_pydantic_error(file, e) from None
    stem = Path(file).stem
    if stem != cfg.clinic_id:
        raise ConfigError(file, "clinic_id", f"must match the file name ({stem!r})")
    return cfg


def load_clinic_config(path: Path) -> ClinicConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        raise ConfigError(str(path), where, "is not valid YAML") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "(file)", f"cannot be read: {type(e).__name__}") from None
    return parse_clinic_config(data, str(path))


def config_path(config_dir: Path, clinic_id: str) -> Path:
    """A clinic's config file: `clinics/<id>.yaml`, or `.yml` (both are read as configs)."""
    yaml_path = config_dir / "clinics" / f"{clinic_id}.yaml"
    yml_path = yaml_path.with_suffix(".yml")
    return yml_path if not yaml_path.exists() and yml_path.exists() else yaml_path


def load_clinic_configs(config_dir: Path) -> tuple[dict[str, ClinicConfig], list[ConfigError]]:
    """Every `clinics/*.yaml` under `config_dir`: the valid configs and the errors, apart."""
    clinics_dir = config_dir / "clinics"
    if not clinics_dir.is_dir():
        raise ConfigError(
            str(clinics_dir), "(folder)", "does not exist; expected clinics/<id>.yaml"
        )
    good: dict[str, ClinicConfig] = {}
    errors: list[ConfigError] = []
    for path in sorted(clinics_dir.glob("*.y*ml")):
        try:
            cfg = load_clinic_config(path)
        except ConfigError as e:
            errors.append(e)
            continue
        good[cfg.clinic_id] = cfg
    return good, errors


def config_fingerprint(cfg: ClinicConfig) -> str:
    """A short, stable fingerprint of everything in a clinic config that decides how its files
    are read and judged (recorded per file so a corrected config re-offers rejected files)."""
    import hashlib

    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
