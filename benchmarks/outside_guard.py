"""An outside evaluation of the de-identification guard: pseudonyms and identifiers from a
generator that shares no code with the corpus the guard was tuned on (`tests/guard_corpus.py`).

Every value is synthetic: names are composed from random syllables (or random characters of a
script), numbers are random digits in real national layouts (checksums not computed), e-mail
domains are random words. The families follow what clinics, survey tools and other generators
really produce: case numbers with slashes and check letters, UUID v1/v4/v7, ULIDs, nanoids,
base32/base58/hex hashes, REDCap record ids, Qualtrics ResponseIds, study codes of several
countries and scripts; names in eleven scripts, e-mails of many shapes, phone numbers of 30
countries in E.164 and national layouts, national id and insurance numbers, IBANs, postal
addresses, dates of birth written in text.

Each value is put in a column of each kind, as the product would meet it, and judged by
`pipelines.ingest.guard.scan_values` under the 3-key reference config:

* codes: ``client_id``; dates: ``session_date``; scores: ``total``; other: ``instrument``;
  episode: ``episode_id`` (an "other" column the clinic maps freely, with no expected shape).
* A pseudonym is a false positive when the guard flags it; it is *not loadable* when, unflagged,
  it still fails the default code pattern (validation then holds its row back).
* An identifier is a guard miss when the guard does not flag it, and *exposed* when it is not
  flagged and fits what its column would store as delivered (a code column: the code pattern;
  episode: anything).

    .venv/bin/python -m benchmarks.outside_guard [--n 20000] [--out benchmarks/results/outside_guard.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import string
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Gen = Callable[[random.Random], str]

# ----------------------------------------------------------------------------- helpers


def _d(r: random.Random, k: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(k))


def _nz(r: random.Random, k: int) -> str:
    """k digits, the first not 0."""
    return r.choice("123456789") + _d(r, k - 1)


def _tok(r: random.Random, alphabet: str, k: int) -> str:
    return "".join(r.choice(alphabet) for _ in range(k))


def _one(*makers: Gen) -> Gen:
    return lambda r: r.choice(makers)(r)


def _birth(r: random.Random) -> dt.date:
    return dt.date(1930, 1, 1) + dt.timedelta(days=r.randrange(0, 365 * 80))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_NANO = string.ascii_letters + string.digits + "_-"
_ALNUM = string.ascii_letters + string.digits

# ---------------------------------------------------------------------- pseudonym families


def _case_slash(r: random.Random) -> str:
    y = r.randint(1998, 2030)
    return r.choice(
        [
            f"{y}/{_d(r, 5)}",
            f"{_d(r, r.randint(3, 6))}/{y}",
            f"{r.randint(1, 9999)}/{y % 100:02d}",
            f"{r.choice(['A', 'B', 'K', 'St', 'Amb'])}{y % 100:02d}/{_d(r, 4)}",
        ]
    )


def _case_prefix_year(r: random.Random) -> str:
    y = r.randint(1998, 2030)
    p = _tok(r, string.ascii_uppercase, r.randint(1, 3))
    return r.choice(
        [
            f"{p}-{y % 100:02d}-{_d(r, 4)}",
            f"{p}{y}{_d(r, 5)}",
            f"{p}-{y}-{_d(r, r.randint(3, 6))}",
            f"{p}_{y % 100:02d}_{_d(r, 3)}",
            f"{y}-{p}-{_d(r, 4)}",
        ]
    )


def _check_letter(r: random.Random) -> str:
    return r.choice(
        [
            f"{r.choice(string.ascii_uppercase)}{_d(r, 6)}-{r.choice(string.ascii_uppercase)}",
            f"{_d(r, 7)}-{r.randint(0, 9)}",
            f"{r.choice(string.ascii_uppercase)}{_d(r, 7)}{r.choice(string.ascii_uppercase)}",
            f"{_d(r, 6)}{r.choice('ABCDEFGHJK')}",
            f"{_d(r, 8)}-{_d(r, 2)}",
        ]
    )


def _uuid(r: random.Random) -> str:
    kind = r.randrange(3)
    if kind == 0:  # v4
        u = uuid.UUID(int=r.getrandbits(128), version=4)
    elif kind == 1:  # v1: time-based, random node
        ts = r.getrandbits(60)
        u = uuid.UUID(
            fields=(
                ts & 0xFFFFFFFF,
                (ts >> 32) & 0xFFFF,
                ((ts >> 48) & 0x0FFF) | 0x1000,
                0x80 | r.getrandbits(6),
                r.getrandbits(8),
                r.getrandbits(48),
            )
        )
    else:  # v7: 48-bit Unix ms, version 7, variant 10
        ms = r.randint(1_600_000_000_000, 1_900_000_000_000)
        value = (ms << 80) | (0x7 << 76) | (r.getrandbits(12) << 64) | (0b10 << 62)
        value |= r.getrandbits(62)
        u = uuid.UUID(int=value)
    text = str(u)
    return text.upper() if r.random() < 0.5 else text


def _ulid(r: random.Random) -> str:
    return _tok(r, "01234567", 1) + _tok(r, _CROCKFORD, 25)


def _nanoid(r: random.Random) -> str:
    return _tok(r, _NANO, r.choice([21, 21, 12, 16]))


def _b32(r: random.Random) -> str:
    t = _tok(r, _B32, r.choice([16, 26, 32, 52]))
    return t.lower() if r.random() < 0.3 else t


def _b58(r: random.Random) -> str:
    return _tok(r, _B58, r.choice([11, 16, 22, 32, 44]))


def _hex(r: random.Random) -> str:
    t = _tok(r, "0123456789abcdef", r.choice([6, 10, 12, 16, 20, 24, 32, 40, 56, 64]))
    return t.upper() if r.random() < 0.3 else t


def _redcap(r: random.Random) -> str:
    return r.choice(
        [
            str(r.randint(1, 20000)),
            f"{r.randint(1, 40)}-{r.randint(1, 999)}",
            f"{r.randint(100, 9999)}-{r.randint(1, 9999)}",
        ]
    )


def _response_id(r: random.Random) -> str:
    return "R_" + _tok(r, _ALNUM, r.choice([15, 17]))


def _initials(r: random.Random) -> str:
    a = _tok(r, string.ascii_uppercase, r.randint(2, 3))
    return r.choice(
        [f"{a}{_d(r, 4)}", f"{a}-{_d(r, 3)}", f"{a.lower()}{_d(r, 5)}", f"{a}{_d(r, 2)}"]
    )


def _study_de_fr_nl_nordic(r: random.Random) -> str:
    y = r.randint(2015, 2030)
    return r.choice(
        [
            f"PAT-{_d(r, 4)}",
            f"Pat{_d(r, 5)}",
            f"KLI-{y}-{_d(r, 3)}",
            f"{r.choice(['BER', 'HH', 'MUC', 'K'])}-P{_d(r, 3)}",
            f"PT{r.randint(1, 99):02d}-{_d(r, 4)}",
            f"{r.choice(['NL', 'AMC', 'UMCU'])}-{_d(r, 4)}",
            f"DEEL{_d(r, 3)}",
            f"SE{r.randint(1, 21):02d}-{_d(r, 3)}",
            f"FP-{_d(r, 2)}-{_d(r, 4)}",
            f"NO{_d(r, 5)}",
            f"Sujet_{_d(r, 3)}",
            f"Proband{_d(r, 3)}",
            f"CH-{_d(r, 2)}-{_d(r, 3)}",
        ]
    )


_NON_ASCII_CODES = "ÄÖÜÅÆØÉÇŁŽЖДКЛМΑΒΓΔΚΛ"


def _non_ascii_code(r: random.Random) -> str:
    p = "".join(r.choice(_NON_ASCII_CODES) for _ in range(r.randint(1, 3)))
    return r.choice([f"{p}-{_d(r, 4)}", f"{p}{_d(r, 3)}", f"{p}-{r.randint(10, 30)}-{_d(r, 3)}"])


def _date_case(r: random.Random) -> str:
    """Case numbers built from the intake date (year first): 20240117-003, 2024-01-17/12."""
    d = dt.date(2015, 1, 1) + dt.timedelta(days=r.randrange(0, 365 * 15))
    return r.choice([f"{d:%Y%m%d}-{_d(r, 3)}", f"{d:%Y%m%d}{_d(r, 2)}", f"A{d:%y%m%d}{_d(r, 2)}"])


PSEUDONYMS: dict[str, tuple[str, Gen]] = {
    "case number with slash": ("2024/00317", _case_slash),
    "case number prefix+year": ("KL-24-0031", _case_prefix_year),
    "check digit or letter": ("P000123-B", _check_letter),
    "UUID v1/v4/v7, upper and lower": ("0190A3C2-...", _uuid),
    "ULID": ("01HV...", _ulid),
    "nanoid (A-Za-z0-9_-)": ("V1StGXR8_Z5jdHi6B-myT", _nanoid),
    "base32 hash": ("MZXW6YTBOI...", _b32),
    "base58 hash": ("3yQ...", _b58),
    "hex hash 6-64": ("9f86d081...", _hex),
    "REDCap record id (DAG prefix)": ("12-3", _redcap),
    "Qualtrics ResponseId": ("R_1a2B3c4D5e6F7g8", _response_id),
    "initials+digits": ("AB1234", _initials),
    "DE/FR/NL/Nordic study codes": ("KLI-2024-017", _study_de_fr_nl_nordic),
    "non-ASCII letters": ("ÄÖ-1234", _non_ascii_code),
    "intake-date case number": ("20240117-003", _date_case),
}

# --------------------------------------------------------------------- identifier families

_LAT_ON = ["b", "br", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m", "n", "p",
           "pr", "r", "s", "sch", "st", "t", "tr", "v", "w", "z", "ž", "š", "č", "ł", "ñ", "sz"]  # fmt: skip
_LAT_V = ["a", "e", "i", "o", "u", "á", "é", "í", "ó", "ú", "ä", "ö", "ü", "å", "ø", "ę", "ą",
          "ã", "ô", "ı", "ğ", "ễ"]  # fmt: skip
_LAT_CO = ["", "", "n", "r", "s", "l", "k", "m", "tz", "rd", "nd", "ck", "rt"]
_CYR_C = "бвгджзклмнпрстфхцчшщ"
_CYR_V = "аеиоуыэюя"
_GRK_C = "βγδζθκλμνξπρστφχψ"
_GRK_V = "αεηιουωάέήίόύώ"
_ARA = "بتثجحخدذرزسشصضطظعغفقكلمنهوي"
_HEB = "אבגדהוזחטיכלמנסעפצקרשת"
_DEV_C = "कखगघचजटडतदनपबमयरलवसह"
_DEV_M = ["ा", "ि", "ी", "ु", "ू", "े", "ै", "ो", "ौ", "", "ं", "्"]
_THAI_C = "กขคงจฉชซญดตถทธนบปผพฟมยรลวศสหอฮ"
_THAI_M = ["ั", "ิ", "ี", "ึ", "ุ", "ู", "็", "่", "้", ""]


def _latin_word(r: random.Random, syl: tuple[int, int] = (2, 3)) -> str:
    w = "".join(
        r.choice(_LAT_ON) + r.choice(_LAT_V) + r.choice(_LAT_CO) for _ in range(r.randint(*syl))
    )
    return w[0].upper() + w[1:]


def _cyr_word(r: random.Random) -> str:
    w = "".join(r.choice(_CYR_C) + r.choice(_CYR_V) for _ in range(r.randint(2, 3)))
    w += r.choice(["", "ов", "ова", "ин", "ина", "ский", "енко", "ич"])
    return w[0].upper() + w[1:]


def _grk_word(r: random.Random) -> str:
    w = "".join(r.choice(_GRK_C) + r.choice(_GRK_V) for _ in range(r.randint(2, 3)))
    w += r.choice(["ς", "ος", "ης", "ου", "ίδης", "α"])
    return w[0].upper() + w[1:]


def _chars_word(r: random.Random, alphabet: str, k: tuple[int, int]) -> str:
    return "".join(r.choice(alphabet) for _ in range(r.randint(*k)))


def _dev_word(r: random.Random) -> str:
    return "".join(r.choice(_DEV_C) + r.choice(_DEV_M) for _ in range(r.randint(2, 3)))


def _thai_word(r: random.Random) -> str:
    return "".join(r.choice(_THAI_C) + r.choice(_THAI_M) for _ in range(r.randint(2, 4)))


def _han(r: random.Random, k: int) -> str:
    return "".join(chr(r.randint(0x4E00, 0x9FA5)) for _ in range(k))


def _hangul(r: random.Random, k: int) -> str:
    return "".join(chr(r.randint(0xAC00, 0xD7A3)) for _ in range(k))


def _kana(r: random.Random, k: int) -> str:
    return "".join(chr(r.randint(0x30A2, 0x30F3)) for _ in range(k))


def _name_latin(r: random.Random) -> str:
    g, f = _latin_word(r), _latin_word(r)
    return r.choice(
        [
            f"{g} {f}",
            f"{f}, {g}",
            f"{f.upper()} {g}",
            f"{g[0]}. {f}",
            f"{g} {_latin_word(r)} {f}",
            f"{g}-{_latin_word(r)} {f}",
            f"{g} {r.choice(['de la', 'van der', 'von', 'di', 'al', 'ben'])} {f}",
            f"{g} O'{f}",
            f"{r.choice(['Dr.', 'Fr.', 'Hr.', 'Mme', 'Mr.', 'Mrs.'])} {g} {f}",
            f"{f.lower()} {g.lower()}",
        ]
    )


def _name_other_script(r: random.Random) -> str:
    which = r.randrange(9)
    if which == 0:
        return f"{_cyr_word(r)} {_cyr_word(r)}"
    if which == 1:
        return f"{_grk_word(r)} {_grk_word(r)}"
    if which == 2:
        return f"{_chars_word(r, _ARA, (3, 6))} {_chars_word(r, _ARA, (3, 7))}"
    if which == 3:
        return f"{_chars_word(r, _HEB, (3, 6))} {_chars_word(r, _HEB, (3, 6))}"
    if which == 4:
        return f"{_dev_word(r)} {_dev_word(r)}"
    if which == 5:
        return f"{_thai_word(r)} {_thai_word(r)}"
    if which == 6:  # Chinese: family then given, with or without a space
        return _han(r, 1) + r.choice(["", " "]) + _han(r, r.randint(1, 2))
    if which == 7:  # Korean
        return _hangul(r, 1) + r.choice(["", " "]) + _hangul(r, 2)
    return _kana(r, r.randint(2, 4)) + r.choice([" ", "\u3000"]) + _kana(r, r.randint(2, 4))


def _name_single(r: random.Random) -> str:
    return r.choice([_latin_word(r, (2, 4)), _cyr_word(r), _grk_word(r), _han(r, 3)])


def _domain(r: random.Random) -> str:
    return _latin_word(r).lower().replace("ł", "l")


def _ascii(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-_"))


def _email(r: random.Random) -> str:
    g, f = _ascii(_latin_word(r)).lower() or "x", _ascii(_latin_word(r)).lower() or "y"
    tld = r.choice(["de", "fr", "nl", "se", "org", "com", "co.uk", "com.br", "online", "museum"])
    dom = _ascii(_domain(r)) or "dom"
    return r.choice(
        [
            f"{g}.{f}@{dom}.{tld}",
            f"{g}+alliance@{dom}.{tld}",
            f"{g[0]}{f}{r.randint(1, 99)}@mail.{dom}.{tld}",
            f"{g.upper()}.{f.upper()}@{dom.upper()}.{tld.upper()}",
            f"mailto:{g}@{dom}.{tld}",
            f"<{g}_{f}@{dom}.{tld}>",
            f"{g}@{_domain(r)}.{tld}",  # internationalised domain
            f"{_latin_word(r).lower()}@{dom}.{tld}",  # internationalised local part
            f"{g} [at] {dom} [dot] {tld}",
            f"{g}(at){dom}.{tld}",
            f"{g}@[192.0.2.{r.randint(1, 254)}]",
            f'"{g} {f}"@{dom}.{tld}',
            f"{g}＠{dom}.{tld}",  # full-width at sign
        ]
    )


def _phone_national(r: random.Random) -> str:
    """National layouts of 30 countries (random digits)."""
    layouts = [
        lambda: f"({_nz(r, 3)}) {_nz(r, 3)}-{_d(r, 4)}",  # US/CA
        lambda: f"{_nz(r, 3)}.{_nz(r, 3)}.{_d(r, 4)}",
        lambda: f"0{r.randint(20, 29)} {_d(r, 4)} {_d(r, 4)}",  # UK London
        lambda: f"07{_d(r, 3)} {_d(r, 6)}",  # UK mobile
        lambda: f"0{r.randint(30, 89)}/{_nz(r, 7)}",  # DE
        lambda: f"01{r.randint(51, 79)}-{_nz(r, 8)}",  # DE mobile
        lambda: f"0{r.randint(1, 9)} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)}",  # FR
        lambda: f"0{r.randint(1, 9)}.{_d(r, 2)}.{_d(r, 2)}.{_d(r, 2)}.{_d(r, 2)}",
        lambda: f"06-{_nz(r, 8)}",  # NL mobile
        lambda: f"0{r.randint(10, 99)}-{_nz(r, 7)}",  # NL
        lambda: f"0{r.randint(470, 499)} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)}",  # BE
        lambda: f"3{_d(r, 2)} {_d(r, 7)}",  # IT mobile
        lambda: f"6{_d(r, 2)} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)}",  # ES
        lambda: (
            f"9{r.randint(1, 8)}{_d(r, 1)}-{_d(r, 2)}-{_d(r, 2)}-{_d(r, 2)}"
        ),  # ES landline dashed
        lambda: f"07{r.randint(0, 9)}-{_nz(r, 3)} {_d(r, 2)} {_d(r, 2)}",  # SE
        lambda: f"{r.choice('49')}{_d(r, 2)} {_d(r, 2)} {_d(r, 3)}",  # NO (8 digits)
        lambda: f"{r.randint(20, 99)} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)}",  # DK (8 digits)
        lambda: f"04{r.randint(0, 9)} {_d(r, 3)} {_d(r, 4)}",  # FI
        lambda: f"{r.randint(5, 8)}{_d(r, 2)}-{_d(r, 3)}-{_d(r, 3)}",  # PL mobile dashed
        lambda: f"{r.randint(12, 89)}-{_nz(r, 3)}-{_d(r, 2)}-{_d(r, 2)}",  # PL landline dashed
        lambda: f"{r.randint(601, 799)} {_d(r, 3)} {_d(r, 3)}",  # CZ
        lambda: f"08{r.randint(3, 9)} {_d(r, 3)} {_d(r, 4)}",  # IE
        lambda: f"04{_d(r, 2)} {_d(r, 3)} {_d(r, 3)}",  # AU mobile
        lambda: f"(0{r.randint(2, 8)}) {_d(r, 4)} {_d(r, 4)}",  # AU landline
        lambda: f"0{r.choice(['7', '8', '9'])}0-{_nz(r, 4)}-{_d(r, 4)}",  # JP mobile
        lambda: f"1{r.randint(3, 9)}{_d(r, 1)}-{_d(r, 4)}-{_d(r, 4)}",  # CN mobile dashed
        lambda: f"1{r.randint(3, 9)}{_d(r, 1)} {_d(r, 4)} {_d(r, 4)}",  # CN mobile spaced
        lambda: f"{r.randint(6, 9)}{_d(r, 4)} {_d(r, 5)}",  # IN
        lambda: f"({r.randint(11, 99)}) 9{_d(r, 4)}-{_d(r, 4)}",  # BR
        lambda: f"{r.randint(11, 99)}-9{_d(r, 4)}-{_d(r, 4)}",  # BR dashed
        lambda: f"{r.randint(11, 99)} {_d(r, 4)} {_d(r, 4)}",  # MX
        lambda: f"{r.randint(33, 81)}-{_nz(r, 4)}-{_d(r, 4)}",  # MX dashed
        lambda: f"0{r.randint(60, 84)} {_d(r, 3)} {_d(r, 4)}",  # ZA
        lambda: f"8 ({r.randint(900, 999)}) {_d(r, 3)}-{_d(r, 2)}-{_d(r, 2)}",  # RU
        lambda: f"8-{r.randint(900, 999)}-{_d(r, 3)}-{_d(r, 2)}-{_d(r, 2)}",  # RU dashed
        lambda: f"0{r.randint(530, 559)} {_d(r, 3)} {_d(r, 2)} {_d(r, 2)}",  # TR
        lambda: f"010-{_nz(r, 4)}-{_d(r, 4)}",  # KR
        lambda: f"05{r.randint(0, 8)}-{_nz(r, 3)}-{_d(r, 4)}",  # IL
        lambda: f"05{r.randint(0, 8)} {_d(r, 3)} {_d(r, 4)}",  # AE
        lambda: f"{r.randint(8, 9)}{_d(r, 3)} {_d(r, 4)}",  # SG/HK (8 digits)
        lambda: f"0{r.randint(6, 7)}{_d(r, 2)}/{_d(r, 3)} {_d(r, 2)} {_d(r, 2)}",  # AT/CH
    ]
    return r.choice(layouts)()


def _phone_e164(r: random.Random) -> str:
    cc = r.choice(["1", "44", "49", "33", "31", "32", "39", "34", "46", "47", "45", "358", "48",
                   "420", "353", "61", "81", "86", "91", "55", "52", "27", "7", "90", "82",
                   "972", "971", "65", "852", "43", "41", "351", "30"])  # fmt: skip
    rest = _nz(r, max(7, 11 - len(cc) + r.randint(-1, 1)))
    return r.choice(
        [
            f"+{cc}{rest}",
            f"+{cc} {rest[:3]} {rest[3:]}",
            f"00{cc} {rest[:2]} {rest[2:]}",
            f"+{cc}-{rest[:3]}-{rest[3:6]}-{rest[6:]}",
            f"+{cc} ({rest[:1]}) {rest[1:]}",
            f"tel:+{cc}{rest}",
            f"+{cc}.{rest[:3]}.{rest[3:]}",
        ]
    )


_ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
_PERSIAN = "۰۱۲۳۴۵۶۷۸۹"
_DEVANAGARI_D = "०१२३४५६७८९"
_FULLWIDTH = "０１２３４５６７８９"


def _phone_other_digits(r: random.Random) -> str:
    """A phone number in the digits of another script (Arabic-Indic, Persian, Devanagari,
    full-width), as keyboards of those locales write them."""
    ascii_phone = r.choice([_phone_national, _phone_e164])(r).removeprefix("tel:")
    digits = r.choice([_ARABIC_INDIC, _PERSIAN, _DEVANAGARI_D, _FULLWIDTH])
    out = "".join(digits[int(c)] if c.isdigit() else c for c in ascii_phone)
    return out.replace("+", "＋") if digits == _FULLWIDTH and r.random() < 0.5 else out


def _national_id(r: random.Random) -> str:
    b = _birth(r)
    layouts = [
        lambda: f"{_nz(r, 3)}-{_d(r, 2)}-{_d(r, 4)}",  # US SSN
        lambda: (
            f"{r.choice('ABCEGHJKLMNPRSTWXYZ')}{r.choice('ABCEGHJKLMNPRSTWXYZ')} {_d(r, 2)} {_d(r, 2)} {_d(r, 2)} {r.choice('ABCD')}"
        ),  # UK NINO spaced
        lambda: f"{_d(r, 3)} {_d(r, 3)} {_d(r, 4)}",  # UK NHS number
        lambda: f"{_d(r, 2)} {b:%d%m%y} {r.choice(string.ascii_uppercase)} {_d(r, 3)}",  # DE RVNR
        lambda: f"{_d(r, 2)} {_d(r, 3)} {_d(r, 3)} {_d(r, 3)}",  # DE Steuer-ID
        lambda: (
            f"{r.randint(1, 2)} {b:%y} {b:%m} {_d(r, 2)} {_d(r, 3)} {_d(r, 3)} {_d(r, 2)}"
        ),  # FR NIR
        lambda: f"{b:%y%m%d}-{_d(r, 4)}",  # SE personnummer
        lambda: f"{b:%Y%m%d}-{_d(r, 4)}",  # SE long form
        lambda: f"{b:%d%m%y}-{_d(r, 4)}",  # DK CPR
        lambda: (
            f"{b:%d%m%y}{r.choice('-A')}{_d(r, 3)}{r.choice('0123456789ABCDEFHJKLMNPRSTUVWXY')}"
        ),  # FI HETU
        lambda: f"{b:%d%m%y} {_d(r, 5)}",  # NO fødselsnummer spaced
        lambda: f"{_d(r, 4)}.{_d(r, 2)}.{_d(r, 3)}",  # NL BSN dotted
        lambda: f"756.{_d(r, 4)}.{_d(r, 4)}.{_d(r, 2)}",  # CH AHV
        lambda: f"{_d(r, 4)} {b:%d%m%y}",  # AT SVNR
        lambda: f"{b:%y}.{b:%m}.{b:%d}-{_d(r, 3)}.{_d(r, 2)}",  # BE national number
        lambda: f"{_d(r, 8)}{r.choice(['-', ''])}{r.choice('TRWAGMYFPDXBNJZSQVHLCKE')}",  # ES DNI
        lambda: (
            f"{_tok(r, string.ascii_uppercase, 6)}{b:%y}{r.choice('ABCDEHLMPRST')}{b:%d}{r.choice(string.ascii_uppercase)}{_d(r, 3)}{r.choice(string.ascii_uppercase)}"
        ),  # IT codice fiscale
        lambda: f"{_d(r, 3)}.{_d(r, 3)}.{_d(r, 3)}-{_d(r, 2)}",  # BR CPF
        lambda: f"{b:%y%m%d}-{r.randint(1, 4)}{_d(r, 6)}",  # KR RRN
        lambda: f"MRN: {_d(r, 8)}",
        lambda: f"Medicare {_d(r, 4)} {_d(r, 5)} {r.randint(1, 9)}",  # AU Medicare
        lambda: f"{r.choice(string.ascii_uppercase)}{_d(r, 9)}",  # DE KVNR
    ]
    return r.choice(layouts)()


def _iban(r: random.Random) -> str:
    country, bban = r.choice(
        [
            ("DE", lambda: _d(r, 18)),
            ("AT", lambda: _d(r, 16)),
            ("CH", lambda: _d(r, 17)),
            ("FR", lambda: _d(r, 23)),
            ("GB", lambda: _tok(r, string.ascii_uppercase, 4) + _d(r, 14)),
            ("NL", lambda: _tok(r, string.ascii_uppercase, 4) + _d(r, 10)),
            ("BE", lambda: _d(r, 12)),
            ("ES", lambda: _d(r, 20)),
            ("IT", lambda: r.choice(string.ascii_uppercase) + _d(r, 22)),
            ("PL", lambda: _d(r, 24)),
            ("SE", lambda: _d(r, 20)),
            ("DK", lambda: _d(r, 14)),
            ("NO", lambda: _d(r, 11)),
            ("FI", lambda: _d(r, 14)),
        ]
    )
    compact = f"{country}{_d(r, 2)}{bban()}"
    if r.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _address(r: random.Random) -> str:
    w = _latin_word(r)
    n = r.randint(1, 240)
    layouts = [
        lambda: f"{w}straße {n}, {_d(r, 5)} {_latin_word(r)}",
        lambda: f"{w}weg {n}a",
        lambda: f"{n} rue {w}, {_d(r, 5)} {_latin_word(r)}",
        lambda: (
            f"{w}straat {n}, {_d(r, 4)} {_tok(r, 'ABCDEFGHJKLMNPRSTVWXZ', 2)} {_latin_word(r)}"
        ),  # NL
        lambda: f"{w}laan {n}",
        lambda: f"{w}gatan {n}, {_d(r, 3)} {_d(r, 2)} {_latin_word(r)}",  # SE
        lambda: f"{w}gade {n}, {_d(r, 4)} {_latin_word(r)}",  # DK
        lambda: f"{w}veien {n}, {_d(r, 4)} {_latin_word(r)}",  # NO
        lambda: f"{w}tie {n} A {r.randint(1, 40)}, {_d(r, 5)} {_latin_word(r)}",  # FI
        lambda: f"Via {w} {n}, {_d(r, 5)} {_latin_word(r)}",
        lambda: f"Calle {w} {n}, {_d(r, 5)} {_latin_word(r)}",
        lambda: f"Rua {w}, {n}, {_d(r, 4)}-{_d(r, 3)} {_latin_word(r)}",  # PT
        lambda: f"ul. {w} {n}/{r.randint(1, 40)}, {_d(r, 2)}-{_d(r, 3)} {_latin_word(r)}",  # PL
        lambda: (
            f"{n} {w} Street, {_latin_word(r)} {_tok(r, 'ABCDEFGHJKLMNPRSTUWYZ', 2)}{r.randint(1, 9)} {r.randint(1, 9)}{_tok(r, 'ABDEFGHJLNPQRSTUWXYZ', 2)}"
        ),  # UK
        lambda: f"{n} {w} Rd",
        lambda: (
            f"{_tok(r, 'ABDEFGHJLNPRSTWY', 2)}{r.randint(1, 20)} {r.randint(1, 9)}{_tok(r, 'ABDEFGHJLNPQRSTUWXYZ', 2)}"
        ),  # UK postcode alone
        lambda: f"ул. {_cyr_word(r)}, д. {n}, кв. {r.randint(1, 99)}",  # RU
        lambda: (
            f"{_han(r, 3)}区{_han(r, 2)}{r.randint(1, 9)}-{r.randint(1, 30)}-{r.randint(1, 20)}"
        ),  # JP
        lambda: f"{w}plein {n}",
        lambda: f"{w}gasse {n}/{r.randint(1, 20)}",
        lambda: f"{n}, {w} Avenue",
        lambda: f"P.O. Box {_d(r, 4)}",
    ]
    return r.choice(layouts)()


_MONTHS = ["January", "März", "mars", "marzo", "maart", "mars", "Oct.", "Dez", "juli", "août",
           "марта", "Μαΐου"]  # fmt: skip


def _dob_text(r: random.Random) -> str:
    b = _birth(r)
    m = r.choice(_MONTHS)
    layouts = [
        lambda: f"geb. {b:%d.%m.%Y}",
        lambda: f"born {b.day} {m} {b.year}",
        lambda: f"DOB: {b:%Y-%m-%d}",
        lambda: f"né le {b.day} {m} {b.year}",
        lambda: f"{b:%d/%m/%y}",
        lambda: f"{b.day}.{b.month}.{b:%y}",
        lambda: f"{b:%d-%m-%y}",
        lambda: f"{b.year}年{b.month}月{b.day}日",
        lambda: f"{b.day} {m} {b.year} г.",
        lambda: f"*{b:%d.%m.%Y}",
        lambda: f"{b:%d%b%Y}".upper(),
        lambda: f"{b:%Y-%m-%d}T00:00:00",
        lambda: f"{b:%m/%d/%Y}",
    ]
    return r.choice(layouts)()


def _ip_url(r: random.Random) -> str:
    return r.choice(
        [
            f"192.0.2.{r.randint(1, 254)}:{r.randint(1000, 9999)}",
            f"2001:db8::{r.randint(1, 0xFFFF):x}",
            f"https://{_ascii(_domain(r))}.example/patient/{_d(r, 5)}",
            f"{_ascii(_domain(r))}.example.net",
            f"www.{_ascii(_domain(r))}.se",
        ]
    )


IDENTIFIERS: dict[str, tuple[str, Gen]] = {
    "name, Latin with diacritics": ("Brána Schöltz", _name_latin),
    "name, other scripts (Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, CJK, Hangul, kana)": (
        "Бора Ликова",
        _name_other_script,
    ),
    "name, one word": ("Drenáschmo", _name_single),
    "e-mail, many shapes": ("g+alliance@dom.de", _email),
    "phone, national layouts (30 countries)": ("8-912-345-67-89", _phone_national),
    "phone, E.164 and 00 prefix": ("+46 701 234567", _phone_e164),
    "phone, other digit scripts": ("٠١٥١-١٢٣٤٥٦٧٨", _phone_other_digits),
    "national id / insurance number": ("850709-1234", _national_id),
    "IBAN": ("DE12 3456 ...", _iban),
    "postal address": ("Kerkstraat 12, 1012 AB ...", _address),
    "date of birth in text": ("geb. 12.03.1985", _dob_text),
    "IP address / URL": ("192.0.2.7:8080", _ip_url),
}

# ------------------------------------------------- families added with guard version 4
# Each drawn from its own seeded generator (`random.Random(f"{seed}:{family}")`), so the
# families above keep the draws, and the figures, they had before these were added.

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_B36 = string.digits + string.ascii_lowercase
_WORDS_A = ["quiet", "brave", "amber", "lucky", "misty", "sunny", "swift", "calm", "bold",
            "rapid", "silver", "gentle", "happy", "little", "purple", "cosmic", "eager"]  # fmt: skip
_WORDS_N = ["otter", "falcon", "maple", "river", "pebble", "comet", "lantern", "meadow",
            "walrus", "heron", "cedar", "badger", "willow", "harbor", "ember", "tulip"]  # fmt: skip


def _snowflake(r: random.Random) -> str:
    """Twitter/Discord-style snowflakes: ms timestamp << 22 | worker | sequence (18-19 digits)."""
    ms = r.randint(1_300_000_000_000, 1_800_000_000_000) - 1_288_834_974_657
    return str((ms << 22) | r.getrandbits(22))


def _ksuid_cuid(r: random.Random) -> str:
    return r.choice(
        [
            lambda: _tok(r, _B62, 27),  # KSUID
            lambda: "c" + _tok(r, _B36, 24),  # cuid
            lambda: r.choice(string.ascii_lowercase) + _tok(r, _B36, r.choice([23, 9, 31])),
            lambda: _tok(r, "0123456789abcdef", 24),  # MongoDB ObjectId
            lambda: _tok(r, "0123456789ABCDEF", 24),
        ]
    )()


def _hashid(r: random.Random) -> str:
    """hashids / sqids: short mixed-case tokens of 4-10 characters."""
    return _tok(r, _ALNUM, r.randint(4, 10))


def _crockford_grouped(r: random.Random) -> str:
    k, g = r.choice([(3, 4), (4, 4), (2, 5), (4, 3)])
    text = "-".join(_tok(r, _CROCKFORD, g) for _ in range(k))
    return text.lower() if r.random() < 0.2 else text


def _site_year_seq_check(r: random.Random) -> str:
    cc = _tok(r, string.ascii_uppercase, 2)
    site = _tok(r, string.ascii_uppercase, 3)
    y = r.randint(2010, 2030)
    return r.choice(
        [
            f"{cc}-{site}-{y}-{_d(r, 4)}-{r.randint(0, 9)}",
            f"{site}-{y}-{_d(r, 4)}-{r.choice('0123456789X')}",
            f"{cc}{site}{y}{_d(r, 4)}{r.randint(0, 9)}",
            f"{cc}-{site}-{y % 100:02d}-{_d(r, 3)}-{r.choice(string.ascii_uppercase)}",
            f"{site}/{y}/{_d(r, 4)}-{r.randint(0, 9)}",
        ]
    )


def _diceware(r: random.Random) -> str:
    a, n = r.choice(_WORDS_A), r.choice(_WORDS_N)
    k = r.randint(1, 999)
    return r.choice(
        [
            f"client-{a}-{n}-{k}",
            f"{a}-{n}-{k}",
            f"{a}_{n}_{k:03d}",
            f"{a.capitalize()}{n.capitalize()}{k}",
            f"{a}-{n}-{r.choice(_WORDS_N)}-{k}",
        ]
    )


def _spreadsheet_mangled(r: random.Random) -> str:
    """Codes after a spreadsheet: a float column's ".0", lost leading zeros, scientific form."""
    n = _nz(r, r.randint(9, 15))
    return r.choice(
        [
            f"{_nz(r, r.randint(3, 10))}.0",
            str(int("000" + _d(r, r.randint(3, 6))) or 7),
            f"{n[0]}.{n[1 : r.randint(3, 6)].rstrip('0') or '1'}E+{len(n) - 1}",
            f"{n[0]},{n[1:6]}E+{len(n) - 1}",
        ]
    )


def _spaced_code(r: random.Random) -> str:
    return r.choice(
        [
            f"PT {_d(r, 4)}",
            f"Client {r.randint(1, 999)}",
            f"{_tok(r, string.ascii_uppercase, 3)} {_d(r, 3)} {_d(r, 2)}",
            f"Site {r.randint(1, 20)} Client {r.randint(1, 999)}",
        ]
    )


def _numeric_grouped_code(r: random.Random) -> str:
    """Numeric codes in digit groups: subject-visit, year-sequence, kit numbers."""
    y = r.randint(2010, 2030)
    return r.choice(
        [
            f"{y}-{_d(r, 4)}-{_d(r, 4)}",
            f"{_d(r, 5)}-{_d(r, 3)}",
            f"{_d(r, 3)}-{_d(r, 3)}",
            f"{_d(r, 2)}-{_d(r, 3)}-{_d(r, 3)}",
            f"{_d(r, 6)}-{_d(r, 2)}",
        ]
    )


PSEUDONYMS_V4: dict[str, tuple[str, Gen]] = {
    "Snowflake id (18-19 digits)": ("1541815603606036480", _snowflake),
    "KSUID, cuid/cuid2, ObjectId": ("ck9x8...", _ksuid_cuid),
    "hashids/sqids (4-10 chars)": ("jR3kPq", _hashid),
    "Crockford base32 in groups": ("7ZQM-4H2K-9XTB", _crockford_grouped),
    "site+year+sequence+check": ("NL-AMS-2025-0412-7", _site_year_seq_check),
    "word pseudonym (diceware)": ("client-quiet-otter-42", _diceware),
    "spreadsheet-mangled code": ("12345.0, 1.23E+11", _spreadsheet_mangled),
    "code with spaces": ("PT 0412", _spaced_code),
    "numeric code in digit groups": ("2024-0412-0007", _numeric_grouped_code),
}


def _name_latin_more(r: random.Random) -> str:
    g, f, m = _latin_word(r), _latin_word(r), _latin_word(r)
    return r.choice(
        [
            f"{f}, {g} {m[0]}.",
            f"{f.upper()}, {g.upper()}",
            f"{g} {r.choice(['van der', 'de la', 'bin', 'von und zu', 'dos'])} {f}",
            f"{g} al-{f}",
            f"{g} {f}-{m}",
            f"{f}-{m}, {g}",
            f"{r.choice(['Dr.', 'Mx.', 'Prof. Dr.', 'Dr', 'Ms', 'Sr.', 'Sra.'])} {g} {f}",
            f"{g} {f} {r.choice(['Jr.', 'III', 'MD', 'PhD'])}",
            f"{g[0]}.{m[0]}. {f}",
            f"{f}, {g[0]}.",
            f"{g}.{f}",
            f"{g}_{f}",
        ]
    )


def _email_more(r: random.Random) -> str:
    g, f = _ascii(_latin_word(r)).lower() or "x", _ascii(_latin_word(r)).lower() or "y"
    dom = _ascii(_domain(r)) or "dom"
    return r.choice(
        [
            f"{g}+{_tok(r, string.ascii_lowercase, 5)}@{dom}.example",
            f"{g}.{f}@mail.{dom}.example.org",
            f"{g}@xn--{_tok(r, string.ascii_lowercase, 6)}-{_tok(r, 'abcdefghijklmnopqrstuvwxyz0123456789', 3)}.example",
            f"{g} at {dom} dot org",
            f"{g}.{f} AT {dom} DOT de",
            f"{g}{{at}}{dom}{{dot}}fr",
            f"{g} (at) {dom} (dot) nl",
            f"{g}@{dom}",  # intranet address, no dot in the domain
            f"{g}%40{dom}.example",  # URL-encoded at sign
        ]
    )


def _phone_more(r: random.Random) -> str:
    letters = "ABCDEFGHIJKLMNOPRSTUVWXY"
    return r.choice(
        [
            lambda: f"({_nz(r, 3)}) {_nz(r, 3)}-{_d(r, 4)} x{_d(r, r.randint(2, 4))}",
            lambda: f"{_nz(r, 3)}-{_nz(r, 3)}-{_d(r, 4)} ext. {_d(r, r.randint(1, 4))}",
            lambda: f"+49 30 {_nz(r, 7)}-{_d(r, 2)}",
            lambda: f"1-800-{_tok(r, letters, 7)}",
            lambda: f"1-{r.choice(['800', '888', '877'])}-{_tok(r, letters, 3)}-{_d(r, 4)}",
            lambda: f"+1 {_nz(r, 3)} {_tok(r, letters, 3)} {_d(r, 4)}",
            lambda: f"{_nz(r, 3)}{_nz(r, 3)}{_d(r, 4)}x{_d(r, 3)}",
            lambda: f"+{r.choice(['44', '49', '33', '31'])}(0){_nz(r, 3)} {_d(r, 6)}",
            lambda: f"tel. {_nz(r, 3)}/{_d(r, 7)}",
        ]
    )()


def _national_id_more(r: random.Random) -> str:
    b = _birth(r)
    return r.choice(
        [
            lambda: f"{r.randint(2, 9)}{_d(r, 3)} {_d(r, 4)} {_d(r, 4)}",  # IN Aadhaar spaced
            lambda: f"{r.randint(2, 9)}{_d(r, 3)}-{_d(r, 4)}-{_d(r, 4)}",  # Aadhaar dashed
            lambda: f"{_d(r, 6)}{b:%Y%m%d}{_d(r, 3)}{r.choice('0123456789X')}",  # CN resident id
            lambda: f"{_d(r, 6)}{b:%Y%m%d}{_d(r, 3)}X",  # CN, check character X
            lambda: f"{b:%y%m%d}{_d(r, 4)}{r.randint(0, 1)}8{_d(r, 1)}",  # ZA id (13 digits)
            lambda: f"{b:%y%m%d}-{r.randint(1, 4)}{_d(r, 6)}",  # KR RRN
            lambda: f"{_d(r, 3)}-{_d(r, 3)}-{_d(r, 4)}",  # NHS number dashed
            lambda: f"{_nz(r, 3)}.{_d(r, 2)}.{_d(r, 4)}",  # SSN dotted
            lambda: f"SSN: {_nz(r, 3)}{_d(r, 2)}{_d(r, 4)}",
            lambda: f"SSN {_nz(r, 3)}-{_d(r, 2)}-{_d(r, 4)}",
            lambda: f"MRN-{_d(r, 8)}",
            lambda: f"MRN#{_d(r, 7)}",
            lambda: (
                f"{r.choice(['SIN', 'CPF', 'PESEL', 'BSN', 'DNI', 'NIF', 'PPSN', 'CHI'])}: {_d(r, 9)}"
            ),
            lambda: f"{r.choice(['Chart', 'Med Rec', 'Member ID', 'Policy', 'Acct'])} #{_d(r, 8)}",
            lambda: f"{_d(r, 4)} {_d(r, 4)} {_d(r, 4)} {_d(r, 4)}",  # payment card
            lambda: f"{r.choice('3456')}{_d(r, 3)}-{_d(r, 4)}-{_d(r, 4)}-{_d(r, 4)}",
        ]
    )()


def _postal_code_alone(r: random.Random) -> str:
    up = string.ascii_uppercase
    return r.choice(
        [
            lambda: f"{_d(r, 5)}-{_d(r, 4)}",  # US ZIP+4
            lambda: (
                f"{r.choice('ABCEGHJKLMNPRSTVXY')}{r.randint(0, 9)}{r.choice(up)} {r.randint(0, 9)}{r.choice(up)}{r.randint(0, 9)}"
            ),  # CA
            lambda: f"{_d(r, 4)} {_tok(r, 'ABCDEFGHJKLMNPRSTVWXZ', 2)}",  # NL
            lambda: f"D-{_d(r, 5)}",
            lambda: f"{_d(r, 2)}-{_d(r, 3)}",  # PL
            lambda: f"ZIP {_d(r, 5)}",
        ]
    )()


def _network_device(r: random.Random) -> str:
    hx = "0123456789ABCDEF"
    pairs = [_tok(r, hx, 2) for _ in range(6)]
    return r.choice(
        [
            lambda: ":".join(pairs),
            lambda: "-".join(pairs),
            lambda: "-".join(pairs).lower(),
            lambda: ".".join("".join(pairs[i : i + 2]) for i in (0, 2, 4)).lower(),  # Cisco
            lambda: f"2001:db8:{_tok(r, hx, 4).lower()}::{_tok(r, hx, 3).lower()}",
            lambda: f"fe80::{_tok(r, hx, 4).lower()}:{_tok(r, hx, 4).lower()}%eth0",
            lambda: f"[2001:db8::{_tok(r, hx, 2).lower()}]:{r.randint(1000, 9999)}",
            lambda: f"::ffff:192.0.2.{r.randint(1, 254)}",
            lambda: f"https://t.me/{_ascii(_latin_word(r)).lower()}",
            lambda: f"instagram.com/{_ascii(_latin_word(r)).lower()}",
            lambda: f"linkedin.com/in/{_ascii(_latin_word(r)).lower()}-{_d(r, 4)}",
            lambda: f"{_ascii(_domain(r))}.social/@{_ascii(_latin_word(r)).lower()}",
            lambda: f"{_ascii(_domain(r))}.fr/{_ascii(_latin_word(r)).lower()}",
        ]
    )()


_MONTHS_MORE = ["January", "Feb", "MAR", "Apr", "Mai", "juin", "Jul", "ago", "Sept", "okt",
                "Nov", "dic"]  # fmt: skip


def _dob_locales(r: random.Random) -> str:
    b = _birth(r)
    m = r.choice(_MONTHS_MORE)
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(b.day, "th")
    return r.choice(
        [
            lambda: f"{b.day:02d}-{m}-{b.year}",
            lambda: f"{b.day:02d}-{m.upper()[:3]}-{b:%y}",
            lambda: f"{m}-{b.day:02d}-{b.year}",
            lambda: f"{b.year}-{m}-{b.day:02d}",
            lambda: f"{b.day}{suffix} {m} {b.year}",
            lambda: f"{m} {b.day}{suffix}, {b.year}",
            lambda: f"{b.day} de {r.choice(['marzo', 'enero', 'julio'])} de {b.year}",
            lambda: f"{b.day}. {m} {b.year}",
            lambda: f"{b.year}년 {b.month}월 {b.day}일",
            lambda: f"{b.year}/{b.month}/{b.day}",
            lambda: f"{b:%Y.%m.%d}.",
            lambda: f"{b.day}/{b.month}/{b.year}",
            lambda: f"{b:%d.%m.%Y} ({dt.date.today().year - b.year} J.)",
        ]
    )()


def _coordinates(r: random.Random) -> str:
    lat, lon = r.uniform(-60, 70), r.uniform(-170, 170)
    return r.choice(
        [
            lambda: f"N {abs(lat):.4f}, E {abs(lon):.4f}",
            lambda: f"geo:{lat:.5f},{lon:.5f}",
            lambda: f"POINT({lon:.5f} {lat:.5f})",
            lambda: f"@{lat:.4f},{lon:.4f},15z",
            lambda: f"{lat:.3f}, {lon:.3f}",
            lambda: f"{lat:.6f};{lon:.6f}",
            lambda: (
                f"{abs(int(lat))}°{r.randint(0, 59)}'{r.randint(0, 59)}\"N {abs(int(lon))}°{r.randint(0, 59)}'{r.randint(0, 59)}\"E"
            ),
            lambda: (
                f"{_tok(r, '23456789CFGHJMPQRVWX', 4)}{_tok(r, '23456789CFGHJMPQRVWX', 4)}+{_tok(r, '23456789CFGHJMPQRVWX', 2)}"
            ),  # plus code
        ]
    )()


IDENTIFIERS_V4: dict[str, tuple[str, Gen]] = {
    "name: Last, First M.; particles; titles; caps; dotted": (
        "Schöltz, Brána M.",
        _name_latin_more,
    ),
    "e-mail: plus-tags, subdomains, punycode, spelt-out": ("g at dom dot org", _email_more),
    "phone: extensions, letters (vanity), (0)": ("(212) 555-0142 x12", _phone_more),
    "national id: Aadhaar, CN, ZA, labelled, payment card": ("2345 6789 0123", _national_id_more),
    "postal code alone": ("12345-6789", _postal_code_alone),
    "MAC, IPv6 forms, social-profile URL": ("00-1A-2B-3C-4D-5E", _network_device),
    "date of birth, more locales": ("12-Mar-1985", _dob_locales),
    "geographic coordinates, more forms": ("N 52.5200, E 13.4050", _coordinates),
}

# ------------------------------------------------------------------------------ judging

COLUMN_OF_KIND = {
    "codes": "client_id",
    "dates": "session_date",
    "scores": "total",
    "other": "instrument",
    "episode": "episode_id",
}


def _config():  # type: ignore[no-untyped-def]
    from pipelines.config import ClinicConfig

    return ClinicConfig(clinic_id="outside", timezone="Europe/Berlin", format="reference")


def guard_verdict(values: list[str], kind: str) -> tuple[list[bool], list[bool]]:
    """(flagged, exposed) for each value in a column of `kind`, as the product judges it."""
    import pyarrow as pa

    from pipelines.ingest.guard import scan_values
    from pipelines.ingest.quarantine import expected_shape

    cfg = _config()
    col = COLUMN_OF_KIND[kind]
    _, mask = scan_values(pa.table({col: pa.array(values, pa.string())}), cfg)
    hit = set(mask.loc[mask["column"] == col, "row"].tolist())
    flagged = [i in hit for i in range(len(values))]
    shape = expected_shape(col, cfg)
    rx = re.compile(shape, re.IGNORECASE) if shape is not None else None
    fits = [rx is None or rx.fullmatch(v.strip()) is not None for v in values]
    return flagged, [f and not g for f, g in zip(fits, flagged, strict=True)]


def _sample(r: random.Random, gen: Gen, n: int) -> list[str]:
    return [gen(r) for _ in range(n)]


def _examples(values: list[str], hits: list[bool], k: int = 4) -> list[str]:
    return sorted({v for v, h in zip(values, hits, strict=True) if h})[:k]


def _judge_pseudonyms(name: str, example: str, values: list[str]) -> dict:  # type: ignore[type-arg]
    from pipelines.config import DEFAULT_CODE_PATTERN

    default = re.compile(DEFAULT_CODE_PATTERN)
    flagged, _ = guard_verdict(values, "codes")
    unfit = [not g and default.fullmatch(v) is None for v, g in zip(values, flagged, strict=True)]
    return {
        "family": name,
        "example": example,
        "codes": len(values),
        "guard_false_positive_rate": sum(flagged) / len(values),
        "not_loadable_default_pattern_rate": sum(unfit) / len(values),
        "examples_flagged": _examples(values, flagged),
        "examples_not_loadable": _examples(values, unfit),
    }


def _judge_identifiers(name: str, example: str, values: list[str]) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for kind in COLUMN_OF_KIND:
        flagged, exposed = guard_verdict(values, kind)
        missed = [not f for f in flagged]
        out.append(
            {
                "family": name,
                "example": example,
                "column_kind": kind,
                "values": len(values),
                "guard_miss_rate": sum(missed) / len(values),
                "exposure_rate": sum(exposed) / len(values),
                "examples_missed": _examples(values, missed),
                "examples_exposed": _examples(values, exposed),
            }
        )
    return out


def sample_v4(family: str, n: int, seed: int = 4242) -> list[str]:
    """``n`` values of a family added with guard version 4, from its own seeded generator."""
    table = PSEUDONYMS_V4 if family in PSEUDONYMS_V4 else IDENTIFIERS_V4
    r = random.Random(f"{seed}:{family}")
    return _sample(r, table[family][1], n)


def run(n_codes: int, n_ids: int, seed: int, families: str = "all") -> dict:  # type: ignore[type-arg]
    """``families``: "all", "v3" (the first 27, drawn from one shared generator as before) or
    "v4" (the families added with guard version 4, each from its own)."""
    from pipelines.ingest.guard import GUARD_VERSION

    pseud, ids = [], []
    if families in ("all", "v3"):
        r = random.Random(seed)
        for name, (example, gen) in PSEUDONYMS.items():
            pseud.append(_judge_pseudonyms(name, example, _sample(r, gen, n_codes)))
        for name, (example, gen) in IDENTIFIERS.items():
            ids.extend(_judge_identifiers(name, example, _sample(r, gen, n_ids)))
    if families in ("all", "v4"):
        for name, (example, _) in PSEUDONYMS_V4.items():
            values = sample_v4(name, n_codes, seed)
            pseud.append({**_judge_pseudonyms(name, example, values), "added": "v4"})
        for name, (example, _) in IDENTIFIERS_V4.items():
            values = sample_v4(name, n_ids, seed)
            ids.extend({**i, "added": "v4"} for i in _judge_identifiers(name, example, values))
    return {
        "benchmark": "outside_guard",
        "guard_version": GUARD_VERSION,
        "seed": seed,
        "pseudonym_families": pseud,
        "identifier_families": ids,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codes", type=int, default=100_000, help="codes per pseudonym family")
    ap.add_argument("--identifiers", type=int, default=20_000, help="values per identifier family")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--families", choices=("all", "v3", "v4"), default="all")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.process_time()
    out = run(args.codes, args.identifiers, args.seed, args.families)
    out["cpu_seconds"] = round(time.process_time() - t0, 1)
    for p in out["pseudonym_families"]:
        print(
            f"FP {p['guard_false_positive_rate']:8.4%}  unloadable "
            f"{p['not_loadable_default_pattern_rate']:8.4%}  {p['family']}  "
            f"{p['examples_flagged'][:2]} {p['examples_not_loadable'][:2]}"
        )
    for i in out["identifier_families"]:
        print(
            f"miss {i['guard_miss_rate']:8.4%} exposed {i['exposure_rate']:8.4%}  "
            f"{i['column_kind']:7} {i['family'][:40]}  {i['examples_exposed'][:2]} "
            f"{i['examples_missed'][:2]}"
        )
    print(f"{out['cpu_seconds']} CPU s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
