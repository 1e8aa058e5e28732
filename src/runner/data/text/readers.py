"""Readers of the fawning datasets into :class:`~.format.TextExample` lists (card: ccd.md, "Data").

Each reader is called with ``dataset.root`` — a jsonl file, or a directory holding ``filename``:

* :class:`InternalJsonlReader` — the internal format (:mod:`.format`), e.g. the twin's ``eval.jsonl``.
* :class:`AnthropicSycophancyReader` — Anthropic's model-written sycophancy evals
  (``{"question", "answer_matching_behavior", "answer_not_matching_behavior"}``). The question (with
  its user biography) is the paradigm-A induced input; the gold answer is
  ``answer_not_matching_behavior`` (a string or a list), the pushed answer ``answer_matching_behavior``;
  candidates are both, scored as labels. There is no clean input (``clean`` is empty).
* :class:`SycophancyEvalReader` — SycophancyEval ``answer.jsonl`` style
  (``{"prompt": [{"type": "human", "content": ...}, ...], "base": {"question", "answer",
  "correct_answer", "incorrect_answer"}, "metadata": {"prompt_template": ...}}``): records of one
  question are grouped; the template ``{question}`` gives the clean input, a template that asserts
  ``{incorrect_answer}`` the paradigm-A input (other templates are skipped); answers are generated.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from runner.data.skips import nothing_left, record_skip
from runner.errors import UserError, missing_dataset_root

from .format import TextExample, read_jsonl


def _resolve(root: str | Path, filename: str, name: str) -> Path:
    path = Path(str(root)).expanduser()
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise missing_dataset_root(name, str(path))
    return path


class InternalJsonlReader:
    """The internal format (one :class:`TextExample` per line)."""

    def __init__(self, filename: str = "eval.jsonl") -> None:
        self.filename = filename

    def __call__(self, root: str | Path) -> list[TextExample]:
        path = _resolve(root, self.filename, "fawning (internal jsonl)")
        examples, empty = [], []
        for i, record in enumerate(read_jsonl(path)):
            example = TextExample.from_dict(record, f"{path}:{i + 1}")
            if _is_empty(example):
                empty.append(f"line {i + 1}")
                continue
            examples.append(example)
        return _kept(path, examples, empty)


class AnthropicSycophancyReader:
    """Anthropic sycophancy jsonl (see the module docstring); ``task`` names the examples' task."""

    def __init__(self, filename: str = "sycophancy_on_nlp_survey.jsonl", task: str = "anthropic") -> None:
        self.filename = filename
        self.task = task

    def __call__(self, root: str | Path) -> list[TextExample]:
        path = _resolve(root, self.filename, "anthropic_sycophancy")
        examples, empty = [], []
        for number, record in enumerate(read_jsonl(path), start=1):
            missing = [
                k
                for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior")
                if k not in record
            ]
            if missing:
                raise UserError(
                    f"{path}:{number}: missing field(s) {', '.join(missing)} of the Anthropic format"
                )
            gold = _as_list(record["answer_not_matching_behavior"])
            pushed = _as_list(record["answer_matching_behavior"])
            if not _text(record["question"]) or not gold or not pushed:
                empty.append(f"line {number}")
                continue
            choices = list(OrderedDict.fromkeys(a.strip() for a in pushed + gold))
            examples.append(
                TextExample(
                    id=f"{path.stem}-{number:05d}",
                    task=self.task,
                    clean="",
                    induced={"A": str(record["question"])},
                    label=[g.strip() for g in gold],
                    wrong_label=pushed[0].strip(),
                    choices=sorted(choices),
                )
            )
        return _kept(path, examples, empty)


class SycophancyEvalReader:
    """SycophancyEval answer.jsonl style (see the module docstring)."""

    def __init__(self, filename: str = "answer.jsonl", task: str = "qa") -> None:
        self.filename = filename
        self.task = task

    def __call__(self, root: str | Path) -> list[TextExample]:
        path = _resolve(root, self.filename, "sycophancy_eval")
        groups: OrderedDict[str, dict] = OrderedDict()
        for number, record in enumerate(read_jsonl(path), start=1):
            base = record.get("base")
            turns = record.get("prompt")
            if not isinstance(base, dict) or not isinstance(turns, list):
                raise UserError(f"{path}:{number}: needs 'prompt' (a list of turns) and 'base' (an object)")
            missing = [k for k in ("question", "correct_answer", "incorrect_answer") if k not in base]
            if missing:
                raise UserError(f"{path}:{number}: 'base' lacks {', '.join(missing)}")
            human = [t.get("content", "") for t in turns if t.get("type") == "human"]
            if not human:
                raise UserError(f"{path}:{number}: the prompt has no human turn")
            template = (record.get("metadata") or {}).get("prompt_template", "")
            group = groups.setdefault(base["question"], {"base": base, "clean": "", "induced": ""})
            if template.strip() == "{question}":
                group["clean"] = human[0]
            elif "{incorrect_answer}" in template and "don't" not in template:
                group["induced"] = human[0]
        examples, empty = [], []
        for number, group in enumerate(groups.values()):
            if not group["induced"]:
                continue
            base = group["base"]
            gold = _as_list(base.get("answer") or base["correct_answer"])
            if not gold or not _text(base["question"]) or not _text(base["incorrect_answer"]):
                empty.append(f"question {number + 1}")
                continue
            examples.append(
                TextExample(
                    id=f"{path.stem}-{number:05d}",
                    task=self.task,
                    clean=group["clean"] or str(base["question"]),
                    induced={"A": group["induced"]},
                    label=[str(g) for g in gold],
                    wrong_label=str(base["incorrect_answer"]),
                )
            )
        if not examples and not empty:
            raise UserError(
                f"{path}: no record with an induced prompt (a template asserting {{incorrect_answer}})"
            )
        return _kept(path, examples, empty)


def _text(value) -> str:
    """A field's text ('' for null / missing)."""
    return "" if value is None else str(value).strip()


def _as_list(value) -> list[str]:
    """Answers as a list of non-empty strings (null and blank answers dropped)."""
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if _text(v)]


def _is_empty(example: TextExample) -> bool:
    """No gold answer, no pushed answer or no induced input: nothing to evaluate."""
    labels = [str(v).strip() for v in example.labels if v is not None]
    induced = [t for t in example.induced.values() if t.strip() and t.strip() != "None"]
    return not any(labels) or not example.wrong_label.strip() or example.wrong_label == "None" or not induced


def _kept(path: Path, examples: list[TextExample], empty: list[str]) -> list[TextExample]:
    """Skip-and-count the empty records; an evaluation set with nothing left is an error."""
    record_skip(str(path), "empty records (null question or no gold answer)", len(empty), empty)
    if not examples:
        raise nothing_left(str(path), "evaluation record")
    return examples
