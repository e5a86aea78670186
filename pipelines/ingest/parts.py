"""Bounded batches of a large delivered CSV: split at line ends into parts that each repeat the
header, so every stage (read, guard, GX) holds one part in memory, never the whole file.

The reader parses CSV with ``newlines_in_values=False`` (a line end always ends a record), so a
cut right after a ``\\n`` never splits a record. Each part knows how many data lines precede it,
so line numbers in the warehouse and in quarantine stay those of the delivered file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    """One part of a delivered file: a readable path and the data lines before it."""

    path: Path
    line_offset: int  # data lines of the delivered file before this part's first data line
    index: int  # 0-based part number


def write_chunks(
    path: Path,
    out_dir: Path,
    part_bytes: int,
    splittable: bool = True,
    header_lines: int = 1,
) -> list[Part]:
    """The file as parts of about `part_bytes` bytes each (the file itself when it is small,
    not splittable, or has no line end after its header). Every part repeats the file's
    `header_lines` (the column names and any extra header rows, e.g. Qualtrics' two)."""
    size = path.stat().st_size
    if not splittable or size <= part_bytes:
        return [Part(path, 0, 0)]
    parts: list[Part] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as fh:
        header = b""
        for _ in range(header_lines):
            header += fh.readline()
        if not header.endswith(b"\n"):
            return [Part(path, 0, 0)]
        carry = b""
        offset = 0
        while True:
            block = fh.read(part_bytes)
            data = carry + block
            if not data:
                break
            if block:
                cut = data.rfind(b"\n")
                if cut < 0:  # one line longer than a part: keep reading (the reader rejects it)
                    carry = data
                    continue
                body, carry = data[: cut + 1], data[cut + 1 :]
            else:
                body, carry = data, b""  # the last line, possibly without a final newline
            target = out_dir / f"{path.name}.part{len(parts):04d}"
            target.write_bytes(header + body)
            parts.append(Part(target, offset, len(parts)))
            offset += body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
            if not block:
                break
    return parts or [Part(path, 0, 0)]
