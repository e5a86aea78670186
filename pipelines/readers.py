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
from pipelines.config import WIDE_KEYS, ClinicConfig
from pipelines.deid import shown_header
from pipelines.errors import FileRejected

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
PARQUET_MAGIC = b"PAR1"
REQUIRED = {
    "measures": ("client_id", "clinician_id", "session_date", "session_number", "instrument"),
    "appointments": REFERENCE_APPOINTMENT_COLUMNS,
}
OPTIONAL = {
    "measures": tuple(c for c in REFERENCE_MEASURE_COLUMNS if c.startswith("item_")) + ("total",),
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


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype="int64"), "reason": pd.Series(dtype="object")})


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


def read_raw(path: Path, dataset: str, cfg: ClinicConfig) -> RawFile:
    """Parse `path` as strings; raise FileRejected for any file-level problem."""
    if path.is_symlink() or not path.is_file():
        raise FileRejected("not_a_regular_file", f"{path.name} is not a regular file; not read")
    size = path.stat().st_size
    if size == 0:
        raise FileRejected("empty", "the file has no bytes; re-send the export")
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
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
    try:
        # a line ends at LF, CRLF or (Excel's "CSV (Macintosh)") a lone CR, as for the reader
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

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                encoding=cfg.encoding, block_size=max(1 << 22, cfg.max_field_bytes * 4)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=cfg.delimiter, newlines_in_values=False, invalid_row_handler=on_invalid
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
    table = pa.table(cols)
    header = list(table.column_names)
    invalid = _locate_lines(path, cfg.encoding, invalid_texts) if invalid_texts else []
    return _finish(path, dataset, cfg, table, header, invalid, first_line, size, True)


def _locate_lines(path: Path, encoding: str, texts: list[str]) -> list[int]:
    """1-based physical line numbers of the records pyarrow skipped, in file order.

    Only runs when a file has malformed lines, so a plain line scan is fine here."""
    found: list[int] = []
    pending = list(texts)
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if not pending:
                break
            if number > 1 and line.rstrip("\r\n") == pending[0]:
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


def _missing_message(dataset: str, cfg: ClinicConfig, missing: list[str]) -> str:
    """Name the config key behind every missing header (never a data value)."""
    key = "columns" if dataset == "measures" else "appointment_columns"
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    parts = []
    for c in missing:
        if c in mapping:
            parts.append(f"{key}.{c} maps to {mapping[c]!r}, which the file does not have")
        elif c.startswith("wide."):
            parts.append(c)
        else:
            parts.append(f"required column {c!r} is missing (or map it under {key}:)")
    return "; ".join(parts)


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
) -> RawFile:
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    inverse = {src: canon for canon, src in mapping.items()}
    renamed = [inverse.get(h, h) for h in header]
    wide = dataset == "measures" and cfg.layout == "wide" and cfg.wide is not None
    required = WIDE_KEYS if wide else REQUIRED[dataset]
    missing = [c for c in required if c not in renamed]
    # A mapped optional column (an item or the total) is a promise of the config too.
    missing += [c for c in mapping if c not in required and mapping[c] not in header]
    blocks = cfg.wide.resolved() if wide and cfg.wide is not None else {}
    for code, (items, total) in blocks.items():
        for j, h in enumerate(items):
            if h not in header:
                missing.append(
                    f"wide: item {j + 1} of {code} is {h!r}, which the file does not have"
                )
        if total is not None and total not in header:
            missing.append(f"wide: the {code} total is {total!r}, which the file does not have")
    if missing:
        other = _sniff_delimiter(first_line, cfg.delimiter) if is_csv else None
        if other is not None:
            raise FileRejected(
                "wrong_delimiter",
                f"the header is separated by {other!r}, the clinic config says {cfg.delimiter!r}",
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
    known = set(required) | (set() if wide else set(OPTIONAL[dataset]))
    block_headers = {h for items, total in blocks.values() for h in (*items, total) if h}
    keep = [i for i, c in enumerate(renamed) if c in known]
    ignored = [
        shown_header(header, i)
        for i, c in enumerate(renamed)
        if c not in known and header[i] not in block_headers
    ]
    out = table.select(keep).rename_columns([renamed[i] for i in keep])
    # Physical line of each record: the CSV line (header = line 1), accounting for skipped invalid
    # lines; in Parquet the same numbering (row 1 = "line" 2) so quarantine reports read alike.
    n = out.num_rows
    rows = np.arange(n, dtype=np.int64)
    skipped = np.sort(np.array([i for i in invalid if i >= 0], dtype=np.int64))
    lines = rows + 2
    if len(skipped):
        # shift each record past the invalid lines that precede it
        for s in skipped:
            lines = np.where(lines >= s, lines + 1, lines)
    out = out.append_column("source_line", pa.array(lines, pa.int64()))
    if wide:
        out = _melt_wide(out, table, blocks)
    else:
        for c in OPTIONAL[dataset]:
            if c not in out.column_names:
                out = out.append_column(c, pa.array([""] * out.num_rows, pa.string()))
    if invalid and min(invalid) < 0:
        raise FileRejected(
            "wrong_field_count",
            "some lines have a different number of fields than the header and could not be "
            "located; check the export's quoting",
        )
    return RawFile(
        dataset=dataset,
        header=header,
        table=out,
        ignored_columns=ignored,
        malformed_lines=sorted(invalid),
    )


def _melt_wide(
    keys: pa.Table, table: pa.Table, blocks: dict[str, tuple[list[str], str | None]]
) -> pa.Table:
    """One canonical row per instrument block with any non-blank cell, in file order.

    A block blank on a line = not administered; a partly blank block stays a row (with blank
    items) so that validation rejects it with its reason.
    """
    n = keys.num_rows
    blank = pa.repeat(pa.scalar("", pa.string()), n)
    parts: list[pa.Table] = []
    for code, (items, total) in blocks.items():
        headers = [*items, *([total] if total else [])]
        any_value = pa.array(np.zeros(n, dtype=bool))
        for h in headers:
            filled = pc.not_equal(pc.utf8_trim_whitespace(table.column(h)), "")
            any_value = pc.or_(any_value, filled)
        cols: dict[str, pa.ChunkedArray | pa.Array] = {c: keys.column(c) for c in WIDE_KEYS}
        cols["instrument"] = pa.repeat(pa.scalar(code, pa.string()), n)
        for j, c in enumerate(registry.ITEM_COLUMNS):
            cols[c] = table.column(items[j]) if j < len(items) else blank
        cols["total"] = table.column(total) if total else blank
        cols["source_line"] = keys.column("source_line")
        parts.append(pa.table(cols).filter(any_value))
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


def _cast_date(col: pa.ChunkedArray, fmt: str) -> tuple[pa.Array, np.ndarray]:
    values_d, idx = _distinct(col)
    text = _blank_to_null(values_d)
    parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    # strptime rolls impossible dates over (31.02. -> 03.03.): a date must format back to its
    # own text (leading zeros aside, so 3/4/2025 passes for %m/%d/%Y).
    back = pc.strftime(parsed, format=fmt)
    same = pc.equal(_strip_leading_zeros(back), _strip_leading_zeros(text))
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
    if raw.dataset == "measures":
        d, bad = _cast_date(t.column("session_date"), cfg.date_format)
        cols["session_date"] = d
        if len(bad):
            issues.append(
                _issues(bad, f"bad_date: session_date is not a date in {cfg.date_format}")
            )
        sn = _blank_to_null(t.column("session_number"))
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
