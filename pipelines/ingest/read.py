"""Readers: a clinic's delivered file -> raw string table with canonical names -> typed canonical.

Two steps, so that the de-identification guard sees every value exactly as delivered:

* `read_raw` parses the file with every column as a string, checks file-level problems (empty,
  header only, wrong delimiter, missing column, undecodable bytes, truncated, oversized field,
  compressed) and raises `FileRejected` with a specific reason; it never returns a partial file.
* `canonicalize` casts the raw strings to the canonical Arrow schema, vectorized, and reports
  every value it cannot cast as a row issue (never coerced to null in silence, never imputed).

What a clinic config may vary (docs/clinic-onboarding.md): CSV or Parquet, delimiter, encoding,
decimal comma, date format, column names (`columns:`), instrument labels (`instrument_values:`),
status words (`status_values:`), and the long or wide layout. A wide line is melted to one
canonical row per instrument block that has any value; a block blank on a line means the measure
was not administered at that session.

Memory: CSV files are parsed by pyarrow in blocks into one Arrow table; every later step works on
whole columns. Streaming (``pyarrow.csv.open_csv`` batches through `_finish` and `canonicalize`,
which are column-wise and row-local) is a contained change when files outgrow memory.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines import registry
from pipelines.canonical import (
    REFERENCE_APPOINTMENT_COLUMNS,
    REFERENCE_MEASURE_COLUMNS,
    SCHEMAS,
)
from pipelines.config import (
    EXCEL_SERIAL,
    WIDE_KEYS,
    ClinicConfig,
    condition_values,
    parse_condition,
)
from pipelines.errors import FileRejected
from pipelines.ingest.guard import identifying_headers, shown_header
from pipelines.issues import empty_issues

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
PARQUET_MAGIC = b"PAR1"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 .xls (a compound file)
REQUIRED = {
    "measures": ("client_id", "clinician_id", "session_date", "session_number", "instrument"),
    "appointments": REFERENCE_APPOINTMENT_COLUMNS,
}
OPTIONAL = {
    "measures": (
        *(c for c in REFERENCE_MEASURE_COLUMNS if c.startswith("item_")),
        "total",
        "episode_id",
    ),
    "appointments": (),
}


@dataclass
class RawFile:
    """A delivered file as strings, renamed to canonical column names."""

    dataset: str
    header: list[str]
    table: pa.Table  # all string columns + source_line (int64)
    ignored_columns: list[str] = field(default_factory=list)
    # physical lines (header = 1) whose field count differs from the header's: not in `table`,
    # quarantined whole by ingest (their values are not shown: the columns cannot be told apart)
    malformed_lines: list[int] = field(default_factory=list)
    # rows not taken in, by reason: blank lines, rows a `keep_rows` condition excludes
    filtered: dict[str, int] = field(default_factory=dict)
    # row issues found while reading (a session number that cannot be derived); rows index
    # into `table`
    issues: pd.DataFrame | None = None
    # each `keep_rows` condition: (rows it was put to, rows it held on); see unmet_keep_rows
    keep_rows_checks: dict[str, tuple[int, int]] = field(default_factory=dict)


def _issues(rows: np.ndarray, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"row": rows.astype("int64"), "reason": reason})


def _sniff_delimiter(first_line: str, expected: str) -> str | None:
    for cand in (";", "\t", "|", ","):
        if cand != expected and first_line.count(cand) >= 2 and first_line.count(expected) == 0:
            return cand
    return None


def _header_names(first_line: str, delimiter: str) -> list[str]:
    """The column names of a CSV header line (without its line ending), as the CSV reader will
    see them."""
    import csv

    try:
        return next(csv.reader([first_line.removeprefix("\ufeff")], delimiter=delimiter), [])
    except csv.Error:
        raise FileRejected(
            "unparseable",
            "line 1 cannot be read as a header of column names; export a CSV whose first line "
            "names the columns",
        ) from None


def read_raw(path: Path, dataset: str, cfg: ClinicConfig, part_of_file: bool = False) -> RawFile:
    """Parse `path` as strings; raise FileRejected for any file-level problem.

    ``part_of_file``: `path` is one part of a larger file (ingest reads a large CSV in parts).
    A `keep_rows` condition that holds on none of the part's rows is then no verdict on the
    file (a part may hold nothing but survey previews): the part's rows are filtered, and the
    file is judged on the sum of its parts' `keep_rows_checks` (`unmet_keep_rows`)."""
    raw = _read_raw(path, dataset, cfg)
    if not part_of_file:
        rejection = unmet_keep_rows(raw.keep_rows_checks)
        if rejection is not None:
            raise rejection
    return raw


def unmet_keep_rows(checks: dict[str, tuple[int, int]]) -> FileRejected | None:
    """`nothing_kept` for the first `keep_rows` condition that was put to rows and held on none
    of them (checks: condition -> (rows it was put to, rows it held on), over a file or the sum
    of its parts); None when each held somewhere."""
    for text, (put_to, held) in checks.items():
        if put_to and not held:
            # no row meets it: a config that does not fit the export (Qualtrics' "numeric
            # values" write Finished as 1, not True), not a file of rows to set aside
            column = parse_condition(text)[0]
            return FileRejected(
                "nothing_kept",
                f"keep_rows {text!r} holds on none of the file's {put_to} rows; check "
                f"the values your export writes in {column!r} (a code or its label, e.g. 1 or "
                "True) and list them all: '<column> in (<value>, <value>)'",
            )
    return None


def _read_raw(path: Path, dataset: str, cfg: ClinicConfig) -> RawFile:
    if path.is_symlink() or not path.is_file():
        raise FileRejected("not_a_regular_file", f"{path.name} is not a regular file; not read")
    size = path.stat().st_size
    if size == 0:
        raise FileRejected("empty", "the file has no bytes; re-send the export")
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    save_as_csv = (
        "not a CSV file; open it in Excel and save it with 'Save As' -> 'CSV UTF-8 (Comma "
        "delimited)' (or export CSV from the system that wrote it)"
    )
    if head.startswith(ZIP_MAGIC) and (b"[Content_Types].xml" in head or b"xl/" in head):
        # an .xlsx/.xlsm workbook is a zip: say what it is, not only that it is compressed
        raise FileRejected("compressed", f"the file is an Excel workbook (.xlsx), {save_as_csv}")
    if head.startswith(OLE2_MAGIC):
        # Excel 97-2003 (.xls) is an OLE2 compound file: its bytes would read as "not valid
        # UTF-8", which sends the data team to the wrong setting
        raise FileRejected(
            "unparseable", f"the file is an Excel 97-2003 workbook (.xls), {save_as_csv}"
        )
    if head.startswith(GZIP_MAGIC) or head.startswith(ZIP_MAGIC):
        raise FileRejected(
            "compressed",
            "the file is gzip/zip compressed; deliver plain CSV (or Parquet) files",
        )
    # Parquet is recognised by its magic bytes whatever the config says: the reference format
    # allows "CSV (or Parquet with the same columns)" with the 3-key config.
    if cfg.file_type == "parquet" or head.startswith(PARQUET_MAGIC):
        table = _read_parquet(path)
        return _finish(path, dataset, cfg, table, list(table.column_names), [], "", size, False)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and not _is_utf16(cfg.encoding):
        # Excel's "Unicode Text" and some tools' "Unicode" CSVs: a UTF-16 byte-order mark says
        # what the encoding is, whatever the config says
        cfg = cfg.model_copy(update={"encoding": "utf-16"})
    try:
        # a line ends at LF, CRLF or (Excel's "CSV (Macintosh)") a lone CR, as for the reader
        if _is_utf16(cfg.encoding):  # two bytes a character: split the decoded text
            text = head[: len(head) // 2 * 2].decode(cfg.encoding, errors="ignore")
            first_line = text.split("\n", 1)[0].split("\r", 1)[0]
        else:
            first_line = head.split(b"\n", 1)[0].split(b"\r", 1)[0].decode(cfg.encoding)
    except UnicodeDecodeError:
        raise FileRejected(
            "undecodable_bytes", f"line 1 is not valid {cfg.encoding}; export as {cfg.encoding}"
        ) from None
    if not first_line.strip():
        raise FileRejected("empty", "the first line is blank; expected a header")

    invalid_texts: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # pyarrow gives no line number here; the text lets us find it (error path only)
        invalid_texts.append(row.text)
        return "skip"

    def parse(newlines_in_values: bool) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                encoding=cfg.encoding,
                block_size=max(1 << 22, cfg.max_field_bytes * 4),
                skip_rows_after_names=cfg.header_rows,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=cfg.delimiter,
                newlines_in_values=newlines_in_values,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                # as text, as delivered: inferred as numbers, "0012" would come back as "12"
                column_types=dict.fromkeys(_header_names(first_line, cfg.delimiter), pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                auto_dict_encode=False,
                check_utf8=True,
            ),
        )

    record_lines: np.ndarray | None = None
    try:
        table = parse(newlines_in_values=False)
        if invalid_texts and b'"' in head + _tail(path):
            # Quoted values with line breaks (Qualtrics' question texts in its header rows, a
            # free-text answer): read again allowing them; each record's line is then where it
            # starts. Only files with lines of the wrong field count pay for this.
            kept = list(invalid_texts)
            invalid_texts.clear()
            retry = parse(newlines_in_values=True)
            if len(invalid_texts) < len(kept):
                table = retry
                record_lines = _record_start_lines(path, cfg, table.num_rows + len(invalid_texts))
            else:
                invalid_texts[:] = kept
    except pa.ArrowInvalid as e:
        msg = str(e)
        if "UTF8" in msg or "utf8" in msg.lower():
            raise FileRejected(
                "undecodable_bytes",
                f"the file is not valid {cfg.encoding}; export as {cfg.encoding}",
            ) from None
        if "straddling" in msg or "block" in msg:
            raise FileRejected(
                "oversized_field",
                f"a field exceeds {cfg.max_field_bytes} bytes; no export field should be that long",
            ) from None
        raise FileRejected("unparseable", "the file could not be parsed as CSV") from None
    # Every column as string: the guard must see values as delivered. pyarrow infers a
    # column with bytes that are not UTF-8 as binary; the cast then fails: reject the file.
    cols: dict[str, pa.ChunkedArray] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if col.type == pa.string():
            cols[name] = col
            continue
        try:
            cols[name] = pc.cast(col, pa.string())
        except pa.ArrowInvalid:
            raise FileRejected(
                "undecodable_bytes",
                f"line {_first_undecodable_line(col, cfg.encoding)} (column "
                f"{shown_header(table.column_names, len(cols))!r}) is not "
                f"valid {cfg.encoding}; export the file as {cfg.encoding}",
            ) from None
    _check_duplicate_names(table.column_names, dataset, cfg)
    table = pa.table(cols)
    header = list(table.column_names)
    invalid = (
        _locate_lines(path, cfg.encoding, invalid_texts, 1 + cfg.header_rows)
        if invalid_texts
        else []
    )
    if invalid and record_lines is not None:
        record_lines = None  # numbered as physical lines, as `_locate_lines` numbers them
    return _finish(path, dataset, cfg, table, header, invalid, first_line, size, True, record_lines)


def _is_utf16(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "").startswith("utf16")


def _tail(path: Path, n: int = 64 * 1024) -> bytes:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - n))
        return fh.read()


def _record_start_lines(path: Path, cfg: ClinicConfig, n: int) -> np.ndarray | None:
    """The physical line (header = 1) each data record starts on, when quoted values span
    lines; None when the records cannot be told apart the same way (then they are numbered
    as if one line each)."""
    import csv

    starts: list[int] = []
    with path.open("r", encoding=cfg.encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=cfg.delimiter)
        line = 1
        i = 0
        for record in reader:
            if record:  # the CSV reader, like pyarrow, skips empty lines
                if i > cfg.header_rows:
                    starts.append(line)
                i += 1
            line = reader.line_num + 1
    if len(starts) != n:
        return None
    return np.asarray(starts, dtype=np.int64)


def _config_columns(dataset: str, cfg: ClinicConfig) -> set[str]:
    """The file's headers the config names: mapped columns, wide block columns and the columns
    of conditions and of the session number."""
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    named = set(mapping.values())
    named |= {parse_condition(c)[0] for c in cfg.keep_rows}
    if dataset == "measures" and cfg.wide is not None and cfg.layout == "wide":
        named |= set(cfg.wide.own_dates().values())
        for code, (items, total) in cfg.wide.resolved().items():
            named |= {*items, *([total] if total else [])}
            block = cfg.wide.blocks.get(code)
            named |= {parse_condition(c)[0] for c in (block.keep_rows if block else [])}
    if dataset == "measures" and cfg.session_number_from and cfg.session_number_from.column:
        named.add(cfg.session_number_from.column)
    return named


def _check_duplicate_names(names: list[str], dataset: str, cfg: ClinicConfig) -> None:
    """A header name the config uses must be one column: REDCap's labels export names every
    form's status column "Complete?", and a condition on it would read one of them, unsaid."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    used = _config_columns(dataset, cfg)
    twice = [n for n, k in seen.items() if k > 1 and n in used]
    if twice:
        shown = ", ".join(
            f"{shown_header(names, names.index(n))!r} ({seen[n]} times)" for n in twice
        )
        raise FileRejected(
            "duplicate_column",
            f"the header has {shown}, which the config uses: it cannot tell which one is meant; "
            "export with unique column names (REDCap: the raw export with variable names, "
            "not labels)",
        )


def _locate_lines(path: Path, encoding: str, texts: list[str], header_lines: int = 1) -> list[int]:
    """1-based physical line numbers of the records pyarrow skipped, in file order.

    Only runs when a file has malformed lines, so a plain line scan is fine here."""
    found: list[int] = []
    pending = list(texts)
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if not pending:
                break
            if number > header_lines and line.rstrip("\r\n") == pending[0]:
                found.append(number)
                pending.pop(0)
    return found + [-1] * len(pending)


def _first_undecodable_line(col: pa.ChunkedArray, encoding: str) -> int:
    """The 1-based file line (header = 1) of the first value that does not decode (error path
    only, so a loop is fine); 0 when it cannot be located."""
    for i, value in enumerate(col.to_pylist()):
        if isinstance(value, bytes):
            try:
                value.decode(encoding)
            except UnicodeDecodeError:
                return i + 2
    return 0


def _read_parquet(path: Path) -> pa.Table:
    """A Parquet file with every column as its text (dates ISO, numbers shortest round-trip)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        raise FileRejected(
            "unparseable", "the file is not a readable Parquet file; re-export it"
        ) from None
    cols: dict[str, pa.ChunkedArray] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        typ = col.type
        if pa.types.is_dictionary(typ):
            col = pc.cast(col, typ.value_type)
            typ = typ.value_type
        if pa.types.is_nested(typ) or pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
            raise FileRejected(
                "unsupported_column_type",
                f"column {name!r} holds nested or binary values; deliver plain text or numbers",
            )
        if pa.types.is_date(typ):
            col = pc.strftime(pc.cast(col, pa.timestamp("s")), format="%Y-%m-%d")
        # Nulls become blank text, as an empty CSV field would be.
        cols[name] = pc.fill_null(pc.cast(col, pa.string()), "")
    if len(set(table.column_names)) != len(table.column_names):
        raise FileRejected("duplicate_column", "two columns have the same name; rename one")
    return pa.table(cols)


BLANK_ROW = "blank_row: every field of the line is blank (a spreadsheet's leftover row)"


def _filtered_reason(condition: str, where: str) -> str:
    """The reason a row a `keep_rows` condition excludes is counted under (the condition as
    configured, never a value of the file)."""
    return f"filtered: {where} {condition!r} not met"


def _required(dataset: str, cfg: ClinicConfig, wide: bool) -> tuple[str, ...]:
    """The canonical columns the file itself must have under this config."""
    if dataset != "measures":
        return REQUIRED[dataset]
    derived = {"session_number"} if cfg.session_number_from is not None else set()
    if wide or cfg.instrument is not None:
        derived.add("instrument")
    # every block reads its own date column: no shared one is needed
    if (
        wide
        and cfg.wide is not None
        and "session_date" not in cfg.columns
        and set(cfg.wide.own_dates()) == set(cfg.wide.resolved())
    ):
        derived.add("session_date")
    return tuple(c for c in (*WIDE_KEYS[:4], "instrument") if c not in derived)


def _missing_message(dataset: str, cfg: ClinicConfig, missing: list[tuple[str, str]]) -> str:
    """One line per set of missing headers, each naming the config key that fixes it (never a
    data value). `missing`: (kind, what) pairs: ("mapped", canonical), ("required",
    canonical), ("wide", message), ("other", message)."""
    key = "columns" if dataset == "measures" else "appointment_columns"
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    mapped = [c for kind, c in missing if kind == "mapped"]
    required = [c for kind, c in missing if kind == "required"]
    parts = []
    if mapped:
        listed = ", ".join(f"{key}.{c} maps to {mapping[c]!r}" for c in mapped)
        parts.append(f"{listed}, which the file does not have; fix the header names under {key}:")
    if required:
        hint = f"map each to your header under {key}: (e.g. {key}.{required[0]}: <header>)"
        if "instrument" in required:
            hint += ", or set instrument: <code> when the file holds one instrument"
        if "session_number" in required:
            hint += ", or derive it with session_number_from:"
        parts.append(f"required column(s) {', '.join(required)} missing; {hint}")
    parts += [what for kind, what in missing if kind in ("wide", "other")]
    return " | ".join(parts)


def _missing_columns(
    dataset: str,
    cfg: ClinicConfig,
    header: list[str],
    renamed: list[str],
    required: tuple[str, ...],
    blocks: dict[str, tuple[list[str], str | None]],
) -> list[tuple[str, str]]:
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    have = set(header)
    missing: list[tuple[str, str]] = [
        ("mapped" if c in mapping else "required", c) for c in required if c not in renamed
    ]
    # A mapped optional column (an item, the total, the episode) is a promise of the config too.
    missing += [("mapped", c) for c in mapping if c not in required and mapping[c] not in have]
    own_dates = cfg.wide.own_dates() if cfg.wide is not None and blocks else {}
    for code, (items, total) in blocks.items():
        absent = [f"{j + 1} ({h!r})" for j, h in enumerate(items) if h not in have]
        if total is not None and total not in have:
            absent.append(f"the total ({total!r})")
        if code in own_dates and own_dates[code] not in have:
            absent.append(f"the session date ({own_dates[code]!r})")
        if absent:
            missing.append(
                (
                    "wide",
                    f"wide.blocks.{code}: item(s) {', '.join(absent)} not in the file; fix the "
                    f"headers under wide.blocks.{code} (or wide.prefixes)",
                )
            )
    conditions = [(c, "keep_rows") for c in cfg.keep_rows]
    if cfg.wide is not None and dataset == "measures":
        conditions += [
            (c, f"wide.blocks.{code}.keep_rows")
            for code, block in cfg.wide.blocks.items()
            for c in block.keep_rows
        ]
    for text, where in conditions:
        column = parse_condition(text)[0]
        if column not in have:
            missing.append(
                ("other", f"{where}: the file has no column {column!r} (in {text!r}); fix {where}")
            )
    snf = cfg.session_number_from
    if dataset == "measures" and snf is not None and snf.column and snf.column not in have:
        missing.append(
            (
                "other",
                f"session_number_from.column: the file has no column {snf.column!r}; fix "
                "session_number_from.column",
            )
        )
    return missing


def _text_eq(col: pa.ChunkedArray | pa.Array, value: str) -> np.ndarray:
    """Cells equal to `value` after trimming, case folded (vectorized, on distinct values)."""
    values_d, idx = _distinct(col)
    same = pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(values_d)), value.strip().lower())
    return np.asarray(pc.take(pc.fill_null(same, False), idx).to_numpy(zero_copy_only=False))


def _condition_holds(table: pa.Table, text: str) -> np.ndarray:
    column, op, value = parse_condition(text)
    eq = np.zeros(table.num_rows, dtype=bool)
    for v in condition_values(op, value):
        eq |= _text_eq(table.column(column), v)
    return eq if op in ("==", "in") else ~eq


def _blank_rows(table: pa.Table) -> np.ndarray:
    """Lines whose every field is blank. The first column is checked first: in the usual file
    none is blank and nothing more is read."""
    n = table.num_rows
    if n == 0 or table.num_columns == 0:
        return np.zeros(n, dtype=bool)
    first = table.column(0)
    # no string is built here: the usual file has no blank first field and is done
    blank = np.asarray(
        pc.or_(pc.equal(pc.binary_length(first), 0), pc.utf8_is_space(first)).to_numpy(
            zero_copy_only=False
        ),
        dtype=bool,
    )
    if not blank.any():
        return blank
    rows = pa.array(np.flatnonzero(blank))
    sub = table.take(rows)
    every = np.ones(len(rows), dtype=bool)
    for col in sub.columns[1:]:
        every &= _text_eq(col, "")
    out = np.zeros(n, dtype=bool)
    out[np.flatnonzero(blank)[every]] = True
    return out


SESSION_SOURCE = "_session_source"


def _derive_session_numbers(
    table: pa.Table, cfg: ClinicConfig
) -> tuple[pa.Table, pd.DataFrame | None]:
    """The `session_number` column from `session_number_from.column` (pattern, values or the
    number as it is); rows it cannot be derived for get a blank number and an issue."""
    snf = cfg.session_number_from
    assert snf is not None and snf.column is not None
    values_d, idx = _distinct(table.column(SESSION_SOURCE))
    texts = values_d.to_pylist()
    out: list[str | None] = []
    how = "session_number_from"
    if snf.pattern is not None:
        rx = re.compile(snf.pattern)
        for t in texts:
            m = rx.search(t.strip()) if t is not None else None
            g = m.group(1) if m is not None else None
            out.append(g if g is not None and g.strip().isdigit() else None)
        how = "session_number_from.pattern"
    elif snf.values:
        folded = {k.strip().lower(): str(v) for k, v in snf.values.items()}
        out = [folded.get(t.strip().lower()) if t is not None else None for t in texts]
        how = "session_number_from.values"
    else:
        out = [t.strip() if t is not None and t.strip() else None for t in texts]
    derived = pc.take(pa.array(out, pa.string()), idx)
    bad = np.flatnonzero(~np.asarray(pc.is_valid(derived).to_numpy(zero_copy_only=False)))
    table = table.drop_columns([SESSION_SOURCE])
    i = table.schema.get_field_index("session_number")
    filled = pc.fill_null(derived, "")
    if i >= 0:
        table = table.set_column(i, "session_number", filled)
    else:
        table = table.append_column("session_number", filled)
    if not len(bad):
        return table, None
    return table, _issues(
        bad,
        f"session_number_underivable: {snf.column!r} gives no session number under {how}; "
        f"extend {how} (or fix the export)",
    )


def _finish(
    path: Path,
    dataset: str,
    cfg: ClinicConfig,
    table: pa.Table,
    header: list[str],
    invalid: list[int],
    first_line: str,
    size: int,
    is_csv: bool,
    record_lines: np.ndarray | None = None,
) -> RawFile:
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    inverse = {src: canon for canon, src in mapping.items()}
    renamed = [inverse.get(h, h) for h in header]
    wide = dataset == "measures" and cfg.layout == "wide" and cfg.wide is not None
    required = _required(dataset, cfg, wide)
    blocks = cfg.wide.resolved() if wide and cfg.wide is not None else {}
    missing = _missing_columns(dataset, cfg, header, renamed, required, blocks)
    if missing:
        other = _sniff_delimiter(first_line, cfg.delimiter) if is_csv else None
        if other is not None:
            raise FileRejected(
                "wrong_delimiter",
                f"the header is separated by {other!r}, the clinic config says {cfg.delimiter!r} "
                "(delimiter:)",
            )
        raise FileRejected("missing_column", _missing_message(dataset, cfg, missing))
    if table.num_rows == 0 and not invalid:
        raise FileRejected("header_only", "the file has a header but no data rows")
    ends_with_newline = True
    if is_csv:
        with path.open("rb") as fh:
            fh.seek(max(0, size - 1))
            ends_with_newline = fh.read(1) == b"\n"
    if invalid and not ends_with_newline and invalid[-1] in (-1, max(invalid)):
        raise FileRejected(
            "truncated",
            "the last line is incomplete (too few fields, no final newline); re-send the whole file",
        )
    for i, col in enumerate(table.columns):
        if len(col) and pc.max(pc.binary_length(col)).as_py() > cfg.max_field_bytes:
            raise FileRejected(
                "oversized_field",
                f"a field in column {shown_header(header, i)!r} exceeds "
                f"{cfg.max_field_bytes} bytes",
            )
    if invalid and min(invalid) < 0:
        raise FileRejected(
            "wrong_field_count",
            "some lines have a different number of fields than the header and could not be "
            "located; check the export's quoting",
        )
    optional = ("episode_id",) if wide else OPTIONAL[dataset]
    known = set(required) | set(optional)
    block_headers = {h for items, total in blocks.values() for h in (*items, total) if h}
    helpers = {parse_condition(c)[0] for c in cfg.keep_rows}
    helpers |= {
        parse_condition(c)[0]
        for code, (_items, _total) in blocks.items()
        for c in (cfg.wide.blocks[code].keep_rows if cfg.wide and code in cfg.wide.blocks else [])
    }
    if wide and cfg.wide is not None:
        helpers |= set(cfg.wide.own_dates().values())
    snf = cfg.session_number_from if dataset == "measures" else None
    if snf is not None and snf.column:
        helpers.add(snf.column)
    keep = [i for i, c in enumerate(renamed) if c in known]
    ignored = [
        shown_header(header, i)
        for i, c in enumerate(renamed)
        if c not in known and header[i] not in block_headers and header[i] not in helpers
    ]
    # Physical line of each record: the CSV line (header = line 1, then `header_rows` extra
    # header lines), accounting for skipped invalid lines; in Parquet the same numbering (row 1
    # = "line" 2) so quarantine reports read alike.
    n = table.num_rows
    lines = np.arange(n, dtype=np.int64) + 2 + (cfg.header_rows if is_csv else 0)
    if record_lines is not None and len(record_lines) == n:
        lines = record_lines
    skipped = np.sort(np.array([i for i in invalid if i >= 0], dtype=np.int64))
    if len(skipped):
        # shift each record past the invalid lines that precede it
        for s in skipped:
            lines = np.where(lines >= s, lines + 1, lines)
    # Rows not taken in: blank spreadsheet lines and rows a `keep_rows` condition excludes,
    # each counted under its reason (never silently dropped).
    filtered: dict[str, int] = {}
    blank = _blank_rows(table)
    taken = ~blank
    if blank.any():
        filtered[BLANK_ROW] = int(blank.sum())
    checks: dict[str, tuple[int, int]] = {}
    for text in cfg.keep_rows:
        fails = taken & ~_condition_holds(table, text)
        checks[text] = (int(taken.sum()), int(taken.sum() - fails.sum()))
        if fails.any():
            filtered[_filtered_reason(text, "keep_rows")] = int(fails.sum())
            taken &= ~fails
    if not taken.all():
        mask = pa.array(taken)
        table = table.filter(mask)
        lines = lines[taken]
    out = table.select(keep).rename_columns([renamed[i] for i in keep])
    if snf is not None and snf.column:
        out = out.append_column(SESSION_SOURCE, table.column(snf.column))
    out = out.append_column("source_line", pa.array(lines, pa.int64()))
    for c in cfg.fill_from_client if dataset == "measures" else ():
        if c in out.column_names:
            out = out.set_column(out.schema.get_field_index(c), c, _fill_from_client(out, c))
    if wide:
        out = _melt_wide(out, table, blocks, cfg, filtered)
    elif dataset == "measures" and cfg.instrument is not None:
        out = out.append_column(
            "instrument", pa.repeat(pa.scalar(cfg.instrument, pa.string()), out.num_rows)
        )
    for c in optional:
        if c not in out.column_names:
            out = out.append_column(c, pa.repeat(pa.scalar("", pa.string()), out.num_rows))
    issues = None
    if snf is not None:
        if snf.column:
            out, issues = _derive_session_numbers(out, cfg)
        else:  # by the order of session dates: worked out once the dates are read
            out = out.append_column(
                "session_number", pa.repeat(pa.scalar("", pa.string()), out.num_rows)
            )
    if dataset == "measures" and cfg.item_values:
        out, unmapped = _item_answers(out, cfg)
        if unmapped is not None:
            issues = (
                unmapped if issues is None else pd.concat([issues, unmapped], ignore_index=True)
            )
    # A column whose name reads as an identifier but that is blank on every line holds none
    # (Qualtrics writes IPAddress, Recipient*, ExternalReference and Location* into every export,
    # empty for an anonymous survey): it is ignored, not judged. One value in it, and the header
    # check rejects the file.
    named = _config_columns(dataset, cfg)
    empty = {
        h
        for h in identifying_headers(header, cfg.safe_columns)
        if h not in named and h in table.column_names and _all_blank(table.column(h))
    }
    if empty:
        header = [h for h in header if h not in empty]
        ignored = [f"{h} (blank)" if h in empty else h for h in ignored]
    return RawFile(
        dataset=dataset,
        header=header,
        table=out,
        ignored_columns=ignored,
        malformed_lines=sorted(invalid),
        filtered=filtered,
        issues=issues,
        keep_rows_checks=checks,
    )


def _item_answers(table: pa.Table, cfg: ClinicConfig) -> tuple[pa.Table, pd.DataFrame | None]:
    """Items of the instruments under `item_values` read through their answers (trimmed,
    case-insensitive): each answer becomes its score. This runs before the guard, which then
    sees a score where the export wrote one of the clinic's declared answers ("Not at all": a
    label the config names, as the guard treats `status_values`); every other value stays as
    delivered, for the guard to judge, and its row is held back (`item_value_unmapped`): a
    number the answers do not list is not taken as it is (under Qualtrics' 1-4 codes a 0 would
    be scored wrong)."""
    instrument = _lookup(_blank_to_null(table.column("instrument")), cfg.instrument_values, False)
    codes = _numpy(pc.fill_null(pc.utf8_upper(instrument), ""))
    frames: list[pd.DataFrame] = []
    for code, answers in cfg.item_values.items():
        rows = codes == code
        if not rows.any():
            continue
        keys = pa.array([a.strip().lower() for a in answers], pa.string())
        scores = pa.array([f"{v:g}" for v in answers.values()], pa.string())
        for c in registry.INSTRUMENTS[code].item_columns:
            col = table.column(c)
            values_d, idx = _distinct(col)
            trimmed = pc.utf8_trim_whitespace(values_d)
            mapped_d = pc.take(scores, pc.index_in(pc.utf8_lower(trimmed), value_set=keys))
            present = _numpy(pc.take(pc.not_equal(trimmed, ""), idx)).astype(bool)
            found = _numpy(pc.take(pc.is_valid(mapped_d), idx)).astype(bool)
            unmapped = np.flatnonzero(rows & present & ~found)
            if len(unmapped):
                frames.append(
                    _issues(
                        unmapped,
                        f"item_value_unmapped: {c} of {code} is not one of the answers under "
                        f"item_values.{code}; add the answer there (or fix the export)",
                    )
                )
            use = pa.array(rows & found)
            value = pc.if_else(use, pc.take(mapped_d, idx), col.combine_chunks())
            table = table.set_column(table.schema.get_field_index(c), c, value)
    return table, (pd.concat(frames, ignore_index=True) if frames else None)


def _all_blank(col: pa.ChunkedArray) -> bool:
    longest = pc.max(pc.utf8_length(pc.utf8_trim_whitespace(col))).as_py()
    return longest is None or longest == 0


def _fill_from_client(out: pa.Table, column: str) -> pa.Array:
    """`column` with each blank cell filled from the same client's other rows, when they hold
    exactly one value (`fill_from_client`); a client with none or several keeps its blanks."""
    client = pc.utf8_trim_whitespace(out.column("client_id")).to_pandas()
    value = pc.utf8_trim_whitespace(out.column(column)).to_pandas()
    frame = pd.DataFrame({"client": client, "value": value})
    held = frame[(frame["value"] != "") & (frame["client"] != "")]
    counts = held.groupby("client")["value"].nunique()
    single = held[held["client"].isin(counts[counts == 1].index)]
    one = single.drop_duplicates("client").set_index("client")["value"]
    blank = (frame["value"] == "") & frame["client"].isin(one.index)
    filled = frame["value"].where(~blank, frame["client"].map(one))
    raw = out.column(column).to_pandas()
    return pa.array(raw.where(~blank, filled).tolist(), pa.string())


def _melt_wide(
    keys: pa.Table,
    table: pa.Table,
    blocks: dict[str, tuple[list[str], str | None]],
    cfg: ClinicConfig,
    filtered: dict[str, int],
) -> pa.Table:
    """One canonical row per instrument block with any non-blank cell, in file order.

    A block blank on a line = not administered; a partly blank block stays a row (with blank
    items) so that validation rejects it with its reason. A block's own `keep_rows` conditions
    filter its entries (counted in `filtered`).
    """
    n = keys.num_rows
    blank = pa.repeat(pa.scalar("", pa.string()), n)
    parts: list[pa.Table] = []
    carried = [c for c in keys.column_names if c != "source_line"]
    for code, (items, total) in blocks.items():
        headers = [*items, *([total] if total else [])]
        any_value = np.zeros(n, dtype=bool)
        for h in headers:
            any_value |= ~_text_eq(table.column(h), "")
        conditions = cfg.wide.blocks[code].keep_rows if cfg.wide and code in cfg.wide.blocks else []
        for text in conditions:
            fails = any_value & ~_condition_holds(table, text)
            if fails.any():
                reason = _filtered_reason(text, f"wide.blocks.{code}.keep_rows")
                filtered[reason] = filtered.get(reason, 0) + int(fails.sum())
                any_value &= ~fails
        cols: dict[str, pa.ChunkedArray | pa.Array] = {c: keys.column(c) for c in carried}
        own_date = (
            cfg.wide.blocks[code].session_date if cfg.wide and code in cfg.wide.blocks else None
        )
        if own_date:  # this form's own date column (replaces the shared one, in its place)
            cols["session_date"] = table.column(own_date)
        cols["instrument"] = pa.repeat(pa.scalar(code, pa.string()), n)
        for j, c in enumerate(registry.ITEM_COLUMNS):
            cols[c] = table.column(items[j]) if j < len(items) else blank
        cols["total"] = table.column(total) if total else blank
        cols["source_line"] = keys.column("source_line")
        parts.append(pa.table(cols).filter(pa.array(any_value)))
    melted = pa.concat_tables(parts)
    # Stable sort by line keeps the block order on each line.
    return melted.take(pc.sort_indices(melted, sort_keys=[("source_line", "ascending")]))


def _lookup(text: pa.ChunkedArray, mapping: dict[str, str], fold_case: bool) -> pa.ChunkedArray:
    """Replace the values found in `mapping` (vectorized); others pass through unchanged."""
    if not mapping:
        return text
    keys = list(mapping)
    probe = pc.utf8_lower(text) if fold_case else text
    key_arr = pa.array([k.lower() for k in keys] if fold_case else keys, pa.string())
    idx = pc.index_in(probe, value_set=key_arr)
    mapped = pc.take(pa.array([mapping[k] for k in keys], pa.string()), idx)
    return pc.coalesce(mapped, text)


def _blank_to_null(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    trimmed = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _distinct(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    """(distinct values, index of each row's value): casts and checks then run once per
    distinct text (items, dates and session numbers repeat a lot), and `take` maps them back."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return enc.dictionary, enc.indices


def _cast_numeric(col: pa.ChunkedArray, decimal: str) -> tuple[pa.Array, np.ndarray]:
    """Cast strings to float64; return the values and the rows whose text is not a number."""
    values_d, idx = _distinct(col)
    text = _blank_to_null(values_d)
    if decimal == ",":
        text = pc.replace_substring(text, ",", ".")
    ok = pc.match_substring_regex(text, r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
    bad_d = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(ok, False)))
    safe = pc.if_else(bad_d, pa.scalar(None, pa.string()), text)
    values = pc.take(pc.cast(safe, pa.float64()), idx)
    return values, _rows_with(bad_d, idx)


def _rows_with(flag_d: pa.Array, idx: pa.Array) -> np.ndarray:
    """The rows whose distinct value (``idx`` into ``flag_d``) is flagged: none, usually."""
    if not pc.any(flag_d).as_py():
        return np.zeros(0, dtype="int64")
    return np.flatnonzero(pc.take(flag_d, idx).to_numpy(zero_copy_only=False))


def _strip_leading_zeros(text: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.replace_substring_regex(text, r"(^|\D)0+(\d)", r"\1\2")


# A local time of day after a date ("2025-04-02 14:01:07", "2025-04-02T14:01", "4/2/2025 2:01 PM");
# not one with a zone ("...Z", "+02:00"), whose date may be another day where the clinic is.
_LOCAL_TIME = r"(?i)[ T]+\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?(\s*[ap]\.?m\.?)?\s*$"


# Excel's serial day numbers: day 1 is 1900-01-01, but Excel counts a 29 February 1900 that
# never was, so from day 61 (1900-03-01) on, a serial is its days since 1899-12-30; a fraction
# is the time of day (not kept). Serials below 61 are not taken (no session is dated 1900).
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_EXCEL_SERIAL = r"^\d{2,7}([.,]\d+)?$"
_EXCEL_FIRST, _EXCEL_LAST = 61, (dt.date(9999, 12, 31) - _EXCEL_EPOCH).days


def _cast_excel_serial(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Dates from Excel serial day numbers (`date_format: excel`); a cell that is not one (a
    date as text, a word, a serial out of range) is a row issue, never guessed."""
    values_d, idx = _distinct(col)
    text = _blank_to_null(values_d)
    shaped = pc.fill_null(pc.match_substring_regex(text, _EXCEL_SERIAL), False)
    whole = pc.replace_substring_regex(
        pc.if_else(shaped, text, pa.scalar(None, pa.string())), r"[.,]\d+$", ""
    )
    days = pc.cast(whole, pa.int64())
    in_range = pc.and_(pc.greater_equal(days, _EXCEL_FIRST), pc.less_equal(days, _EXCEL_LAST))
    ok = pc.fill_null(in_range, False)
    offset = (_EXCEL_EPOCH - dt.date(1970, 1, 1)).days
    since_1970 = pc.add(pc.if_else(ok, days, pa.scalar(None, pa.int64())), offset)
    dates_d = pc.cast(pc.cast(since_1970, pa.int32()), pa.date32())
    bad_d = pc.and_(pc.is_valid(text), pc.invert(ok))
    return pc.take(dates_d, idx), _rows_with(bad_d, idx)


def _cast_date(col: pa.ChunkedArray, fmt: str) -> tuple[pa.Array, np.ndarray]:
    if fmt == EXCEL_SERIAL:
        return _cast_excel_serial(col)
    values_d, idx = _distinct(col)
    text = _blank_to_null(values_d)
    if not any(d in fmt for d in ("%H", "%I", "%M", "%S", "%p", "%X", "%c")):
        # a date format and a timestamp (survey tools record the time): the date is the day
        text = pc.replace_substring_regex(text, _LOCAL_TIME, "")
    if "%b" in fmt or "%B" in fmt:
        # month names in any case: SPSS writes its DATE11 format as 02-APR-2025
        text = pc.utf8_title(text)
    parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    # strptime rolls impossible dates over (31.02. -> 03.03.): a date must format back to its
    # own text (leading zeros and the case of a month name aside, so 3/4/2025 passes for
    # %m/%d/%Y).
    back = pc.strftime(parsed, format=fmt)
    same = pc.equal(
        pc.utf8_lower(_strip_leading_zeros(back)), pc.utf8_lower(_strip_leading_zeros(text))
    )
    bad_d = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(same, False)))
    parsed = pc.if_else(bad_d, pa.scalar(None, parsed.type), parsed)
    dates = pc.take(pc.cast(parsed, pa.date32()), idx)
    return dates, _rows_with(bad_d, idx)


def _compute_totals(table: pa.Table) -> pa.ChunkedArray:
    """Blank totals are computed from the items when every item is present (never imputed)."""
    totals = table.column("total").to_numpy(zero_copy_only=False).astype("float64")
    missing = np.isnan(totals)
    if not missing.any():
        return table.column("total")
    codes, code_idx = _distinct(table.column("instrument"))
    which = code_idx.to_numpy(zero_copy_only=False)
    for k, code in enumerate(codes.to_pylist()):
        ins = registry.INSTRUMENTS.get(code) if code else None
        if ins is None:
            continue
        sel = np.flatnonzero(missing & (which == k))
        if not len(sel):
            continue
        take = pa.array(sel)
        own = np.column_stack(
            [
                table.column(c).take(take).to_numpy(zero_copy_only=False).astype("float64")
                for c in ins.item_columns
            ]
        )
        complete = ~np.isnan(own).any(axis=1)
        computed = own.sum(axis=1) if ins.scoring == "sum" else own.mean(axis=1)
        computed = np.round(computed, 2 if ins.scoring == "mean" else 1)
        totals[sel[complete]] = computed[complete]
    return pa.chunked_array([pa.array(totals, pa.float64(), from_pandas=True)])


SESSION_ORDER_TIE = (
    "session_order_tie: another entry of this client, episode and instrument has the same "
    "session_date with different values, so their order is unknown (session_number_from: "
    "order: session_date); deliver one entry per date, or a session-number column"
)


def _session_order(cols: dict[str, pa.ChunkedArray | pa.Array]) -> tuple[pa.Array, np.ndarray]:
    """Session numbers as the rank of each entry's session date among the file's entries of the
    same client, episode and instrument (1 = earliest). Entries on one date with different
    values are ties: never ordered, they get no number and are returned as issues; exact copies
    share their number (validation counts them as duplicates). A tied date still counts as a
    session, so numbers do not move when the tie is resolved."""
    key = ["client_id", "episode_id", "instrument"]
    values = [*registry.ITEM_COLUMNS, "total"]
    frame = pd.DataFrame({c: _numpy(cols[c]) for c in (*key, "session_date", *values)})
    ok = frame[[*key, "session_date"]].notna().all(axis=1).to_numpy()
    number = np.full(len(frame), np.nan)
    ties = np.zeros(len(frame), dtype=bool)
    if ok.any():
        sub = frame[ok]
        distinct = sub.drop_duplicates([*key, "session_date", *values])
        clash = distinct[distinct.duplicated([*key, "session_date"], keep=False)]
        if len(clash):
            tied = sub.reset_index().merge(clash[[*key, "session_date"]].drop_duplicates())
            ties[tied["index"].to_numpy()] = True
        number[ok] = sub.groupby(key, sort=False, dropna=False)["session_date"].rank(method="dense")
    number[ties] = np.nan
    arr = pa.array(number, pa.float64(), from_pandas=True)
    return pc.cast(arr, pa.int32()), np.flatnonzero(ties)


def _numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False))


def canonicalize(raw: RawFile, cfg: ClinicConfig) -> tuple[pa.Table, pd.DataFrame]:
    """Cast the raw strings to the canonical schema; every uncastable value is a row issue."""
    t = raw.table
    schema = SCHEMAS[raw.dataset]
    issues: list[pd.DataFrame] = []
    cols: dict[str, pa.ChunkedArray | pa.Array] = {}
    n = t.num_rows
    cols["clinic_id"] = pa.repeat(pa.scalar(cfg.clinic_id, pa.string()), n)
    for name in ("client_id", "clinician_id"):
        cols[name] = _blank_to_null(t.column(name))
    if raw.issues is not None and not raw.issues.empty:
        issues.append(raw.issues)
    if raw.dataset == "measures":
        # no episode column, or a blank cell: the client's one series ("")
        if "episode_id" in cfg.columns or "episode_id" in raw.header:
            cols["episode_id"] = pc.utf8_trim_whitespace(t.column("episode_id"))
        else:
            cols["episode_id"] = pa.repeat(pa.scalar("", pa.string()), n)
        d, bad = _cast_date(t.column("session_date"), cfg.date_format)
        cols["session_date"] = d
        if len(bad):
            issues.append(
                _issues(bad, f"bad_date: session_date is not a date in {cfg.date_format}")
            )
        sn = _blank_to_null(t.column("session_number"))
        # a whole number written with a zero fraction in the file's decimal mark is that number
        # (SPSS writes its default F8.2 format as "3.00", pandas a column with blanks as "3.0")
        point = re.escape(cfg.decimal)
        sn = pc.replace_substring_regex(sn, rf"^(\+?\d{{1,6}}){point}0+$", r"\1")
        ok = pc.fill_null(pc.match_substring_regex(sn, r"^\+?\d{1,6}$"), False)
        bad_sn = pc.and_(pc.is_valid(sn), pc.invert(ok))
        cols["session_number"] = pc.cast(
            pc.if_else(bad_sn, pa.scalar(None, pa.string()), sn), pa.int32()
        )
        bad = np.flatnonzero(bad_sn.to_numpy(zero_copy_only=False))
        if len(bad):
            issues.append(_issues(bad, "bad_session_number: session_number is not a whole number"))
        instr = _lookup(_blank_to_null(t.column("instrument")), cfg.instrument_values, False)
        cols["instrument"] = pc.utf8_upper(instr)
        versions = {code: cfg.instrument_version(code) for code in registry.INSTRUMENTS}
        idx = pc.index_in(cols["instrument"], value_set=pa.array(list(versions), pa.string()))
        cols["instrument_version"] = pc.take(pa.array(list(versions.values()), pa.string()), idx)
        for c in (*registry.ITEM_COLUMNS, "total"):
            v, bad = _cast_numeric(t.column(c), cfg.decimal)
            cols[c] = v
            if len(bad):
                issues.append(_issues(bad, f"not_a_number: {c} is not a number"))
        snf = cfg.session_number_from
        if snf is not None and snf.order == "session_date":
            cols["session_number"], ties = _session_order(cols)
            if len(ties):
                issues.append(_issues(ties, SESSION_ORDER_TIE))
    else:
        d, bad = _cast_date(t.column("appointment_date"), cfg.date_format)
        cols["appointment_date"] = d
        if len(bad):
            issues.append(
                _issues(bad, f"bad_date: appointment_date is not a date in {cfg.date_format}")
            )
        # The clinic's words first (case-insensitive), then canonical words in any case.
        status = _lookup(_blank_to_null(t.column("status")), cfg.status_values, True)
        cols["status"] = pc.utf8_lower(status)
    cols["source_file"] = pa.repeat(pa.scalar("", pa.string()), n)
    cols["source_line"] = t.column("source_line")
    typed = pa.table({f.name: cols[f.name] for f in schema}, schema=schema.with_metadata({}))
    if raw.dataset == "measures":
        typed = typed.set_column(
            typed.schema.get_field_index("total"), "total", _compute_totals(typed)
        )
    all_issues = pd.concat(issues, ignore_index=True) if issues else empty_issues()
    return typed, all_issues


def today() -> dt.date:
    return dt.date.today()
