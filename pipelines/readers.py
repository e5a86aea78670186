"""Readers: a clinic's delivered file -> raw string table with canonical names -> typed canonical.

Two steps, so that the de-identification guard sees every value exactly as delivered:

* `read_raw` parses the file with every column as a string, checks file-level problems (empty,
  header only, wrong delimiter, missing column, undecodable bytes, truncated, oversized field,
  compressed) and raises `FileRejected` with a specific reason; it never returns a partial file.
* `canonicalize` casts the raw strings to the canonical Arrow schema, vectorized, and reports
  every value it cannot cast as a row issue (never coerced to null in silence, never imputed).
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

from pipelines import registry
from pipelines.canonical import (
    REFERENCE_APPOINTMENT_COLUMNS,
    REFERENCE_MEASURE_COLUMNS,
    SCHEMAS,
)
from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
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


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype="int64"), "reason": pd.Series(dtype="object")})


def _issues(rows: np.ndarray, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"row": rows.astype("int64"), "reason": reason})


def _sniff_delimiter(first_line: str, expected: str) -> str | None:
    for cand in (";", "\t", "|", ","):
        if cand != expected and first_line.count(cand) >= 2 and first_line.count(expected) == 0:
            return cand
    return None


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
    if cfg.file_type == "parquet":
        raise FileRejected("unsupported_format", "Parquet reading is configured but not available")
    try:
        first_line = head.split(b"\n", 1)[0].decode(cfg.encoding)
    except UnicodeDecodeError:
        raise FileRejected(
            "undecodable_bytes", f"line 1 is not valid {cfg.encoding}; export as {cfg.encoding}"
        ) from None
    if not first_line.strip():
        raise FileRejected("empty", "the first line is blank; expected a header")

    invalid: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row.number if row.number is not None else -1)
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
                column_types={},
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
    # Every column as string: the guard must see values as delivered.
    table = pa.table(
        {
            name: pc.cast(col, pa.string())
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )
    header = list(table.column_names)
    return _finish(path, dataset, cfg, table, header, invalid, first_line, size)


def _finish(
    path: Path,
    dataset: str,
    cfg: ClinicConfig,
    table: pa.Table,
    header: list[str],
    invalid: list[int],
    first_line: str,
    size: int,
) -> RawFile:
    mapping = cfg.columns if dataset == "measures" else cfg.appointment_columns
    inverse = {src: canon for canon, src in mapping.items()}
    renamed = [inverse.get(h, h) for h in header]
    required = REQUIRED[dataset]
    missing = [c for c in required if c not in renamed]
    if missing:
        other = _sniff_delimiter(first_line, cfg.delimiter)
        if other is not None:
            raise FileRejected(
                "wrong_delimiter",
                f"the header is separated by {other!r}, the clinic config says {cfg.delimiter!r}",
            )
        keys = [f"columns.{c} -> {mapping[c]!r}" if c in mapping else c for c in missing]
        raise FileRejected("missing_column", f"required column(s) missing: {', '.join(keys)}")
    if table.num_rows == 0 and not invalid:
        raise FileRejected("header_only", "the file has a header but no data rows")
    with path.open("rb") as fh:
        fh.seek(max(0, size - 1))
        ends_with_newline = fh.read(1) == b"\n"
    if invalid and not ends_with_newline and invalid[-1] in (-1, max(invalid)):
        raise FileRejected(
            "truncated",
            "the last line is incomplete (too few fields, no final newline); re-send the whole file",
        )
    for name, col in zip(header, table.columns, strict=True):
        if len(col) and pc.max(pc.binary_length(col)).as_py() > cfg.max_field_bytes:
            raise FileRejected(
                "oversized_field",
                f"a field in column {name!r} exceeds {cfg.max_field_bytes} bytes",
            )
    known = set(required) | set(OPTIONAL[dataset])
    keep = [i for i, c in enumerate(renamed) if c in known]
    ignored = [header[i] for i, c in enumerate(renamed) if c not in known]
    out = table.select(keep).rename_columns([renamed[i] for i in keep])
    for c in OPTIONAL[dataset]:
        if c not in out.column_names:
            out = out.append_column(c, pa.array([""] * out.num_rows, pa.string()))
    # Physical line of each record (header = line 1), accounting for skipped invalid lines.
    n = out.num_rows
    rows = np.arange(n, dtype=np.int64)
    skipped = np.sort(np.array([i for i in invalid if i >= 0], dtype=np.int64))
    lines = rows + 2
    if len(skipped):
        # shift each record past the invalid lines that precede it
        for s in skipped:
            lines = np.where(lines >= s, lines + 1, lines)
    out = out.append_column("source_line", pa.array(lines, pa.int64()))
    if invalid:
        raise_lines = ", ".join(str(i) for i in sorted(invalid)[:5])
        raise FileRejected(
            "wrong_field_count",
            f"line(s) {raise_lines} have a different number of fields than the header",
        )
    return RawFile(dataset=dataset, header=header, table=out, ignored_columns=ignored)


def _blank_to_null(col: pa.ChunkedArray) -> pa.ChunkedArray:
    trimmed = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _cast_numeric(col: pa.ChunkedArray, decimal: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Cast strings to float64; return the values and the rows whose text is not a number."""
    text = _blank_to_null(col)
    if decimal == ",":
        text = pc.replace_substring(text, ",", ".")
    ok = pc.match_substring_regex(text, r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(ok, False)))
    safe = pc.if_else(bad, pa.scalar(None, pa.string()), text)
    values = pc.cast(safe, pa.float64())
    return values, np.flatnonzero(bad.to_numpy(zero_copy_only=False))


def _cast_date(col: pa.ChunkedArray, fmt: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    text = _blank_to_null(col)
    parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    return pc.cast(parsed, pa.date32()), np.flatnonzero(bad.to_numpy(zero_copy_only=False))


def _compute_totals(table: pa.Table) -> pa.ChunkedArray:
    """Blank totals are computed from the items when every item is present (never imputed)."""
    totals = table.column("total").to_numpy(zero_copy_only=False).astype("float64")
    instruments = table.column("instrument").to_numpy(zero_copy_only=False)
    items = np.column_stack(
        [
            table.column(c).to_numpy(zero_copy_only=False).astype("float64")
            for c in registry.ITEM_COLUMNS
        ]
    )
    for code, ins in registry.INSTRUMENTS.items():
        sel = (instruments == code) & np.isnan(totals)
        if not sel.any():
            continue
        own = items[sel][:, : ins.n_items]
        complete = ~np.isnan(own).any(axis=1)
        computed = own.sum(axis=1) if ins.scoring == "sum" else own.mean(axis=1)
        computed = np.round(computed, 2 if ins.scoring == "mean" else 1)
        idx = np.flatnonzero(sel)
        totals[idx[complete]] = computed[complete]
    return pa.chunked_array([pa.array(totals, pa.float64(), from_pandas=True)])


def canonicalize(raw: RawFile, cfg: ClinicConfig) -> tuple[pa.Table, pd.DataFrame]:
    """Cast the raw strings to the canonical schema; every uncastable value is a row issue."""
    t = raw.table
    schema = SCHEMAS[raw.dataset]
    issues: list[pd.DataFrame] = []
    cols: dict[str, pa.ChunkedArray | pa.Array] = {}
    n = t.num_rows
    cols["clinic_id"] = pa.array([cfg.clinic_id] * n, pa.string())
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
        instr = _blank_to_null(t.column("instrument"))
        cols["instrument"] = pc.utf8_upper(instr)
        versions = {code: cfg.instrument_version(code) for code in registry.INSTRUMENTS}
        inst_np = pc.utf8_upper(instr).to_numpy(zero_copy_only=False)
        cols["instrument_version"] = pa.array(
            pd.Series(inst_np, dtype="object").map(versions), pa.string(), from_pandas=True
        )
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
        status = pc.utf8_lower(_blank_to_null(t.column("status")))
        if cfg.status_values:
            mapped = pd.Series(status.to_numpy(zero_copy_only=False), dtype="object")
            lookup = {k.lower(): v for k, v in cfg.status_values.items()}
            status = pa.array(
                mapped.map(lambda s: lookup.get(s, s) if s is not None else None), pa.string()
            )
        cols["status"] = status
    cols["source_file"] = pa.array([""] * n, pa.string())
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
