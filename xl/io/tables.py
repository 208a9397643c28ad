"""Tables as task records: CSV, TSV, Parquet and a Hugging Face ``datasets`` folder written by ``save_to_disk``.

A researcher's data often comes as an STSb-style CSV or a saved ``datasets`` split. These read them as the
records a JSONL task file holds, one record a row, with a column mapping (``--columns
text1=sentence1,text2=sentence2,score=label``: xl's field = the table's column); a column the mapping does not
name keeps its own name. Nothing here imports torch; Parquet and ``datasets`` folders are read with pyarrow (the
Arrow IPC stream files ``save_to_disk`` writes, as ``datasets.load_from_disk`` reads them), imported only when
such an input is given.

Values come back as the table holds them; CSV and TSV hold text, so the numeric fields of the task schemas
(``score``, ``label``, ``answer_start``) are read as numbers where the text is one (a ``label`` of ``"2"`` is 2, one
of ``"entailment"`` stays a string), and an empty cell is a missing value.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from xl.errors import InputError, UsageError

TableFormat = Literal["csv", "tsv", "parquet", "hf-dataset"]
TABLE_FORMATS: tuple[TableFormat, ...] = ("csv", "tsv", "parquet", "hf-dataset")
_SUFFIXES: dict[str, TableFormat] = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_PARQUET_MAGIC = b"PAR1"
#: fields of the task schemas that hold numbers (CSV/TSV cells are text)
_NUMERIC = ("score", "label", "answer_start")


def table_format(path: str) -> TableFormat | None:
    """The table format of an input path by its name (``.csv``, ``.tsv``, ``.parquet``/``.pq``) or, for a folder,
    by the files ``save_to_disk`` writes (``state.json``; a ``DatasetDict`` folder's ``dataset_dict.json`` is one
    too, refused when read); None for anything else (JSONL, text, ``-``)."""
    if path == "-":
        return None
    p = Path(path)
    try:
        if p.is_dir():
            return "hf-dataset" if (p / "state.json").exists() or (p / "dataset_dict.json").exists() else None
    except OSError:  # too long to be a file name: a dataset spec
        return None
    return _SUFFIXES.get(p.suffix.lower())


def parse_columns(spec: str | None, fields: Sequence[str] | None = None) -> dict[str, str]:
    """``FIELD=COLUMN,FIELD=COLUMN`` → {field: column}. ``fields``: the fields that may be mapped (a usage error
    names any other)."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        field, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not field or not column:
            raise UsageError(f"--columns: {item!r} is not FIELD=COLUMN",
                             hint="e.g. --columns text1=sentence1,text2=sentence2,score=label")  # fmt: skip
        if fields is not None and field not in fields:
            raise UsageError(f"--columns: {field!r} is not a field of this task",
                             hint=f"map one of: {', '.join(fields)}")  # fmt: skip
        if field in mapping:
            raise UsageError(f"--columns: {field!r} is mapped twice")
        mapping[field] = column
    return mapping


def read_table(path: str, fmt: TableFormat, columns: Mapping[str, str] | None = None, *,
               hint: str = "--columns maps FIELD=COLUMN onto the columns present",
               ) -> tuple[list[dict[str, Any]], list[str], str]:  # fmt: skip
    """(records, column names, sha256) of a table: one record a row, its columns renamed by ``columns`` (field →
    column; a column the mapping names but the table lacks raises ``InputError`` listing the columns present, with
    ``hint``).

    The sha256 is over the file's bytes, or over a ``datasets`` folder's ``state.json`` and data files in order
    (what identifies the data, as a file's bytes do)."""
    mapping = dict(columns or {})
    if fmt in ("csv", "tsv"):
        data, digest = _read_bytes(path)
        # columns named by number (1-based): a file without a header row, every line a row
        positional = bool(mapping) and all(column.isdigit() and int(column) > 0 for column in mapping.values())
        rows, names = _delimited(data, path, "\t" if fmt == "tsv" else ",", header=not positional)
    elif fmt == "parquet":
        data, digest = _read_bytes(path)
        if not data.startswith(_PARQUET_MAGIC):
            raise InputError("not a Parquet file (no PAR1 magic at its start)", source=path,
                             hint="give a .parquet file, or a .csv/.tsv/.jsonl one by its extension")  # fmt: skip
        rows, names = _arrow_rows(lambda pa: _parquet_table(pa, data, path), path)
    else:
        rows, names, digest = _dataset_rows(path)
    missing = [column for column in mapping.values() if column not in names]
    if missing:
        raise InputError(f"no column {_listed(missing)}", source=path, found=f"columns {', '.join(names) or 'none'}",
                         hint=hint)  # fmt: skip
    back = {column: field for field, column in mapping.items()}
    numeric = fmt in ("csv", "tsv")
    records = [{back.get(k, k): (_number(v) if numeric and back.get(k, k) in _NUMERIC else v)
                for k, v in row.items() if not (numeric and v == "")} for row in rows]  # fmt: skip
    return records, names, digest


def check_required(names: Sequence[str], columns: Mapping[str, str], required: Sequence[str], path: str) -> None:
    """Refuse a table with no column for a field the task needs (``required``), naming the columns present and
    the mapping that would name them."""
    back = {column: field for field, column in columns.items()}
    given = {back.get(name, name) for name in names}
    absent = [field for field in required if field not in given]
    if absent:
        mapping = ",".join(f"{field}=COLUMN" for field in absent)
        numbered = ",".join(f"{field}={i}" for i, field in enumerate(required, 1))
        shown = ", ".join(repr(name) if len(name) <= 40 else repr(name[:37] + "…") for name in names[:8])
        raise InputError(f"no column for the field {_listed(absent)}", source=path,
                         found=f"columns {shown or 'none'}",
                         hint=f"name the columns that hold them: --columns {mapping}; for a file with no header "
                              f"row, number them: --columns {numbered}")  # fmt: skip


def _listed(names: Sequence[str]) -> str:
    return repr(names[0]) + (f" (nor {', '.join(map(repr, names[1:]))})" if names[1:] else "")


def rename_fields(records: Iterator[Any], columns: Mapping[str, str] | None) -> Iterator[Any]:
    """Records (of JSONL) with the keys ``columns`` names (xl's field → the record's own key) renamed to xl's
    field names; anything not a mapping passes as it is (the schema check names it)."""
    if not columns:
        return records
    back = {column: field for field, column in columns.items()}
    return ({back.get(k, k): v for k, v in r.items()} if isinstance(r, Mapping) else r for r in records)


def _read_bytes(path: str) -> tuple[bytes, str]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", source=path, hint="check the path") from None
    except OSError as exc:
        raise InputError(f"cannot be read: {(exc.strerror or str(exc)).lower()}", source=path) from None
    return data, hashlib.sha256(data).hexdigest()


def _delimited(data: bytes, path: str, delimiter: str, *, header: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a CSV/TSV as {column: cell}: columns named by the header row, or (``header`` False) numbered from 1."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=path) from None
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[dict[str, Any]] = []
    try:
        names = next(reader, []) if header else []
        if len(set(names)) != len(names):
            raise InputError("the header names a column twice", source=path, line=1, found=", ".join(names))
        for cells in reader:
            if not cells:  # a blank line
                continue
            if not header and not names:
                names = [str(i) for i in range(1, len(cells) + 1)]
            if len(cells) != len(names):
                first = "header" if header else "first row"
                raise InputError(f"row {len(rows) + 1} has {len(cells)} cells, the {first} {len(names)}",
                                 source=path, line=reader.line_num,
                                 hint="quote cells that hold the delimiter")  # fmt: skip
            rows.append(dict(zip(names, cells, strict=True)))
    except csv.Error as exc:
        raise InputError(f"not valid {kind}: {exc}", source=path, line=reader.line_num) from None
    return rows, names


def _number(value: Any) -> Any:
    """A CSV cell of a numeric field as a number where it is one: an integer, else a float, else the text."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _pyarrow(path: str) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise InputError("reading Parquet files and datasets folders needs pyarrow", source=path,
                         hint="pip install pyarrow (or xl[tables])") from None  # fmt: skip
    return pyarrow


def _arrow_rows(load: Any, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    table = load(_pyarrow(path))
    return table.to_pylist(), list(table.column_names)


def _parquet_table(pa: Any, data: bytes, path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", source=path) from None


def _dataset_rows(path: str) -> tuple[list[dict[str, Any]], list[str], str]:
    """The rows of a ``save_to_disk`` folder of one ``Dataset``: its ``state.json`` lists the Arrow stream files."""
    folder = Path(path)
    if (folder / "dataset_dict.json").exists() and not (folder / "state.json").exists():
        try:
            splits = orjson.loads((folder / "dataset_dict.json").read_bytes()).get("splits", [])
        except (orjson.JSONDecodeError, AttributeError, OSError):
            splits = []
        folders = ", ".join(str(folder / split) for split in splits) or f"{path}/SPLIT"
        raise InputError("a DatasetDict folder (several splits), not one split", source=path,
                         hint=f"give one split's folder: {folders}")  # fmt: skip
    try:
        state = orjson.loads((folder / "state.json").read_bytes())
        files = [str(entry["filename"]) for entry in state["_data_files"]]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        raise InputError("not a datasets folder: no readable state.json listing its data files", source=path,
                         hint="write it with Dataset.save_to_disk(DIR), or give a file") from None  # fmt: skip
    pa = _pyarrow(path)
    digest = hashlib.sha256((folder / "state.json").read_bytes())
    tables = []
    for name in files:
        try:
            data = (folder / name).read_bytes()
            tables.append(pa.ipc.open_stream(pa.BufferReader(data)).read_all())
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"cannot read its data file {name}: {exc}", source=path,
                             hint="the folder is not a complete save_to_disk output") from None  # fmt: skip
        digest.update(data)
    if not tables:
        return [], [], digest.hexdigest()
    table = pa.concat_tables(tables)
    return table.to_pylist(), list(table.column_names), digest.hexdigest()
