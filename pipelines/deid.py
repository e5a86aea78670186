"""The de-identification guard: runs before Great Expectations and before anything is stored.

Two checks (DOMAIN.md, HIPAA Safe Harbor):

* ``check_header``: a column whose *name* says it holds an identifier (name, email, phone,
  address, ZIP, date of birth, age, notes, ...) rejects the whole file; none of its rows is
  stored. Header names are not data, so the error names them.
* ``scan_values``: a cell whose *value* looks like an identifier (email, phone number, SSN-like
  number, URL, IP address, a person's name where a pseudonymous code belongs, free text)
  quarantines its row. The reason names the kind and the column, never the value, and the
  returned redaction mask says which cells must be replaced by ``[redacted]`` before the row is
  stored in quarantine and blanked before the table reaches GX (GX renders unexpected values
  into Data Docs).

Both are vectorized (pyarrow compute / pandas string methods); nothing loops over rows.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.canonical import REFERENCE_APPOINTMENT_COLUMNS, REFERENCE_MEASURE_COLUMNS
from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected

REDACTED = "[redacted]"
CODE_COLUMNS: tuple[str, ...] = ("client_id", "clinician_id")

# Identifying header words, compared after normalisation (lowercase, accents folded, ß -> ss).
# WORDS must equal one word of the header ("Client Name" -> client, name); short tokens like
# "age" or "ip" would otherwise hit "stage" or "recipient".
_IDENTIFYING_WORDS: frozenset[str] = frozenset(
    {
        # names
        "name", "names", "nom", "nombre", "apellido", "apellidos", "initials", "initialen",
        # contact
        "email", "mail", "phone", "tel", "telefon", "telephone", "mobile", "handy", "cell",
        "fax", "courriel", "correo", "telefono",
        # address
        "address", "adresse", "anschrift", "street", "strasse", "road", "city", "town", "ort",
        "stadt", "ville", "ciudad", "zip", "plz", "postcode", "direccion", "hausnummer",
        # numbers
        "ssn", "mrn", "svnr", "iban", "account", "licence", "license", "vin",
        # dates of birth and age
        "dob", "birthday", "bday", "age", "alter", "edad",
        # free text
        "notes", "note", "notizen", "notiz", "comment", "comments", "kommentar", "bemerkung",
        "bemerkungen", "anmerkung", "anmerkungen", "remarks", "remark", "text", "freetext",
        "commentaire", "commentaires", "notas", "observaciones", "memo",
        # network
        "url", "website", "homepage", "ip", "ipv4", "ipv6", "ipaddress",
    }
)  # fmt: skip
# SUBSTRINGS may occur anywhere in the header with separators removed ("E-Mail-Adresse",
# "Geburtsdatum", "patient_first_name"); only long, unambiguous stems belong here.
_IDENTIFYING_STEMS: tuple[str, ...] = (
    "firstname", "lastname", "surname", "fullname", "givenname", "familyname", "middlename",
    "maidenname", "vorname", "nachname", "familienname", "prenom", "patientname", "clientname",
    "klientname", "clinicianname", "therapistname",
    "email", "emailadresse", "phone", "telefon", "teleph", "mobilnummer", "faxnumber",
    "address", "adresse", "anschrift", "strasse", "street", "postcode", "postalcode",
    "postleitzahl", "zipcode", "wohnort", "hausnummer",
    "birth", "geburt", "naissance", "nacimiento",
    "socialsecurity", "sozialversicherung", "medicalrecord", "patientennummer",
    "versichertennummer", "versicherungsnummer", "healthplan", "insurancenumber",
    "policynumber", "accountnumber", "kontonummer", "licensenumber", "licencenumber",
    "fuehrerschein", "fuhrerschein", "licenseplate", "kennzeichen", "vehicle", "deviceid",
    "serialnumber", "ipaddress",
    "freetext", "freitext", "notiz", "kommentar", "bemerkung", "anmerkung", "comment",
    "clinicalnotes", "sessionnotes",
)  # fmt: skip
# Headers that contain a stem or word above but are known to be safe.
_SAFE_HEADERS: frozenset[str] = frozenset(
    {
        *(c.replace("_", "") for c in REFERENCE_MEASURE_COLUMNS),
        *(c.replace("_", "") for c in REFERENCE_APPOINTMENT_COLUMNS),
        "instrumentname",
        "measurename",
        "scalename",
        "questionnairename",
        "instrumentversion",
        "sourcefile",
        "sourceline",
        "sessionid",
    }
)


def _fold(text: str) -> str:
    text = text.replace("ß", "ss").replace("ẞ", "ss")
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _words(header: str) -> list[str]:
    # Split camelCase first ("firstName" -> "first Name"), then on anything not a letter/digit.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", header)
    return [w for w in re.split(r"[^0-9a-z]+", _fold(spaced)) if w]


def identifying_headers(header: list[str]) -> list[str]:
    """The header names that say their column holds an identifier, in file order."""
    offending = []
    for raw in header:
        words = _words(raw)
        joined = "".join(words)
        if joined in _SAFE_HEADERS:
            continue
        if any(w in _IDENTIFYING_WORDS for w in words) or any(
            stem in joined for stem in _IDENTIFYING_STEMS
        ):
            offending.append(raw)
    return offending


def shown_header(header: list[str], index: int) -> str:
    """A header name fit to show in a message, the ledger or a log: the name itself, unless it
    looks like a value that identifies someone (a shifted or headerless export puts data in the
    header line), then ``<column N>``."""
    import re

    name = header[index]
    value_like = (_EMAIL, _URL, _IPV4, _IPV6, _SSN)
    if any(re.search(p.replace("(?i)", ""), name, re.IGNORECASE) for p in value_like) or (
        len(re.findall(r"\d", name)) >= 7
    ):
        return f"<column {index + 1}>"
    return name


def check_header(header: list[str], dataset: str) -> None:
    """Raise ``FileRejected("identifying_column", ...)`` when any header names an identifier.

    The message lists the offending header names (headers are not data). Returns None when the
    header is clean; case, spaces, underscores, hyphens and accents do not matter.
    """
    offending = identifying_headers(header)
    if offending:
        names = ", ".join(
            repr(shown_header(header, header.index(h)).strip()[:64]) for h in offending
        )
        raise FileRejected(
            "identifying_column",
            f"the {dataset} file has identifying column(s) {names}; remove them from the export "
            "(only pseudonymous codes, session dates and scores may be sent); no row was stored",
        )


# Value patterns (RE2 syntax, for pyarrow.compute.match_substring_regex).
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_URL = r"(?i)(\b[a-z][a-z0-9+.-]*://|\bwww\.[a-z0-9-]+\.|\b[a-z0-9-]+\.(com|org|net|edu|gov|de|at|ch|uk|io|info)(/|\b))"
_IPV4 = r"\b(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\b"
_IPV6 = r"(?i)(\b[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}\b|\b[0-9a-f]{0,4}(:[0-9a-f]{1,4})*::[0-9a-f]{1,4}(:[0-9a-f]{1,4})*\b)"
_SSN = r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"
# A run of digits with phone punctuation; confirmed below by its digit count.
_PHONE_RUN = r"(\+\s*\d|\(\d|\d)[\d\s()./-]{6,}\d"
_PHONE_PUNCT = r"[+()/\s.-]"
# A person's name where a code belongs: words of letters (hyphens, apostrophes, initials)
# separated by spaces, or "Surname, Given"; only checked on values failing the code pattern.
_PERSON_NAME = r"^\s*\p{L}[\p{L}'’.-]*(,?\s+\p{L}[\p{L}'’.-]*)+\s*$|^\s*\p{L}+,\s*\p{L}+\s*$"
# Cells that cannot be any kind above: a bare token of letters/digits/underscores (no @, dot,
# colon, space, comma or punctuation), a short number (at most 8 digits), or a date with a 4-digit
# year (an SSN is 3-2-4, which none of these match).
_CANNOT_IDENTIFY = (
    r"^\s*[A-Za-z0-9_]*\s*$"
    r"|^\s*[-+]?\d{1,4}([.,]\d{1,4})?\s*$"
    r"|^\s*\d{4}[-./]\d{1,2}[-./]\d{1,2}\s*$"
    r"|^\s*\d{1,2}[-./]\d{1,2}[-./]\d{4}\s*$"
)
# Free text: five or more words in one cell.
_FREE_TEXT = r"(\p{L}+[\s,.;:!?]+){4,}\p{L}+"


# The redaction mask: a DataFrame with columns ``row`` (int, index into the table) and
# ``column`` (str, canonical column name), one row per identifying cell.
RedactionMask = pd.DataFrame


def empty_mask() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series([], dtype="int64"), "column": pd.Series([], dtype="object")}
    )


def cell_masks(mask: pd.DataFrame, n_rows: int) -> dict[str, np.ndarray]:
    """The redaction mask as column -> one bool per table row."""
    out: dict[str, np.ndarray] = {}
    for col, rows in mask.groupby("column")["row"]:
        hit = np.zeros(n_rows, dtype=bool)
        hit[rows.to_numpy(dtype="int64")] = True
        out[str(col)] = hit
    return out


def _replace_cells(table: pa.Table, mask: pd.DataFrame, string_value: str | None) -> pa.Table:
    for col, hit in cell_masks(mask, table.num_rows).items():
        if col not in table.column_names:
            continue
        idx = table.column_names.index(col)
        column = table.column(idx)
        if string_value is not None and pa.types.is_string(column.type):
            fill = pa.scalar(string_value, pa.string())
        else:
            fill = pa.scalar(None, column.type)
        table = table.set_column(idx, table.field(idx), pc.if_else(pa.array(hit), fill, column))
    return table


def redact_cells(table: pa.Table, mask: pd.DataFrame) -> pa.Table:
    """The table with every masked cell replaced by ``[redacted]`` (null if not text)."""
    return _replace_cells(table, mask, REDACTED)


def blank_cells(table: pa.Table, mask: pd.DataFrame) -> pa.Table:
    """The table with every masked cell set to null (what GX may see)."""
    return _replace_cells(table, mask, None)


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series([], dtype="int64"), "reason": pd.Series([], dtype="object")}
    )


def _as_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(arr, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _matches(column: pa.ChunkedArray | pa.Array, pattern: str) -> np.ndarray:
    return _as_bool(pc.match_substring_regex(column, pattern))


def _phone_like(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    # Dates ("2024-11-23") and decimals have at most 8 digits; phone numbers 9-15. Pure digit
    # strings are left to the code pattern (a clinic may use long numeric codes).
    run = _matches(column, _PHONE_RUN)
    if not run.any():
        return run
    digits = pc.utf8_length(pc.replace_substring_regex(column, r"[^0-9]", ""))
    n_digits = np.asarray(pc.fill_null(digits, 0).to_numpy(zero_copy_only=False))
    punct = _matches(column, _PHONE_PUNCT)
    return run & punct & (n_digits >= 9) & (n_digits <= 15)


def _fails_code_pattern(column: pa.ChunkedArray | pa.Array, pattern: str) -> np.ndarray:
    # Python `re` semantics, the same engine the config validates the pattern with.
    series = pd.Series(column.to_pandas(), dtype="object")
    present = series.notna().to_numpy()
    ok = series.astype("string").str.contains(pattern, regex=True).fillna(True)
    return present & ~ok.to_numpy(dtype=bool)


class _Codes:
    """Each cell's position among its column's distinct values (-1: null), computed on first
    use: most columns have no finding, and then no cell needs mapping back."""

    def __init__(self, column: pa.ChunkedArray, values: pa.Array) -> None:
        self._column, self._values = column, values
        self._code: np.ndarray | None = None

    def get(self) -> np.ndarray:
        if self._code is None:
            positions = pc.index_in(self._column, value_set=self._values)
            filled = pc.fill_null(positions, -1).to_numpy(zero_copy_only=False)
            self._code = np.asarray(filled, dtype="int64")
        return self._code


def scan_values(table: pa.Table, cfg: ClinicConfig) -> tuple[pd.DataFrame, RedactionMask]:
    """Find identifying values in the string columns of a raw (all-string) table.

    Returns ``RowIssues`` (columns ``row``, ``reason``; reason like
    ``identifier_in_field: email-like value in client_id``, never the value) and the
    redaction mask (columns ``row``, ``column``: one row per identifying cell). Rows are
    indices into ``table``.
    """
    n = table.num_rows
    frames: list[pd.DataFrame] = []
    masked: list[pd.DataFrame] = []

    # Every check below is a function of the cell's value alone, and a column holds far fewer
    # distinct values than cells (codes repeat per session, scores and dates repeat), so the
    # checks run once per distinct value and a flagged value is mapped back to every cell
    # holding it. ``code`` is each cell's position in the column's distinct values (-1: null).
    def record(col: str, kind: str, hit: np.ndarray, where: np.ndarray, codes: _Codes) -> None:
        if not hit.any():
            return
        code = codes.get()
        flagged = np.zeros(int(code.max()) + 2 if len(code) else 1, dtype=bool)
        flagged[where[hit]] = True  # the last slot stays False: code -1 (null) never flags
        rows = np.flatnonzero(flagged[code]).astype("int64")
        masked.append(pd.DataFrame({"row": rows, "column": col}))
        frames.append(
            pd.DataFrame({"row": rows, "reason": f"identifier_in_field: {kind} value in {col}"})
        )

    known_labels = pa.array(
        sorted({k.lower() for k in (*cfg.status_values, *cfg.instrument_values)}), pa.string()
    )
    for col in table.column_names:
        column = table.column(col)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        if n == 0 or column.null_count == n:
            continue
        values = pc.drop_null(pc.unique(column))
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        code = _Codes(column, values)  # worked out only for a column with a finding
        # One cheap pass finds the values that cannot hold any kind below (bare tokens, short
        # numbers, dates); the full battery runs only on the rest.
        where = np.flatnonzero(~_matches(values, _CANNOT_IDENTIFY))
        if not len(where):
            continue
        cells = pc.take(values, pa.array(where))
        email = _matches(cells, _EMAIL)
        record(col, "email-like", email, where, code)
        record(col, "URL-like", _matches(cells, _URL) & ~email, where, code)
        ip = _matches(cells, _IPV4) | _matches(cells, _IPV6)
        record(col, "IP-address-like", ip, where, code)
        ssn = _matches(cells, _SSN)
        record(col, "SSN-like", ssn, where, code)
        record(col, "phone-number-like", _phone_like(cells) & ~ssn & ~ip, where, code)
        if col in CODE_COLUMNS:
            name = _fails_code_pattern(cells, cfg.code_pattern) & _matches(cells, _PERSON_NAME)
            record(col, "person-name-like", name, where, code)
        else:
            # The clinic's own configured labels (status words, instrument names) are not text.
            own = pc.is_in(pc.utf8_lower(cells), value_set=known_labels)
            free = _matches(cells, _FREE_TEXT) & ~_as_bool(own)
            record(col, "free-text", free, where, code)

    issues = (
        pd.concat(frames, ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
        if frames
        else empty_issues()
    )
    mask = (
        pd.concat(masked, ignore_index=True).drop_duplicates(ignore_index=True)
        if masked
        else empty_mask()
    )
    return issues, mask
