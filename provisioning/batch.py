"""``batch``: many gateways from one CSV file (columns id, site, name, lat, lon, timezone).

Every row is checked before anything is written; each problem names the file, the
line and the column, e.g. ``gateways.csv:7: column lat: '95.2' is not a latitude``.
"""

import csv
from pathlib import Path

from provisioning.errors import InputError
from provisioning.gateways import GatewaySpec, build_spec

COLUMNS = ("id", "site", "name", "lat", "lon", "timezone")
REQUIRED = ("id", "site")
MAX_ROWS = 10_000


def read_csv(path: Path) -> list[GatewaySpec]:
    """The rows as specs; raises InputError listing every bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise InputError([f"{path}: not UTF-8 text (save the sheet as 'CSV UTF-8')"]) from None
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise InputError([f"{path}: empty file; the first line names the columns"]) from None
    except csv.Error as exc:
        raise InputError([f"{path}:1: {exc}"]) from None
    names = [h.strip().lower() for h in header]
    problems = []
    unknown = [h for h in names if h not in COLUMNS]
    if unknown:
        problems.append(
            f"{path}:1: unknown column(s) {', '.join(unknown)}; expected {', '.join(COLUMNS)}"
        )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        problems.append(f"{path}:1: missing column(s) {', '.join(missing)}")
    if len(set(names)) != len(names):
        problems.append(f"{path}:1: a column is named twice")
    if problems:
        raise InputError(problems)

    specs: list[GatewaySpec] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                problems.append(
                    f"{path}:{line}: {len(row)} cells, the header has {len(names)} columns"
                )
                continue
            cells = dict(zip(names, row, strict=True))
            spec, errors = build_spec(
                id=cells.get("id", ""),
                site=cells.get("site", ""),
                name=cells.get("name"),
                lat=cells.get("lat"),
                lon=cells.get("lon"),
                timezone=cells.get("timezone"),
            )
            for column, message in errors.items():
                problems.append(f"{path}:{line}: column {column}: {message}")
            if spec is None:
                continue
            if spec.id in seen:
                problems.append(
                    f"{path}:{line}: column id: {spec.id} is already used on line {seen[spec.id]}"
                )
                continue
            seen[spec.id] = line
            specs.append(spec)
            if len(specs) > MAX_ROWS:
                raise InputError([f"{path}: more than {MAX_ROWS} rows; split the file"])
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: {exc}")
    if problems:
        raise InputError(problems)
    if not specs:
        raise InputError([f"{path}: no gateways in the file"])
    return specs
