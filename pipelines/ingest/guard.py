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

import functools
import re
import string
import unicodedata
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.canonical import REFERENCE_APPOINTMENT_COLUMNS, REFERENCE_MEASURE_COLUMNS
from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected
from pipelines.issues import _replace_cells, empty_issues
from pipelines.registry import ITEM_COLUMNS

REDACTED = "[redacted]"
# The guard's version: part of what a file was judged under
# (`pipelines.ingest.discovery.judge_fingerprint`).
# Raise it with every change that can alter a verdict, so files judged by an older guard are
# judged again and rows it held back wrongly load.
GUARD_VERSION = "4"

# Header judging. A header is cut into tokens (camelCase, "_", "-", spaces and any other
# punctuation split it; lowercase, accents folded, ß -> ss) and judged token by token, never by
# substring: "stage" holds "age" and "redcap_event_name" holds "name" as a token only through
# REDCap's own key column, which is on the safe list below.
# WORDS: a token equal to one of these names an identifier ("Client Name" -> client, name).
_IDENTIFYING_WORDS: frozenset[str] = frozenset(
    {
        # names
        "name", "names", "nom", "nombre", "apellido", "apellidos", "initials", "initialen",
        "surname", "firstname", "lastname", "vorname", "nachname", "prenom",
        # contact
        "email", "mail", "phone", "tel", "telefon", "telephone", "mobile", "handy", "cell",
        "fax", "courriel", "correo", "telefono",
        # address and any geographic unit smaller than a state
        "address", "adresse", "anschrift", "street", "strasse", "road", "city", "town", "ort",
        "stadt", "ville", "ciudad", "zip", "plz", "postcode", "direccion", "hausnummer",
        "county", "district", "neighborhood", "neighbourhood",
        # GPS and location (Qualtrics LocationLatitude / LocationLongitude)
        "latitude", "longitude", "lat", "lng", "lon", "gps", "geo", "geolocation", "location",
        "coordinates", "coords", "breitengrad", "laengengrad",
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
# STEMS: a token, or two to four adjacent tokens written together, that starts with one of
# these ("Telefonnummer", "Geburtsdatum", "date of birth" -> ..., "Medical Record Number" ->
# "medicalrecord...", "ExternalDataReference" -> "externaldatareference").
_IDENTIFYING_STEMS: tuple[str, ...] = (
    "firstname", "lastname", "surname", "fullname", "givenname", "familyname", "middlename",
    "maidenname", "vorname", "nachname", "familienname", "prenom", "patientname", "clientname",
    "klientname", "clinicianname", "therapistname", "recipientname",
    "email", "emailadresse", "phone", "telefon", "teleph", "mobilnummer", "faxnumber",
    "address", "adresse", "anschrift", "strasse", "street", "postcode", "postalcode",
    "postleitzahl", "zipcode", "wohnort", "hausnummer",
    "birth", "geburt", "naissance", "nacimiento", "dateofbirth",
    "socialsecurity", "sozialversicherung", "medicalrecord", "patientennummer",
    "versichertennummer", "versicherungsnummer", "healthplan", "insurancenumber",
    "policynumber", "accountnumber", "kontonummer", "licensenumber", "licencenumber",
    "fuehrerschein", "fuhrerschein", "licenseplate", "kennzeichen", "vehicle", "deviceid",
    "serialnumber", "ipaddress", "latitude", "longitude", "geoloc", "gpscoord",
    "externalreference", "externaldatareference", "externalref", "externalid",
    "freetext", "freitext", "notiz", "kommentar", "bemerkung", "anmerkung", "comment",
    "clinicalnotes", "sessionnotes",
)  # fmt: skip
# Tokens that end in "name" name a person unless what precedes says what is named.
_NAMED_THINGS: tuple[str, ...] = (
    "instrument", "measure", "scale", "questionnaire", "clinic", "site", "event", "form",
    "survey", "group", "file", "program", "programme", "study", "arm", "unit", "team",
    "practice", "service", "dag", "project", "field", "variable", "column", "table", "data",
)  # fmt: skip
# Columns of survey and data-capture tools known to hold no identifier, written as tokens
# joined ("redcap_event_name" -> "redcapeventname"), and the canonical columns.
SAFE_TOOL_COLUMNS: tuple[str, ...] = (
    # REDCap
    "redcap_event_name", "redcap_repeat_instance", "redcap_repeat_instrument",
    "redcap_data_access_group", "redcap_survey_identifier", "redcap_record_id", "record_id",
    "redcap_arm", "redcap_event",
    # Qualtrics
    "ResponseId", "ResponseID", "RecordedDate", "StartDate", "EndDate", "Status", "Finished",
    "Progress", "Duration (in seconds)", "DistributionChannel", "UserLanguage", "ResponseType",
    "SurveyId", "SurveyID",
    # ours
    "instrument_name", "measure_name", "scale_name", "questionnaire_name",
    "instrument_version", "source_file", "source_line", "session_id",
)  # fmt: skip


def _fold(text: str) -> str:
    text = text.replace("ß", "ss").replace("ẞ", "ss")
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _words(header: str) -> list[str]:
    """A header's tokens: camelCase split ("firstName" -> first, name; "IPAddress" ->
    ip, address), then anything not a letter or digit."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})", " ", header)
    return [w for w in re.split(r"[^0-9a-z]+", _fold(spaced)) if w]


def _joined(header: str) -> str:
    return "".join(_words(header))


_SAFE_JOINED: frozenset[str] = frozenset(
    {
        *(_joined(c) for c in SAFE_TOOL_COLUMNS),
        *(_joined(c) for c in REFERENCE_MEASURE_COLUMNS),
        *(_joined(c) for c in REFERENCE_APPOINTMENT_COLUMNS),
    }
)


def _names_a_thing(words: list[str], i: int) -> bool:
    """Whether token ``i`` (a "...name" token) names a thing, not a person."""
    token = words[i]
    if token.endswith("name") and token[: -len("name")] in _NAMED_THINGS:
        return True
    return token in ("name", "names") and i > 0 and words[i - 1] in _NAMED_THINGS


def _identifying(words: list[str]) -> bool:
    for i, w in enumerate(words):
        if w in _IDENTIFYING_WORDS and not _names_a_thing(words, i):
            return True
        if w.endswith("name") and len(w) > 4 and not _names_a_thing(words, i):
            return True  # surname, kundenname, recipientname, ...
        for n in range(1, 5):
            if i + n > len(words):
                break
            gram = "".join(words[i : i + n])
            if gram.startswith(_IDENTIFYING_STEMS) and not (n == 1 and _names_a_thing(words, i)):
                return True
    return False


def identifying_headers(header: list[str], safe: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The header names that say their column holds an identifier, in file order. ``safe``:
    the clinic's own columns known to hold none (config ``safe_columns``), compared as the
    built-in tool columns are (case, spaces, ``_`` and ``-`` do not matter)."""
    own = {_joined(c) for c in safe}
    offending = []
    for raw in header:
        words = _words(raw)
        joined = "".join(words)
        if joined in _SAFE_JOINED or joined in own:
            continue
        if _identifying(words):
            offending.append(raw)
    return offending


def shown_header(header: list[str], index: int) -> str:
    """A header name fit to show in a message, the ledger or a log: the name itself, unless it
    looks like a value that identifies someone (a shifted or headerless export puts data in the
    header line), then ``<column N>``."""
    import re

    name = header[index]
    value_like = (_EMAIL_ASCII, _URL, _IPV4, _IPV6, _SSN)
    if any(re.search(p.replace("(?i)", ""), name, re.IGNORECASE) for p in value_like) or (
        len(re.findall(r"\d", name)) >= 7
    ):
        return f"<column {index + 1}>"
    return name


def check_header(header: list[str], dataset: str, safe: list[str] | tuple[str, ...] = ()) -> None:
    """Raise ``FileRejected("identifying_column", ...)`` when any header names an identifier.

    The message lists the offending header names (headers are not data). Returns None when the
    header is clean; case, spaces, underscores, hyphens and accents do not matter. ``safe``:
    the clinic's ``safe_columns``.
    """
    offending = identifying_headers(header, safe)
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
_EMAIL = (
    r"([\p{L}\p{N}._%+-]+|\"[^\"]+\")(@|%40)([\p{L}\p{N}-]+(\.[\p{L}\p{N}-]+)*\.\p{L}{2,}|\[[0-9.:a-fA-F]+\])"
    r"|(?i)[a-z0-9._%+-]+\s*[\[(<{]\s*(at|@)\s*[\])>}]\s*[a-z0-9-]+"
    r"(\s*([\[(<{]\s*(dot|\.)\s*[\])>}]|\.)\s*[a-z0-9-]+)+"
    # an intranet address, its host without a dot ("anna@praxis"), as a whole value
    r"|^\s*[\p{L}\p{N}._%+-]*\p{L}[\p{L}\p{N}._%+-]*@\p{L}[\p{L}\p{N}-]*\s*$"
    # spelt out with words alone ("anna at example dot org"), as a whole value
    r"|(?i)^\s*[a-z0-9._%+-]+\s+at\s+[a-z0-9-]+((\s+dot\s+|\.)[a-z0-9-]+)*(\s+dot\s+|\.)[a-z]{2,}\s*$"
)
# (Python `re` form, for header names: no \p{..} classes there)
_EMAIL_ASCII = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_URL = (
    r"(?i)(\b[a-z][a-z0-9+.-]*://|\bwww\.[a-z0-9-]+\.|\b[a-z0-9-]+\.(com|org|net|edu|gov|de|at|ch|uk|io|info)(/|\b)"
    # (other top-level domains with a path: a social profile "example.social/@anna", "t.me/x")
    r"|\b[a-z0-9-]+\.(fr|nl|be|lu|it|es|pt|se|no|dk|fi|is|ie|pl|cz|sk|hu|ro|gr|tr|ru|ua|eu|us|"
    r"ca|mx|br|ar|au|nz|in|jp|cn|kr|za|il|me|ly|co|tv|app|dev|page|social|online|site|xyz|link|"
    r"bio)/[@~]?[a-z0-9_])"
)
# (four parts exactly: not inside a longer dotted number such as "01.23.45.67.89")
_IPV4 = r"(^|[^\d.])(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}($|[^\d.]|\.\D|\.$)"
_IPV6 = r"(?i)(\b[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}\b|\b[0-9a-f]{0,4}(:[0-9a-f]{1,4})*::[0-9a-f]{1,4}(:[0-9a-f]{1,4})*\b)"
_SSN = r"\b\d{3}[- .]\d{2}[- .]\d{4}\b"
# GPS coordinates: two signed decimals with at least four places (a pair, or one with a
# hemisphere letter or degree sign); scores have at most two places.
_GPS = (
    r"[-+]?\d{1,3}\.\d{4,}\s*°?\s*[NSEWnsew]?\s*[,;/ ]\s*[-+]?\d{1,3}\.\d{4,}"
    # a pair with three places (about 100 m) and a comma or semicolon between
    r"|^\s*[-+]?\d{1,3}\.\d{3,}\s*[,;]\s*[-+]?\d{1,3}\.\d{3,}\s*$"
    # the hemisphere letter before each number ("N 52.5200, E 13.4050")
    r"|[NSns]\s*\d{1,3}\.\d{3,}\s*°?\s*[,;/ ]\s*[EWew]\s*\d{1,3}\.\d{3,}"
    # an Open Location Code ("9F4MGC22+22"): a "+" no code carries
    r"|(^|\s)[23456789CFGHJMPQRVWX]{4,8}\+[23456789CFGHJMPQRVWX]{2,3}($|[\s,])"
    r"|\d{1,3}\s*°\s*\d{1,2}\s*['′]"
    r"|^\s*[-+]?\d{1,3}\.\d{4,}\s*(°\s*[NSEWnsew]?|[NSEWnsew])\s*$"
)
# A lone high-precision decimal (a latitude or longitude) where no score belongs.
_GPS_LONE = r"^\s*[-+]?\d{1,3}\.\d{5,}\s*$"
# SAS's DATE9 ("12MAR1985"), common in clinical exports: a bare token to the cheap pass
_DATE9 = r"(?i)^\s*(0?[1-9]|[12]\d|3[01])(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(19|20)\d{2}\s*$"
# A date (of birth, say) where a code, score or label belongs: day, month and year with
# separators in any common order (bare 8-digit numbers are left to the code pattern).
# A day with an English ordinal ("3rd"), and the Spanish and Portuguese "de" between parts.
_ORD = r"(st|nd|rd|th)?"
_DE = r"(\s+de)?"
# A month's name or abbreviation in English, German, French, Spanish, Italian, Dutch or
# Portuguese, as spreadsheets and clinical systems write it between dashes ("12-Mar-1985",
# "06-okt-2002", "Jul-03-1938"): a named month, not any three letters (a site code).
_MONTH_NAME = (
    r"(jan|feb|f[eé]v|m[aä]r|apr|avr|abr|may|mai|mei|mag|jun|jui|giu|jul|lug|aug|ago|ao[uû]|sep|"
    r"set|oct|okt|ott|out|nov|dec|d[eé]c|dez|dic)\p{L}{0,6}\.?"
)
_DATE_SHAPE = (
    r"^\s*(19|20)\d{2}[-./](0?[1-9]|1[0-2])[-./](0?[1-9]|[12]\d|3[01])\.?\s*$"
    r"|^\s*(0?[1-9]|[12]\d|3[01])[-./](0?[1-9]|1[0-2])[-./](19|20)\d{2}\s*$"
    r"|^\s*(0?[1-9]|1[0-2])[-./](0?[1-9]|[12]\d|3[01])[-./](19|20)\d{2}\s*$"
    rf"|(?i)^\s*(0?[1-9]|[12]\d|3[01]){_ORD}\.?{_DE}\s+\p{{L}}{{3,9}}\.?,?{_DE}\s+(19|20)\d{{2}}\s*$"
    rf"|(?i)^\s*\p{{L}}{{3,9}}\.?\s+(0?[1-9]|[12]\d|3[01]){_ORD},?\s+(19|20)\d{{2}}\s*$"
    rf"|{_DATE9}"
    r"|(19|20)\d{2}\s*(年|년)\s*\d{1,2}\s*(月|월)(\s*\d{1,2}\s*(日|일))?"
    # a named month between dashes, dots, slashes or spaces, in any of the three orders
    rf"|(?i)^\s*(0?[1-9]|[12]\d|3[01])[-./ ]{_MONTH_NAME}[-./ ]((19|20)?\d{{2}})\s*$"
    rf"|(?i)^\s*{_MONTH_NAME}[-./ ](0?[1-9]|[12]\d|3[01])[-./ ,]\s*(19|20)\d{{2}}\s*$"
    rf"|(?i)^\s*(19|20)\d{{2}}[-./ ]{_MONTH_NAME}[-./ ](0?[1-9]|[12]\d|3[01])\s*$"
)
# A day/month/two-digit year (or month/day/...) written with slashes: "12/03/85".
_SLASH_DATE_SHORT_YEAR = r"^\s*((0?[1-9]|[12]\d|3[01])/(0?[1-9]|1[0-2])|(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01]))/\d{2}\s*$"
# A date inside other text where no date belongs ("geb. 12.03.1985", "DOB: 1985-03-12",
# "born 3 March 1985", "*01.04.1958"): a day, month and four-digit year, or a two-digit year
# with "." or "/" ("12.3.85", "12/03/85"). Not in code columns, where digit groups are codes.
_DATE_IN_TEXT: tuple[str, ...] = (
    r"(^|[^\d.])(19|20)\d{2}[-./](0?[1-9]|1[0-2])[-./](0?[1-9]|[12]\d|3[01])($|[^\d.])",
    r"(^|[^\d.])(0?[1-9]|[12]\d|3[01])[-./](0?[1-9]|1[0-2])[-./](19|20)\d{2}($|\D)",
    r"(^|[^\d.])(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/(19|20)\d{2}($|\D)",
    r"^\s*(0?[1-9]|[12]\d|3[01])([-./])(0?[1-9]|1[0-2])[-./]\d{2}\s*$",
    rf"(?i)(^|[^\p{{L}}\d])(0?[1-9]|[12]\d|3[01]){_ORD}\.?{_DE}\s+\p{{L}}{{3,9}}\.?,?{_DE}\s+(19|20)\d{{2}}($|\D)",
    rf"(?i)(^|[^\p{{L}}])\p{{L}}{{3,9}}\.?\s+(0?[1-9]|[12]\d|3[01]){_ORD},?\s+(19|20)\d{{2}}($|\D)",
)
# A date of birth with its label, in any column ("geb. 12.03.1985", "DOB 85-03-12"): a date after
# the label, not any digit ("GEB 378 13" is a code with a site prefix that spells "geb").
_DOB_LABEL: tuple[str, ...] = (
    r"(?i)(^|[^\p{L}])(dob|d\.o\.b|born|birth\w*|geb|geboren|n[ée]e?\s+le|"
    r"geburts\w*|fecha\s+de\s+nacimiento|nato|nata)(\s*[:.]\s*|\s+)"
    r"(\d{1,4}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}(st|nd|rd|th)?\.?\s*\p{L}{3,}|\d{6}(\d{2})?($|\D))",
    r"^\s*[*✱]\s*\d{1,4}[-./]\d{1,2}[-./]\d{2,4}\s*$",
)
# A street address: a house number next to a street word, or a postal code before a town.
_STREET_WORDS = (
    r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    r"terrace|close|crescent|square|sq|highway|hwy"
)
_ADDRESS: tuple[str, ...] = (
    rf"(?i)\b\d{{1,5}}[a-z]?,?\s+(\p{{L}}+\.?\s+){{0,3}}({_STREET_WORDS})\b",
    r"(?i)\p{L}{2,}(straße|strasse|str\.|gasse|weg|platz|allee|damm|ufer|steig|chaussee)\s*\d{1,4}",
    r"(?i)\b(stra(ss|ß)e|gasse|weg|platz|allee)\s+\d{1,4}",
    r"(?i)\b\d{1,5},?\s+(rue|avenue|boulevard|chemin|impasse|allée|place|calle|avenida|via|viale|piazza|plaza)\b",
    r"(?i)\b(rue|avenue|boulevard|chemin|calle|avenida|via|viale|piazza|plaza|carrer)\s+(\p{L}+\s+){0,4}\d{1,5}",
    r"(?i)\b(p\.?\s?o\.?\s+box|postfach)\s*\d",
    # Dutch, Nordic, Finnish, Hungarian, Polish street words written onto the name
    r"(?i)\p{L}{2,}(straat|laan|plein|gracht|kade|singel|dreef|steeg|gatan|vägen|vagen|gränd|"
    r"torget|gade|vej|veien|vegen|vei|gata|gaten|tie|katu|kuja|polku|utca|út|ulica|aleja)"
    r"\s*\d{1,4}",
    # a street word before the name: Portuguese, Polish, Italian, Russian (ул., д., кв.)
    r"(?i)(^|[^\p{L}\p{N}])((rua|travessa|largo|strada|corso|vicolo|улица)\s+|"
    r"(ul|al|pl|os|ул|пр|просп|пер|д|кв)\.\s*)\p{L}+[\p{L}\s.,'-]*\d{1,5}",
    # Japanese, Chinese and Korean addresses: a prefecture/ward/district/street sign with digits
    r"[\p{Han}\p{Hangul}]+(都|道|府|県|市|区|町|村|丁目|番地|号|路|街|巷|弄|동|구|로|길)"
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]*\d{1,5}",
    # UK postcodes ("SW1A 2AA")
    r"(^|[^A-Za-z0-9])[A-Z]{1,2}\d[A-Z\d]?\s+\d[ABD-HJLNP-UW-Z]{2}($|[^A-Za-z0-9])",
    # Dutch, Polish, Portuguese and Swedish postal codes before a town ("1012 AB Amsterdam",
    # "00-950 Warszawa", "1100-053 Lisboa", "111 22 Stockholm"); case matters
    r"\b(\d{4}\s?[A-Z]{2}|\d{2}-\d{3}|\d{4}-\d{3}|\d{3}\s\d{2})\s+\p{Lu}\p{Ll}{2,}",
)
# A postal code alone that no code takes: Canadian ("K1A 0B1") and Dutch ("1012 AB") with
# their space, or with its label ("ZIP 12345", "PLZ 10115").
_POSTCODE_ALONE: tuple[str, ...] = (
    r"^\s*[ABCEGHJ-NPRSTVXY]\d[A-Z]\s\d[A-Z]\d\s*$",
    r"^\s*[1-9]\d{3}\s[A-Z]{2}\s*$",
    r"(?i)(^|[^\p{L}])(zip|zip\s*code|plz|postcode|postal\s*code)\s*[:.]?\s*\d{4,5}($|\D)",
)
# a postal code before a town ("10115 Berlin", "75002 Paris", "1165 København"); case matters
_ZIP_TOWN = r"\b\d{4,5}\s+\p{Lu}\p{Ll}{2,}"
# National identity and insurance numbers whose shape is their own: a birth date then a serial
# (Swedish personnummer YYMMDD-NNNN, Danish CPR DDMMYY-NNNN, Finnish HETU DDMMYY-NNNC, Korean
# RRN YYMMDD-NNNNNNN, German RVNR 12 150485 M 123), the Italian codice fiscale, the Spanish
# DNI/NIE, the British NINO written with spaces, the Swiss AHV number, the Brazilian CPF and a
# number with its label (MRN, NHS, Medicare, ...). Checksums are not computed: a mistyped or
# synthetic number is still one.
_YYMMDD = r"\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"
_DDMMYY = r"(0[1-9]|[12]\d|3[01])(0[1-9]|1[0-2])\d{2}"
_NATIONAL_ID: tuple[str, ...] = (
    rf"^\s*((19|20)?{_YYMMDD}[-+]\d{{4}}|{_DDMMYY}[-+A]\d{{3}}[0-9A-Y]|{_YYMMDD}-[1-8]\d{{6}}"
    rf"|{_DDMMYY}\s\d{{5}})\s*$",
    rf"^\s*\d{{2}}\s?{_DDMMYY}\s?[A-Z]\s?\d{{3}}\s*$",
    r"(?i)^\s*[A-Z]{6}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]\s*$",
    r"^\s*\d{8}-?[TRWAGMYFPDXBNJZSQVHLCKE]\s*$",
    r"^\s*[A-Z]{2}\s\d{2}\s\d{2}\s\d{2}\s[A-D]\s*$",
    r"\b756[.\s]?\d{4}[.\s]?\d{4}[.\s]?\d{2}\b",
    r"^\s*(\d{3}\.\d{3}\.\d{3}-\d{2}|\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2})\s*$",
    # the Chinese resident identity number: region, birth date, serial, check character "X"
    # (all digits, it is an 18-digit number: a code in a code column, a long number elsewhere)
    r"^\s*\d{6}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[Xx]\s*$",
    # the Indian Aadhaar number in three groups of four, first digit 2-9 (a first group that is
    # a year, 2000-2099, is a case number's "2024-0412-0007")
    r"^\s*(2[1-9]\d{2}|[3-9]\d{3})[ -]\d{4}[ -]\d{4}\s*$",
)
# A payment card number in groups (4-4-4-4, or Amex 4-6-5): an account number.
_CARD = r"^\s*(\d{4}([ -]\d{4}){3}|3\d{3}[ -]\d{6}[ -]\d{5})\s*$"
# A device's hardware (MAC) address: six pairs or three quads of hex digits (with a letter
# a-f: six pairs of decimal digits may be a code of digit groups).
_MAC = (
    r"(?i)^\s*([0-9a-f]{2}:){5}[0-9a-f]{2}\s*$",
    r"(?i)^\s*([0-9a-f]{2}-){5}[0-9a-f]{2}\s*$",
    r"(?i)^\s*[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}\s*$",
)
# a record, insurance or identity number with its label ("MRN: 12345678")
_LABELLED_NUMBER = (
    r"(?i)(^|[^\p{L}\p{N}])(mrn|nhs|medicare|ahv|avs|bsn|svnr|kvnr|nir|insee|pesel|cpr|hetu|"
    r"personnummer|fødselsnummer|fodselsnummer|sozialversicherungs\w*|versicherten\w*|"
    r"patient(en)?\s*(nr|no|number|nummer|id)|"
    # (social security, tax and health numbers of other countries; record and account labels)
    r"ssn|sin|cpf|dni|nif|nie|ppsn|chi|aadhaar|ihi|hcn|health\s*card|med\.?\s*rec\w*|"
    r"chart|member\s*id|policy|acct|account)(\s*(no|nr|number)\.?)?(\s*[:.#]\s*|\s+)\d"
)
# A record or social security number with its label joined to it ("MRN-00391399",
# "SSN_123456789"): outside client and clinician code columns only, since there it is also the
# shape of a code with a three-letter site prefix (the corpus's "MRN-218924").
_LABEL_JOINED = r"(?i)^\s*(mrn|ssn)[-_#]?\d{5,}\s*$"
# IBANs: a country code, two check digits and the country's account number, compact or in
# groups of four; the account numbers' own shapes keep hashes and codes out.
_IBAN_BBAN = {
    "DE": r"\d{18}", "AT": r"\d{16}", "CH": r"\d{5}[A-Z0-9]{12}", "LI": r"\d{5}[A-Z0-9]{12}",
    "FR": r"\d{10}[A-Z0-9]{11}\d{2}", "MC": r"\d{10}[A-Z0-9]{11}\d{2}",
    "GB": r"[A-Z]{4}\d{14}", "IE": r"[A-Z]{4}\d{14}", "NL": r"[A-Z]{4}\d{10}", "BE": r"\d{12}",
    "LU": r"\d{3}[A-Z0-9]{13}", "ES": r"\d{20}", "PT": r"\d{21}", "IT": r"[A-Z]\d{10}[A-Z0-9]{12}",
    "PL": r"\d{24}", "CZ": r"\d{20}", "SK": r"\d{20}", "HU": r"\d{24}", "SI": r"\d{15}",
    "HR": r"\d{17}", "SE": r"\d{20}", "DK": r"\d{14}", "NO": r"\d{11}", "FI": r"\d{14}",
    "IS": r"\d{22}", "EE": r"\d{16}", "LT": r"\d{16}", "GR": r"\d{7}[A-Z0-9]{16}",
    "TR": r"\d{5}[A-Z0-9]{17}", "CY": r"\d{8}[A-Z0-9]{16}", "MT": r"[A-Z]{4}\d{5}[A-Z0-9]{18}",
}  # fmt: skip
_IBAN = "|".join(f"^{cc}\\d{{2}}{bban}$" for cc, bban in _IBAN_BBAN.items())
# the grouped form, compacted before `_IBAN` judges it
_IBAN_GROUPED = r"^\s*[A-Z]{2}\d{2}([\s\x{00A0}]?[A-Z0-9]{4}){2,7}([\s\x{00A0}]?[A-Z0-9]{1,4})?\s*$"
# Phone numbers. Phone punctuation includes Unicode dashes and no-break / thin spaces.
_DASH = r"\-\x{2010}-\x{2015}\x{2212}"
_SPACE = r"\s\x{00A0}\x{2007}\x{2009}\x{202F}"
_PUNCT = rf"[{_SPACE}{_DASH}./()]"
# A phone extension or a "Tel:" label around a number (the label followed by "." or ":" or a
# space: "FON/2029/7850-1" is a code with a site prefix that spells "Fon").
_PHONE_LABEL = r"(?i)^\s*((tel|phone|fon|mobil|mobile|mob|handy|fax)(\s*[.:]|\s)|[tmf]\s*[.:])\s*"
_PHONE_EXT = r"(?i)\s*[,;]?\s*(ext|extension|durchwahl|dw|poste|x|#)\s*[.:]?\s*\d{1,6}\s*$"
# Bare digits with an extension ("5551234567x89"), a bare token to the cheap pass.
_DIGITS_EXT = r"(?i)^\s*\d{10,15}(x|ext)\d{1,6}\s*$"
# A North American number with letters for digits ("1-800-FLOWERS", "+1 212 ABC 1234"): the
# "1" or "+1" first, apart from the area code ("1998-AAS-4129" is a year and a site), and a
# letter in the last seven.
_PHONE_VANITY = (
    r"^\s*(\+\s?1[-. ]?|1[-. ])\(?\d{3}\)?[-. ]"
    r"[A-Z0-9]{3}[-. ]?[A-Z0-9]{4}\s*$"
)
# What a whole phone number is made of: digits, "+" and phone punctuation, nothing else.
_PHONE_CHARS = rf"^[0-9+{_SPACE}{_DASH}./()]+$"
# Signs no pseudonymous code carries: a leading "+" or "00" international prefix, an area
# code in parentheses, or digit groups separated by spaces or a slash.
_PHONE_MARKER = rf"^\s*\+|^\s*\(|\(\s*\d{{1,5}}\s*\)|\d[{_SPACE}]+\(?\d|\d\s*/\s*\d"
# Digit groups joined by "-" or "." only (what a code also looks like): phone numbers only in
# their national groupings. NANP 3-3-4 (fictional 555-123-4567 included); a trunk "0" area code
# then a subscriber number that never starts with 0 (Europe, Japan, Australia, ...: "030-1234567",
# "01.23.45.67.89", "03-1234-5678"); mobile blocks of India (5-5), Spain and Poland (3-3-3),
# Italy (3-7); Russia's 8-912-345-67-89, China's 138-0013-8000, Brazil's 11-91234-5678,
# Mexico's 55-1234-5678 and Poland's 22-123-45-67. A four-digit middle group that is a year
# (19xx, 20xx) is a case number's ("12-2024-0042"), not a phone number's.
_D = rf"[{_DASH}.]"
_NOT_YEAR = r"(0\d|1[0-8]|2[1-9]|[3-9]\d)\d{2}"
# (and, after a two-digit area code, no leading 0: "12-0042-0001" is site-subject-visit)
_NOT_YEAR_NZ = r"(1[0-8]|2[1-9]|[3-9]\d)\d{2}"
_PHONE_TEMPLATES = (
    rf"^(1{_D})?\d{{3}}{_D}\d{{3}}{_D}\d{{4}}$"
    rf"|^0[1-9]\d{{0,4}}{_D}[1-9]\d{{1,7}}({_D}\d{{1,5}}){{0,3}}$"
    rf"|^[6-9]\d{{4}}{_D}\d{{5}}$"
    rf"|^[4-9]\d{{2}}{_D}\d{{3}}{_D}\d{{3}}$"
    rf"|^[6-9]\d{{2}}({_D}\d{{2}}){{3}}$"
    rf"|^3\d{{2}}{_D}\d{{7}}$"
    rf"|^[78]{_D}\d{{3}}{_D}\d{{3}}{_D}\d{{2}}{_D}\d{{2}}$"
    rf"|^1[3-9]\d{_D}{_NOT_YEAR}{_D}\d{{4}}$"
    rf"|^[1-9]\d{_D}9\d{{4}}{_D}\d{{4}}$"
    rf"|^[1-9]\d{_D}{_NOT_YEAR_NZ}{_D}\d{{4}}$"
    rf"|^[1-9]\d{_D}[1-9]\d{{2}}{_D}\d{{2}}{_D}\d{{2}}$"
)
# Eight-digit numbers (Norway, Denmark, Singapore, Hong Kong) written in spaced groups, unless
# they are a date ("2024 05 01", "01 05 2024").
_PHONE_SPACED8 = rf"^\s*\d{{2,4}}([{_SPACE}]\d{{2,4}}){{1,3}}\s*$"
_SPACED_DATE = r"^\s*((19|20)\d{2}\s\d{1,2}\s\d{1,2}|\d{1,2}\s\d{1,2}\s(19|20)\d{2})\s*$"
# A case number with a year on one side of a slash ("2024/00317", "317/2024"): a slash
# between digits is no phone sign there.
_YEAR_SLASH = r"^\s*(\d{1,7}\s*/\s*(19|20)\d{2}|(19|20)\d{2}\s*/\s*\d{1,7})\s*$"
# Bare digits with an international "00" prefix, long enough for a country code and number.
_PHONE_BARE_INTL = r"^\s*00[1-9]\d{10,13}\s*$"
# A time of day ("10:03:33"): removed before phone runs are looked for in other text, so a
# timestamp never reads as one long number.
_TIME = r"\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?"
# A run of digits with phone punctuation inside other text ("Tel. 030 1234567, evenings").
_PHONE_RUN = rf"(?:\+[{_SPACE}]*\d|\(\d|\d)[\d{_SPACE}{_DASH}()./]{{6,}}\d"
# A person's name where a code belongs: words of letters (hyphens, apostrophes, initials)
# separated by spaces, or "Surname, Given"; only checked on values failing the code pattern.
_PERSON_NAME = (
    r"^[\s\p{Zs}]*\p{L}[\p{L}\p{M}'’.-]*(,?[\s\p{Zs}]+\p{L}[\p{L}\p{M}'’.-]*)+[\s\p{Zs}]*$"
    r"|^\s*\p{L}[\p{L}\p{M}]*,\s*\p{L}[\p{L}\p{M}]*\s*$"
    # two capitalised words joined by a dot or an underscore ("Anna.Schmidt", "Anna_Schmidt")
    r"|^\s*\p{Lu}[\p{Ll}\p{M}]+[._]\p{Lu}[\p{Ll}\p{M}]+\s*$"
)
# Cells that cannot be any kind above: a bare token of letters/digits/underscores with a letter
# or "_" (no @, dot, colon, space, comma or punctuation), a number of at most 8 digits before
# its decimals (a mean score may have many; no leading 0, which phone numbers have), or a
# date with a 4-digit year (an SSN is 3-2-4, which none of these match).
_BARE_TOKEN = r"^\s*[A-Za-z0-9]*[A-Za-z_][A-Za-z0-9_]*\s*$"
_SHORT_NUMBER = r"^\s*[-+]?(0|[1-9]\d{0,7})([.,]\d{1,4})?\s*$"
_SCORE_NUMBER = r"^\s*[-+]?(0|[1-9]\d{0,7})([.,]\d+)?\s*$"  # a mean may have many decimals
_DATE_ISH = r"^\s*\d{4}[-./]\d{1,2}[-./]\d{1,2}\s*$|^\s*\d{1,2}[-./]\d{1,2}[-./]\d{4}\s*$"
# per column kind; a date is a finding only where no date belongs
_BLANK = r"^\s*$"
_CANNOT_IDENTIFY = {
    "codes": f"{_BARE_TOKEN}|{_SHORT_NUMBER}|{_BLANK}",
    "dates": f"{_BARE_TOKEN}|{_SHORT_NUMBER}|{_DATE_ISH}|{_BLANK}",
    "scores": f"{_BARE_TOKEN}|{_SCORE_NUMBER}|{_BLANK}",
    "other": f"{_BARE_TOKEN}|{_SHORT_NUMBER}|{_BLANK}",
}
# A bare whole number of 9 or more digits (up to 19: card and 18-digit identity numbers): a
# phone, account or record number wherever a score, date or label belongs (in a code column it may be the code: see `_phone_like`).
_LONG_NUMBER = r"^\s*\d{9,}\s*$"
# Free text: five or more words in one cell.
_FREE_TEXT = r"(\p{L}+[\s,.;:!?]+){4,}\p{L}+"
# A time part after a date ("2026-05-01 10:03:33", "2026-05-01T10:03:33Z", "... 10:03 PM").
_TIME_SUFFIX = (
    r"(?i)([ T]+\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(z|utc|[ap]\.?m\.?|[+-]\d{2}:?\d{2})?)\s*$"
)

# The kinds of column the guard knows; each is measured on its own (docs/validation.md).
CODE_COLUMNS: tuple[str, ...] = ("client_id", "clinician_id", "episode_id")
# A treatment-episode label is loaded and quarantined as delivered (no validation rule gives it
# a shape), so the guard holds it to one: a short label ("A", "II"), a number with an optional
# word before it ("2", "E1", "Episode 2", "EP-000123", "2a") or a year and a number ("2024-03",
# "EP-2024-001"); anything else (a word alone, several digit groups) is held back.
EPISODE_COLUMNS: tuple[str, ...] = ("episode_id",)
EPISODE_PATTERN = (
    r"^\s*(?:[A-Za-z]{1,3}|[A-Za-z]{0,12}[ ._-]?[0-9]{1,12}[A-Za-z]?"
    r"|[A-Za-z]{0,12}[_-]?(19|20)[0-9]{2}[_/-][0-9]{1,6})\s*$"
)
DATE_COLUMNS: tuple[str, ...] = ("session_date", "appointment_date")
SCORE_COLUMNS: tuple[str, ...] = ("session_number", "total", *ITEM_COLUMNS)


def column_kind(column: str) -> str:
    """codes, dates, scores or other (instrument, status, ...)."""
    if column in CODE_COLUMNS:
        return "codes"
    if column in DATE_COLUMNS:
        return "dates"
    if column in SCORE_COLUMNS:
        return "scores"
    return "other"


# The redaction mask: a DataFrame with columns ``row`` (int, index into the table) and
# ``column`` (str, canonical column name), one row per identifying cell.
RedactionMask = pd.DataFrame


def empty_mask() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series([], dtype="int64"), "column": pd.Series([], dtype="object")}
    )


def redact_cells(table: pa.Table, mask: pd.DataFrame) -> pa.Table:
    """The table with every masked cell replaced by ``[redacted]`` (null if not text)."""
    return _replace_cells(table, mask, REDACTED)


def _as_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(arr, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _matches(column: pa.ChunkedArray | pa.Array, pattern: str | tuple[str, ...]) -> np.ndarray:
    """Cells the pattern finds a match in; a tuple of patterns: any of them. (Alternatives kept
    apart: one RE2 program of many Unicode alternatives outgrows RE2's DFA cache and runs a
    hundred times slower, and a flag such as (?i) stays with its own alternative.)"""
    if isinstance(pattern, tuple):
        hit = np.zeros(len(column), dtype=bool)
        for p in pattern:
            hit |= _as_bool(pc.match_substring_regex(column, p))
        return hit
    return _as_bool(pc.match_substring_regex(column, pattern))


def _digits(column: pa.Array) -> np.ndarray:
    n = pc.utf8_length(pc.replace_substring_regex(column, r"[^0-9]", ""))
    return np.asarray(pc.fill_null(n, 0).to_numpy(zero_copy_only=False))


def _phone_like(column: pa.Array, whole_value_only: bool) -> np.ndarray:
    """Cells that hold a phone number. A whole value of digits and phone punctuation is one
    when it carries a sign no code carries (a "+"/"00" prefix, parentheses, spaced or slashed
    digit groups) and 8-15 digits (9-15 without "+"), or when its "-"/"." groups follow a
    national numbering template. Letters make a value a code, not a phone number (an
    extension or a "Tel:" label aside). Bare digits are left to the code pattern (a clinic may
    use long numeric codes) unless they start with the international "00" prefix. With
    ``whole_value_only`` false (not a code column) a phone number inside other text is found
    as well."""
    bare = pc.replace_substring_regex(
        pc.replace_substring_regex(column, _PHONE_EXT, ""), _PHONE_LABEL, ""
    )
    digits = _digits(bare)
    chars = _matches(bare, _PHONE_CHARS)
    plus = _matches(bare, r"^\s*(\+|00[1-9])")
    marked = chars & _matches(bare, _PHONE_MARKER) & (digits <= 15) & ~_matches(bare, _YEAR_SLASH)
    marked &= np.where(plus, digits >= 8, digits >= 9)
    templated = _matches(bare, _PHONE_TEMPLATES) & (digits >= 9) & (digits <= 12)
    spaced8 = (digits == 8) & _matches(bare, _PHONE_SPACED8) & ~_matches(bare, _SPACED_DATE)
    found = marked | templated | spaced8 | _matches(bare, _PHONE_BARE_INTL)
    # an extension marks bare digits as a phone number ("5551234567x89"), and letters for
    # digits do in the North American layout
    found |= _matches(column, _PHONE_EXT) & _matches(bare, r"^\s*\d{10,15}\s*$")
    found |= _matches(column, _PHONE_VANITY) & _matches(column, r"[A-Z]")
    if whole_value_only:
        return found
    # a phone number inside other text: the first run of digits and phone punctuation, once
    # times of day are taken out, judged alone
    untimed = pc.replace_substring_regex(column, _TIME, " ")
    has_run = _matches(untimed, _PHONE_RUN)
    if has_run.any():
        run = pc.struct_field(pc.extract_regex(untimed, rf"(?P<run>{_PHONE_RUN})"), [0])
        run = pc.fill_null(run, "")
        n = _digits(run)
        run_marked = _matches(run, _PHONE_MARKER) | _matches(run, r"^\+")
        run_marked |= _matches(run, rf"[{_DASH}.]")
        run_marked &= ~_matches(run, _YEAR_SLASH)
        found |= has_run & run_marked & (n >= 9) & (n <= 15)
    return found


def _fullmatches(column: pa.Array, pattern: str) -> np.ndarray:
    """Cells the pattern matches from start to end (Python `re`, the engine the config
    validates patterns with); nulls do not match."""
    series = pd.Series(column.to_pandas(), dtype="object")
    compiled = re.compile(pattern)
    out = [isinstance(v, str) and compiled.fullmatch(v) is not None for v in series.tolist()]
    return np.asarray(out, dtype=bool)


def _fails_code_pattern(column: pa.ChunkedArray | pa.Array, pattern: str) -> np.ndarray:
    # Python `re` semantics, the same engine the config validates the pattern with.
    series = pd.Series(column.to_pandas(), dtype="object")
    present = series.notna().to_numpy()
    with warnings.catch_warnings():  # a clinic's pattern may have groups: only a match counts
        warnings.simplefilter("ignore", UserWarning)
        ok = series.astype("string").str.contains(pattern, regex=True).fillna(True)
    return present & ~ok.to_numpy(dtype=bool)


def _parses_as_date(column: pa.Array, date_format: str) -> np.ndarray:
    """Cells that are a date under the clinic's `date_format`, with or without a time of day
    after it ("2026-05-01 10:03:33"): dates, whatever their digits look like."""
    day = pc.utf8_trim_whitespace(pc.replace_substring_regex(column, _TIME_SUFFIX, ""))
    parsed = pc.strptime(day, format=date_format, unit="s", error_is_null=True)
    return _as_bool(pc.is_valid(parsed))


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


def _gated(cells: pa.Array, gate: np.ndarray, pattern: str | tuple[str, ...]) -> np.ndarray:
    """`_matches` on the cells where `gate` holds; nothing compiled when it holds nowhere."""
    if not gate.any():
        return np.zeros(len(cells), dtype=bool)
    return _matches(cells, pattern) & gate


_DIGIT_MAP: dict[int, str] = {}


def _normalized(cells: pa.Array) -> pa.Array:
    """The cells as the shape checks read them: compatibility forms folded (full-width "＋４９"
    -> "+49", "＠" -> "@") and the decimal digits of every script as ASCII digits (Arabic-Indic,
    Persian, Devanagari, ...), so a phone number or date written in them is judged as one. Only
    cells with a non-ASCII character are touched (rare in codes, dates and scores)."""
    wide = _matches(cells, r"[^\x00-\x7F]")
    if not wide.any():
        return cells
    texts = cells.to_pylist()
    for i in np.flatnonzero(wide):
        text = unicodedata.normalize("NFKC", texts[i])
        for ch in text:
            if ch not in string.digits and ord(ch) not in _DIGIT_MAP and ch.isdecimal():
                _DIGIT_MAP[ord(ch)] = str(unicodedata.decimal(ch))
        texts[i] = text.translate(_DIGIT_MAP)
    return pa.array(texts, pa.string())


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
        kind = column_kind(col)
        skip = _matches(values, _CANNOT_IDENTIFY[kind])
        # a bare token may be an IBAN, a codice fiscale, a HETU, a DNI (9-34 letters and digits)
        token_id = skip & _matches(values, r"^\s*[A-Za-z0-9]{9,34}\s*$")
        token_id &= _matches(values, r"[0-9]") & _matches(values, r"[A-Za-z]")
        if token_id.any():
            shaped = _matches(values, _IBAN) | _matches(values, _NATIONAL_ID)
            skip &= ~(token_id & (shaped | _matches(values, _DATE9)))
        # and bare digits with a phone extension, and outside code columns (an episode label is
        # none) a joined label
        joined = kind != "codes" or col in EPISODE_COLUMNS
        skip &= ~_matches(values, f"{_DIGITS_EXT}|{_LABEL_JOINED}" if joined else _DIGITS_EXT)
        if col in EPISODE_COLUMNS:
            # held to the episode shape first: a bare word (a surname) is no episode label
            odd = ~_fullmatches(values, EPISODE_PATTERN) & ~_matches(values, r"^\s*$")
            record(col, "not-code-like", odd, np.arange(len(values)), code)
            skip |= odd
        where = np.flatnonzero(~skip)
        if not len(where):
            continue
        cells = _normalized(pc.take(values, pa.array(where)))
        if kind == "dates":
            # a value that is a date under the clinic's format is a date, whatever its digits
            keep = ~_parses_as_date(cells, cfg.date_format)
            where, cells = where[keep], pc.filter(cells, pa.array(keep))
            if not len(where):
                continue
        # Patterns with Unicode classes cost milliseconds to compile, so each runs only when
        # some cell could hold what it finds (a letter, a digit, an "@").
        letters = _matches(cells, r"[A-Za-z]|[^\x00-\x7F]")
        digits = _matches(cells, r"[0-9]")
        mixed = letters & digits
        gated = functools.partial(_gated, cells)

        # An e-mail address or a URL is never a code, whatever a pattern admits.
        email = gated(_matches(cells, r"@|[aA][tT]|%40"), _EMAIL)
        record(col, "email-like", email, where, code)
        record(col, "URL-like", _matches(cells, _URL) & ~email, where, code)
        # A pattern the clinic declared is authoritative for the values it matches in full:
        # the shape heuristics below (phone, SSN, IP, GPS, name) do not judge them.
        declared = (
            cfg.declared_code_pattern(col)
            if kind == "codes" and col not in EPISODE_COLUMNS
            else None
        )
        judged = ~email
        if declared:
            judged &= ~_fullmatches(cells, declared)
        ip = judged & (_matches(cells, _IPV4) | _matches(cells, _IPV6))
        record(col, "IP-address-like", ip, where, code)
        # (six pairs of decimal digits with dashes or dots may be a code's digit groups)
        mac = judged & gated(letters, _MAC[1:]) & _matches(cells, r"(?i)[a-f]")
        mac |= judged & _matches(cells, _MAC[0])
        mac &= ~ip
        record(col, "MAC-address-like", mac, where, code)
        ssn = judged & _matches(cells, _SSN)
        record(col, "SSN-like", ssn, where, code)
        gps = judged & _matches(cells, _GPS) & ~ip
        if kind != "scores":  # a mean score may have many decimals
            gps |= judged & _matches(cells, _GPS_LONE)
        record(col, "GPS-coordinate-like", gps, where, code)
        phone = judged & _phone_like(cells, whole_value_only=kind == "codes") & ~ssn & ~ip & ~gps
        record(col, "phone-number-like", phone, where, code)
        address = judged & (gated(mixed, _ADDRESS) | gated(mixed, _ZIP_TOWN)) & ~phone
        address |= judged & gated(digits, _POSTCODE_ALONE) & ~phone
        record(col, "street-address-like", address, where, code)
        found = email | ip | mac | ssn | gps | phone | address
        national = judged & (gated(digits, _NATIONAL_ID) | gated(mixed, _LABELLED_NUMBER))
        if joined:
            national |= judged & gated(mixed, _LABEL_JOINED)
        national &= ~found
        record(col, "national-id-like", national, where, code)
        card = judged & gated(digits, _CARD) & ~found & ~national
        record(col, "account-number-like", card, where, code)
        found |= card
        compact = pc.replace_substring_regex(cells, r"[\s\x{00A0}]", "")
        grouped = _matches(cells, _IBAN_GROUPED) | ~_matches(cells, r"\s")
        iban = judged & grouped & mixed & ~found & ~national
        if iban.any():
            iban &= _matches(compact, _IBAN)
        record(col, "IBAN-like", iban, where, code)
        found |= national | iban
        # a date of birth with its label, in any column
        date = judged & gated(digits, _DOB_LABEL) & ~found
        if kind != "dates":  # where a date belongs, a date is a date (a session's)
            date |= judged & gated(digits, _DATE_SHAPE) & ~phone & ~ip & ~national
        if kind in ("scores", "other"):  # a date inside a label or a number is no score
            date |= judged & gated(digits, _DATE_IN_TEXT) & ~found
        if kind == "codes":  # "12/03/85": a code with slashes is no day/month/two-digit year
            date |= judged & _matches(cells, _SLASH_DATE_SHORT_YEAR) & ~found
        record(col, "date-like", date, where, code)
        if kind == "codes":
            pattern = EPISODE_PATTERN if col in EPISODE_COLUMNS else cfg.code_pattern_for(col)
            name = judged & gated(letters, _PERSON_NAME)
            if name.any():
                name &= _fails_code_pattern(cells, pattern)
            record(col, "person-name-like", name, where, code)
            continue
        # a long bare number where a date, score or label belongs: a phone, account or record
        # number (in a code column it may be the code)
        number = _matches(cells, _LONG_NUMBER) & ~phone
        record(col, "long-number", number, where, code)
        # The clinic's own configured labels (status words, instrument names) are not text.
        own = pc.is_in(pc.utf8_lower(cells), value_set=known_labels)
        free = gated(letters, _FREE_TEXT) & ~_as_bool(own)
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
