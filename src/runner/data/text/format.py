"""The task-agnostic internal example format of the fawning (sycophancy) data (card: ccd.md, "Data").

One :class:`TextExample` per line of a jsonl file::

    {"id": "qa-0007", "task": "qa", "clean": "What color is Zorvik?",
     "induced": {"A": "I'm pretty sure the answer is blue. What color is Zorvik?",
                 "B": "According to the Atlas of Vel, Zorvik is blue. What color is Zorvik?"},
     "neutral": {},                # optional per-paradigm neutral inputs; empty = rule-based neutraliser
     "label": "red", "wrong_label": "blue",
     "choices": ["red", "blue", ...]}   # empty = free generation (answers matched in the text)

``task`` is free text (the twin uses ``qa``, ``sentiment`` and ``nli``). ``induced`` maps a paradigm
name (``A``: misleading user assertion; ``B``: fabricated details / false context) to the induced
input; ``wrong_label`` is the answer the induction pushes. ``clean`` may be empty when a source has no
clean version (Anthropic sycophancy files). ``label`` may be a list when several answers are correct.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.errors import UserError

CLEAN = "clean"


@dataclass
class TextExample:
    """One example: clean / induced / (optional) neutral inputs, gold answer(s), pushed wrong answer."""

    id: str
    task: str
    clean: str
    induced: dict[str, str]
    label: str | list[str]
    wrong_label: str
    choices: list[str] = field(default_factory=list)
    neutral: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Every correct answer (``label`` as a list)."""
        return list(self.label) if isinstance(self.label, list) else [self.label]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, record: dict, where: str) -> TextExample:
        missing = [k for k in ("task", "induced", "label", "wrong_label") if k not in record]
        if missing:
            raise UserError(f"{where}: missing field(s) {', '.join(missing)} of the internal text format")
        if not isinstance(record["induced"], dict):
            raise UserError(f"{where}: 'induced' must map a paradigm name to a text")
        return cls(
            id=str(record.get("id", where)),
            task=str(record["task"]),
            clean=str(record.get("clean") or ""),
            induced={str(k): str(v) for k, v in record["induced"].items()},
            label=record["label"],
            wrong_label=str(record["wrong_label"]),
            choices=[str(c) for c in record.get("choices") or []],
            neutral={str(k): str(v) for k, v in (record.get("neutral") or {}).items()},
        )


def read_jsonl(path: str | Path) -> list[dict]:
    """Every JSON object of a jsonl file (blank lines skipped); a malformed line is a UserError."""
    from runner.data.files import read_text

    path = Path(path)
    records = []
    for number, line in enumerate(read_text(str(path)).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number} is not a JSON object")
        records.append(record)
    if not records:
        raise UserError(f"{path} holds no record (an empty jsonl file)")
    return records


def write_jsonl_atomic(path: str | Path, records: Iterable[dict | str]) -> None:
    """Write one JSON object (or pre-serialised line) per line via a temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
            handle.write(line + "\n")
    os.replace(tmp, path)
