"""A labelled corpus for the de-identification guard: pseudonym families it must let through and
identifier families it must stop, in every kind of column (codes, dates, scores, other).

Every value is synthetic and obviously fake (example.org domains, 555 and reserved numbering
ranges or random digits, documentation IP ranges, invented names). The generators are
vectorized numpy, so the benchmark (`benchmarks/bench_guard.py`) draws 100,000 codes per family
in seconds; `tests/integration/test_guard_corpus.py` draws a smaller sample and adds hypothesis strategies
over the same families.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.config import ClinicConfig

COLUMN_OF_KIND = {
    "codes": "client_id",
    "dates": "session_date",
    "scores": "total",
    "other": "instrument",
}
KINDS = tuple(COLUMN_OF_KIND)

Rng = np.random.Generator

_HEX = np.array(list("0123456789abcdef"))
_DIGITS = np.array(list("0123456789"))
_UPPER = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_B32 = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
_B58 = np.array(list("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"))
_ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))


def _chars(rng: Rng, alphabet: np.ndarray, n: int, length: int) -> np.ndarray:
    picks = alphabet[rng.integers(0, len(alphabet), size=(n, length))]
    return np.array(["".join(row) for row in picks], dtype=object)


def _num(rng: Rng, n: int, lo: int, hi: int, width: int = 0) -> np.ndarray:
    values = rng.integers(lo, hi, size=n)
    return np.array([f"{v:0{width}d}" for v in values], dtype=object)


def _pick(rng: Rng, options: list[str] | tuple[str, ...], n: int) -> np.ndarray:
    return np.array(options, dtype=object)[rng.integers(0, len(options), size=n)]


def _join(*parts: np.ndarray | str) -> list[str]:
    n = max(len(p) for p in parts if not isinstance(p, str))
    cols = [[p] * n if isinstance(p, str) else list(p) for p in parts]
    return ["".join(row) for row in zip(*cols, strict=True)]


def _mixed(rng: Rng, n: int, makers: list[Callable[[Rng, int], list[str]]]) -> list[str]:
    """n values, each from one of `makers` chosen at random (shapes of one family)."""
    which = rng.integers(0, len(makers), size=n)
    out: list[str] = [""] * n
    for i, make in enumerate(makers):
        at = np.flatnonzero(which == i)
        for j, v in zip(at, make(rng, len(at)), strict=True):
            out[j] = v
    return out


# ------------------------------------------------------------------------- pseudonym families


def case_numbers(rng: Rng, n: int) -> list[str]:
    """Case numbers with a year: K-2025-58225, AZ_2019_00017, 2025-58225."""
    years = _num(rng, n, 1995, 2031)
    return _mixed(
        rng,
        n,
        [
            lambda r, k: _join(
                _chars(r, _UPPER, k, 1), "-", years[:k], "-", _num(r, k, 0, 10**5, 5)
            ),
            lambda r, k: _join(
                _chars(r, _UPPER, k, 2), "_", years[:k], "_", _num(r, k, 0, 10**5, 5)
            ),
            lambda r, k: _join(_chars(r, _UPPER, k, 3), "-", years[:k], "-", _num(r, k, 1, 10**6)),
            lambda r, k: _join(years[:k], "-", _num(r, k, 0, 10**5, 5)),
        ],
    )


def site_prefixed(rng: Rng, n: int) -> list[str]:
    """Site or clinic prefixes: S01-0012345, RIV-000123, CLN12_00045, B7-1234."""
    return _mixed(
        rng,
        n,
        [
            lambda r, k: _join(_chars(r, _UPPER, k, 1), _num(r, k, 0, 100, 2), "-", _num(r, k, 0, 10**7, 7)),
            lambda r, k: _join(_chars(r, _UPPER, k, 3), "-", _num(r, k, 0, 10**6, 6)),
            lambda r, k: _join(_chars(r, _UPPER, k, 3), _num(r, k, 0, 100, 2), "_", _num(r, k, 0, 10**5, 5)),
            lambda r, k: _join(_chars(r, _UPPER, k, 1), _num(r, k, 1, 10), "-", _num(r, k, 1, 10**4)),
        ],
    )  # fmt: skip


def hex_prefixed(rng: Rng, n: int) -> list[str]:
    """Prefixed hex hashes of several lengths: HX-6a05805975, PSN_3f2a9c..."""
    lengths = (8, 10, 12, 16, 20, 32)
    return _mixed(
        rng,
        n,
        [
            lambda r, k, ln=ln: _join(_pick(r, ("HX-", "PSN_", "h-", "ID-", "X"), k), _chars(r, _HEX, k, ln))
            for ln in lengths
        ],
    )  # fmt: skip


def hex_bare(rng: Rng, n: int) -> list[str]:
    """Bare hex digests: 8, 10, 12, 16, 32 (MD5), 40 (SHA-1) and 64 (SHA-256) characters."""
    lengths = (8, 10, 12, 16, 32, 40, 64)
    return _mixed(rng, n, [lambda r, k, ln=ln: list(_chars(r, _HEX, k, ln)) for ln in lengths])


def uuids(rng: Rng, n: int) -> list[str]:
    """UUID v4, lower and upper case (36 characters)."""
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
    out = []
    for i, (a, b) in enumerate(raw):
        u = str(uuid.UUID(int=(int(a) << 64 | int(b)) & ((1 << 128) - 1), version=4))
        out.append(u.upper() if i % 3 == 0 else u)
    return out


def redcap_ids(rng: Rng, n: int) -> list[str]:
    """REDCap record ids: auto-numbered (1-6 digits), and with a data-access-group prefix
    (12-345), as REDCap writes them."""
    return _mixed(
        rng,
        n,
        [
            lambda r, k: list(_num(r, k, 1, 10**6)),
            lambda r, k: _join(_num(r, k, 1, 1000), "-", _num(r, k, 1, 10**5)),
        ],
    )


def dotted_codes(rng: Rng, n: int) -> list[str]:
    """Dotted site.year.sequence codes: 13.2018.71514 (a clinic declares their pattern)."""
    return _join(
        _num(rng, n, 10, 100), ".", _num(rng, n, 1995, 2031), ".", _num(rng, n, 10**4, 10**5)
    )


DOTTED_PATTERN = r"^\d{2}\.\d{4}\.\d{5}$"


def numeric_codes(rng: Rng, n: int) -> list[str]:
    """Plain numbers of 4-12 digits, some zero-padded."""
    width = rng.integers(4, 13, size=n)
    values = rng.integers(0, 10**12, size=n)
    return [
        f"{v % 10**w:0{w}d}" if i % 2 else str(max(v % 10**w, 10 ** (w - 1)))
        for i, (v, w) in enumerate(zip(values, width, strict=True))
    ]


def base_tokens(rng: Rng, n: int) -> list[str]:
    """Base32 and base58 tokens of 8-26 characters, with at least one digit (the default code
    pattern asks for one; see docs/validation.md for tokens without)."""

    def with_digit(alphabet: np.ndarray, digits: np.ndarray, r: Rng, k: int) -> list[str]:
        ln = int(r.integers(8, 27))
        tokens = _chars(r, alphabet, k, ln)
        at = r.integers(0, ln, size=k)
        d = _chars(r, digits, k, 1)
        return [t[:a] + x + t[a + 1 :] for t, a, x in zip(tokens, at, d, strict=True)]

    b58_digits = np.array(list("123456789"))
    b32_digits = np.array(list("234567"))
    return _mixed(
        rng,
        n,
        [
            lambda r, k: with_digit(_B58, b58_digits, r, k),
            lambda r, k: with_digit(_B32, b32_digits, r, k),
            lambda r, k: with_digit(_B32, b32_digits, r, k),
            lambda r, k: with_digit(_B58, b58_digits, r, k),
        ],
    )


def underscore_codes(rng: Rng, n: int) -> list[str]:
    """Codes with "_": c_17, site_03_client_0042, T100A_2."""
    return _mixed(
        rng,
        n,
        [
            lambda r, k: _join(_pick(r, ("c_", "client_", "pt_", "k_"), k), _num(r, k, 1, 10**5)),
            lambda r, k: _join("site_", _num(r, k, 0, 100, 2), "_client_", _num(r, k, 0, 10**4, 4)),
            lambda r, k: _join(_chars(r, _ALNUM, k, 5), "_", _num(r, k, 0, 100)),
        ],
    )


@dataclass(frozen=True)
class Family:
    name: str
    example: str
    make: Callable[[Rng, int], list[str]]
    # the clinic config it is judged under: the 3-key reference config unless it declares
    # its client pattern
    client_pattern: str | None = None


PSEUDONYM_FAMILIES: tuple[Family, ...] = (
    Family("case number with year", "K-2025-58225", case_numbers),
    Family("site/clinic prefix", "S01-0012345", site_prefixed),
    Family("prefixed hex hash", "HX-6a05805975", hex_prefixed),
    Family("bare hex hash", "6a05805975c1", hex_bare),
    Family("UUID v4", "0f8fad5b-d9cb-469f-a165-70867728950e", uuids),
    Family("REDCap record id", "12-345", redcap_ids),
    Family("dotted code (declared pattern)", "13.2018.71514", dotted_codes, DOTTED_PATTERN),
    Family("numeric code, 4-12 digits", "0012345678", numeric_codes),
    Family("base32/base58 token", "3mKzQpT9bwx", base_tokens),
    Family("code with _", "site_03_client_0042", underscore_codes),
)

# Legitimate values of the other column kinds: what the guard must let through there.


def session_dates(rng: Rng, n: int) -> list[str]:
    """Dates under the default format, and timestamps as Qualtrics and EHRs write them."""
    days = np.datetime64("2015-01-01") + rng.integers(0, 4000, size=n).astype("timedelta64[D]")
    hms = rng.integers(0, 86400, size=n)
    out = []
    for i, (d, s) in enumerate(zip(days, hms, strict=True)):
        t = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        out.append([str(d), f"{d} {t}", f"{d}T{t}Z", f"{d} {t[:5]}"][i % 4])
    return out


def scores(rng: Rng, n: int) -> list[str]:
    """Totals and means as exports write them: 36.5, 27, 4.25, 3.916666667, 3,5."""
    whole = rng.integers(0, 41, size=n)
    tenth = rng.integers(0, 10, size=n)
    mean = rng.uniform(1, 5, size=n)
    forms = [
        lambda i: str(whole[i]),
        lambda i: f"{whole[i]}.{tenth[i]}",
        lambda i: f"{mean[i]:.2f}",
        lambda i: f"{mean[i]:.9f}",
        lambda i: f"{whole[i]},{tenth[i]}",
    ]
    return [forms[i % len(forms)](i) for i in range(n)]


def labels(rng: Rng, n: int) -> list[str]:
    """Instrument and status labels."""
    words = ("SRS", "ORS", "PHQ-9", "GAD-7", "WAI-SR", "attended", "cancelled", "no_show")
    return list(_pick(rng, words, n))


LEGIT_OF_KIND: dict[str, Family] = {
    "dates": Family("session dates and timestamps", "2026-05-01 10:03:33", session_dates),
    "scores": Family("scores", "3.916666667", scores),
    "other": Family("instrument and status labels", "PHQ-9", labels),
}


# ------------------------------------------------------------------------ identifier families

# Phone formats: N a digit 1-9, X any digit. Eight national plans and more, each with and
# without the country code and in the punctuation people use.
PHONE_FORMATS: tuple[str, ...] = (
    # United States / Canada
    "(NXX) NXX-XXXX", "NXX-NXX-XXXX", "NXX.NXX.XXXX", "NXX NXX XXXX", "+1 NXX NXX XXXX",
    "+1-NXX-NXX-XXXX", "+1 (NXX) NXX-XXXX", "1-NXX-NXX-XXXX", "+1NXXNXXXXXX",
    "(NXX) NXX-XXXX ext. 12", "NXX-NXX-XXXX x123",
    # Germany
    "030 NXXXXXX", "030/NXXXXXX", "030-NXXXXXX", "+49 30 NXXXXXX", "+49 (0)30 NXXXXXX",
    "0049 30 NXXXXXX", "0171 NXXXXXX", "+49 171 NXXXXXX", "089 NX XX XX", "+4930NXXXXXX",
    "00493NXXXXXXXX",
    # United Kingdom
    "020 7NXX XXXX", "+44 20 7NXX XXXX", "07700 9NXXXX", "+44 7700 9NXXXX", "(020) 7NXX XXXX",
    "020-7NXX-XXXX", "+44 (0)20 7NXX XXXX",
    # France
    "01 NX XX XX XX", "01.NX.XX.XX.XX", "06 NX XX XX XX", "+33 1 NX XX XX XX", "+33 6 NX XX XX XX",
    "06-NX-XX-XX-XX",
    # Japan
    "03-NXXX-XXXX", "090-NXXX-XXXX", "+81 3-NXXX-XXXX", "+81 90 NXXX XXXX", "(03) NXXX-XXXX",
    # Australia
    "(02) NXXX XXXX", "02 NXXX XXXX", "+61 2 NXXX XXXX", "04NX XXX XXX", "+61 4NX XXX XXX",
    "02-NXXX-XXXX",
    # India
    "9XXXX XXXXX", "+91 9XXXX XXXXX", "+91-9XXXX-XXXXX", "9XXXX-XXXXX", "011 NXXX XXXX",
    # Spain
    "91N XXX XXX", "+34 91N XXX XXX", "6XX XX XX XX", "6XX-XXX-XXX", "+34 6XX XXX XXX",
    # Italy
    "06 NXXX XXXX", "+39 06 NXXX XXXX", "3XX NXXXXXX", "3XX-NXXXXXX", "+39 3XX NXXXXXX",
    # Switzerland / Austria / Netherlands
    "044 NXX XX XX", "+41 44 NXX XX XX", "+43 1 NXXXXXX", "01/NXXXXXX", "020-NXXXXXX",
    "06-NXXXXXXX", "+31 6 NXXXXXXX",
    # Brazil
    "(11) 9NXXX-XXXX", "+55 11 9NXXX-XXXX",
    # Unicode punctuation
    "030\u00a0NXXXXXX", "+49\u202f30\u202fNXXXXXX", "NXX\u2013NXX\u2013XXXX", "Tel. 030 NXXXXXX",
)  # fmt: skip


def phones(rng: Rng, n: int) -> list[str]:
    fmt = _pick(rng, PHONE_FORMATS, n)
    out = []
    for f in fmt:
        digits = iter(rng.integers(0, 10, size=len(f)).tolist())
        nz = iter(rng.integers(1, 10, size=len(f)).tolist())
        out.append(
            "".join(str(next(digits)) if c == "X" else str(next(nz)) if c == "N" else c for c in f)
        )
    return out


def emails(rng: Rng, n: int) -> list[str]:
    user = _pick(rng, ("jane.doe", "j.roe", "max+alliance", "Test_User", "anna-lena"), n)
    host = _pick(rng, ("example.org", "example.com", "mail.example.net", "EXAMPLE.DE"), n)
    return _join(user, _num(rng, n, 0, 100), "@", host)


def ssns(rng: Rng, n: int) -> list[str]:
    sep = _pick(rng, ("-", " "), n)
    return _join(
        _num(rng, n, 900, 1000), sep, _num(rng, n, 10, 100), sep, _num(rng, n, 1000, 10**4)
    )


def ips(rng: Rng, n: int) -> list[str]:
    v4 = _join(
        _pick(rng, ("192.0.2.", "198.51.100.", "203.0.113.", "10.0.0."), n), _num(rng, n, 1, 255)
    )
    v6 = _join("2001:db8::", _chars(rng, _HEX, n, 4), ":", _chars(rng, _HEX, n, 4))
    v6_full = _join("2001:0db8:85a3:0000:0000:8a2e:", _chars(rng, _HEX, n, 4), ":7334")
    forms = [v4, v6, v6_full]
    return [forms[i % 3][i] for i in range(n)]


def urls(rng: Rng, n: int) -> list[str]:
    path = _num(rng, n, 1, 10**5)
    forms = (
        "https://example.org/patient/", "http://www.example.com/p?id=", "www.example.org/",
        "example.com/record/", "https://portal.example.net/c/", "ftp://files.example.org/",
    )  # fmt: skip
    return _join(_pick(rng, forms, n), path)


GIVEN = ("Jane", "John", "Anna-Lena", "Jürgen", "Zoë", "Mary Ann", "O'Brien", "José")
FAMILY = ("Doe", "Roe", "Müller", "Smith-Jones", "de la Cruz", "Nguyen", "Øster", "D'Angelo")
SCRIPT_NAMES = (
    "Иван Петров", "Анна Смирнова", "Γιώργος Παπαδόπουλος", "山田 太郎", "김 민준",
    "محمد علي", "דוד כהן", "Nguyễn Văn An", "Ayşe Yılmaz", "Łukasz Wójcik",
)  # fmt: skip


def names(rng: Rng, n: int) -> list[str]:
    g, f = _pick(rng, GIVEN, n), _pick(rng, FAMILY, n)
    forms = [
        lambda i: f"{g[i]} {f[i]}",
        lambda i: f"{f[i]}, {g[i]}",
        lambda i: f"{g[i][0]}. {f[i]}",
        lambda i: f"{g[i].lower()} {f[i].lower()}",
        lambda i: f"Dr. {g[i]} {f[i]}",
        lambda i: SCRIPT_NAMES[i % len(SCRIPT_NAMES)],
    ]
    return [forms[i % len(forms)](i) for i in range(n)]


def dates_of_birth(rng: Rng, n: int) -> list[str]:
    days = np.datetime64("1935-01-01") + rng.integers(0, 25000, size=n).astype("timedelta64[D]")
    months = ("January", "March", "July", "October", "Dezember", "mars")
    out = []
    for i, d in enumerate(days):
        y, m, dd = str(d).split("-")
        out.append(
            [
                f"{y}-{m}-{dd}",
                f"{dd}.{m}.{y}",
                f"{m}/{dd}/{y}",
                f"{int(dd)} {months[i % 6]} {y}",
                f"{months[i % 6]} {int(dd)}, {y}",
                f"{y}/{m}/{dd}",
            ][i % 6]
        )
    return out


def addresses(rng: Rng, n: int) -> list[str]:
    no = _num(rng, n, 1, 999)
    forms = [
        lambda i: f"{no[i]} Main Street",
        lambda i: f"{no[i]} Elm St.",
        lambda i: f"Flat 2, {no[i]} Example Road",
        lambda i: f"Musterstraße {no[i]}",
        lambda i: f"Beispielweg {no[i]}a",
        lambda i: f"{no[i]} rue de l'Exemple, 75002 Paris",
        lambda i: f"Calle Mayor {no[i]}",
        lambda i: f"Hauptstr. {no[i]}, 10115 Berlin",
        lambda i: f"PO Box {no[i]}",
        lambda i: f"{no[i]} Sample Avenue, Springfield",
    ]
    return [forms[i % len(forms)](i) for i in range(n)]


def coordinates(rng: Rng, n: int) -> list[str]:
    lat = rng.uniform(-80, 80, size=n)
    lon = rng.uniform(-179, 179, size=n)
    forms = [
        lambda i: f"{lat[i]:.6f}, {lon[i]:.6f}",
        lambda i: f"{lat[i]:.4f},{lon[i]:.4f}",
        lambda i: f"{abs(lat[i]):.5f}° N, {abs(lon[i]):.5f}° E",
        lambda i: f"{int(abs(lat[i]))}°{int(abs(lat[i]) * 60 % 60)}′12″N {int(abs(lon[i]))}°5′6″W",
        lambda i: f"{lat[i]:.6f} {lon[i]:.6f}",
    ]
    return [forms[i % len(forms)](i) for i in range(n)]


IDENTIFIER_FAMILIES: tuple[Family, ...] = (
    Family("phone number", "+49 30 1234567", phones),
    Family("e-mail", "jane.doe@example.org", emails),
    Family("SSN", "900-12-3456", ssns),
    Family("IP address", "192.0.2.17", ips),
    Family("URL", "https://example.org/patient/17", urls),
    Family("personal name", "Jane Doe", names),
    Family("date of birth", "1985-03-14", dates_of_birth),
    Family("street address", "12 Main Street", addresses),
    Family("GPS coordinates", "52.520008, 13.404954", coordinates),
)

# Where the guard's own verdict is not the protection: a date in a date column is a session
# date to the guard (a date of birth there is indistinguishable from one), and a name where
# a date, score or label belongs fails that column's shape, so it is withheld ("[withheld]")
# wherever it is stored and never loaded. These pairs are measured as "exposed" only.
SHAPE_PROTECTED: frozenset[tuple[str, str]] = frozenset(
    {("date of birth", "dates"), ("personal name", "dates"), ("personal name", "scores"),
     ("personal name", "other")}
)  # fmt: skip


def config_for(family: Family) -> ClinicConfig:
    cfg = ClinicConfig(clinic_id="corpus", timezone="Europe/Berlin", format="reference")
    if family.client_pattern:
        cfg = cfg.model_copy(update={"client_code_pattern": family.client_pattern})
    return cfg


# Pairs the guard does not judge: a date in a date column is a (session) date to it.
NOT_APPLICABLE: frozenset[tuple[str, str]] = frozenset({("date of birth", "dates")})


def judge(values: list[str], kind: str, cfg: ClinicConfig) -> tuple[np.ndarray, np.ndarray]:
    """The guard's verdict on each value placed in a column of `kind`: (flagged, exposed).
    Flagged: the guard redacts it and quarantines its row. Exposed: not flagged and of the
    shape its column expects, so it could be loaded or stored as delivered in quarantine (a
    value of another shape is stored as "[withheld]" and never loaded)."""
    import pandas as pd
    import pyarrow as pa

    from pipelines.ingest.guard import scan_values
    from pipelines.ingest.quarantine import expected_shape

    col = COLUMN_OF_KIND[kind]
    _, mask = scan_values(pa.table({col: pa.array(values, pa.string())}), cfg)
    flagged = np.zeros(len(values), dtype=bool)
    flagged[mask.loc[mask["column"] == col, "row"].to_numpy(dtype="int64")] = True
    shape = expected_shape(col, cfg)
    text = pd.Series(values, dtype="string").str.strip()
    fits = text.str.fullmatch(shape, case=False).fillna(False).to_numpy(dtype=bool)
    return flagged, ~flagged & fits
