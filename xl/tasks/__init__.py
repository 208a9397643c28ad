"""Task data: JSONL schemas, validators and converters of the benchmark files (numpy/orjson/stdlib only).

See ``xl.tasks.schemas`` for the record schemas and ``xl.tasks.convert`` for the dataset registry.
"""

from __future__ import annotations

from xl.tasks.convert import (
    DATASETS,
    LABEL_SETS,
    DatasetSpec,
    available,
    convert,
    convert_to,
    datasets_markdown,
    get_dataset,
    resolve,
    seeded_subset,
    squad_minus_xquad,
)
from xl.tasks.schemas import (
    SCHEMA_MARKDOWN,
    TASK_FIELDS,
    TASKS,
    Label,
    Record,
    RecordError,
    Task,
    detect_schema,
    flatten_squad,
    iter_jsonl,
    read_squad_json,
    read_task_file,
    validate_records,
)

__all__ = [
    "DATASETS",
    "LABEL_SETS",
    "SCHEMA_MARKDOWN",
    "TASKS",
    "TASK_FIELDS",
    "DatasetSpec",
    "Label",
    "Record",
    "RecordError",
    "Task",
    "available",
    "convert",
    "convert_to",
    "datasets_markdown",
    "detect_schema",
    "flatten_squad",
    "get_dataset",
    "iter_jsonl",
    "read_squad_json",
    "read_task_file",
    "resolve",
    "seeded_subset",
    "squad_minus_xquad",
    "validate_records",
]
