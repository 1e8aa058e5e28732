"""Lightning data modules of the fawning experiments (card: ccd.md).

* :class:`DialogueDataModule` — user/assistant dialogues of the twin for training the in-project LM
  (loss on the assistant's answer only); its ``network_kwargs`` train the byte-level BPE tokenizer on
  the twin's text and hand it to the model builder.
* :class:`FawningEvalDataModule` — evaluation items for the CCD test loop: every example as its clean
  input and one item per induction paradigm, each with its neutral transformation (the example's own
  ``neutral`` text if given, else the rule-based :class:`~.induction.Neutraliser`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from runner.data.loading import worker_context
from runner.errors import UserError

from .format import CLEAN, TextExample, read_jsonl
from .induction import Neutraliser
from .twin import KnowledgeBaseTwin

log = logging.getLogger("runner.data")

DEFAULT_PROMPT = "User: {text}\nAssistant:"


class _TwinMixin:
    """``synthetic=true`` reads the twin written at ``synthetic_root``; else ``root``."""

    root: str
    synthetic: bool
    synthetic_root: str
    twin: KnowledgeBaseTwin | None

    def twin_root(self) -> str:
        if self.twin is None:
            raise UserError("dataset.twin is not set: the synthetic fawning twin needs its generator config")
        return self.twin.ensure(self.synthetic_root)

    def data_root(self) -> str:
        return self.twin_root() if self.synthetic else self.root


class DialogueDataModule(_TwinMixin, L.LightningDataModule):
    """Twin dialogues ``{"prompt", "response"}`` -> ``{"input_ids", "attention_mask", "labels"}``.

    Args:
        root / synthetic / synthetic_root / twin: where the dialogue jsonl files are (see the mixin).
        prompt_template: the chat format of a user turn (``{text}``); the answer follows after a space
            and ends with the tokenizer's EOS.
        vocab_size: BPE vocabulary of the tokenizer trained on the training dialogues.
        batch_size, num_workers: loader settings.
        train_file / val_file: file names under the root.
    """

    def __init__(
        self,
        root: str = "",
        synthetic: bool = True,
        synthetic_root: str = "",
        twin: KnowledgeBaseTwin | None = None,
        prompt_template: str = DEFAULT_PROMPT,
        vocab_size: int = 1024,
        batch_size: int = 64,
        num_workers: int = 0,
        train_file: str = "train_dialogues.jsonl",
        val_file: str = "val_dialogues.jsonl",
        max_dialogues: int | None = None,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.root, self.synthetic, self.synthetic_root, self.twin = root, synthetic, synthetic_root, twin
        self.prompt_template = prompt_template
        self.vocab_size = int(vocab_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.train_file, self.val_file = train_file, val_file
        self.max_dialogues = max_dialogues
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.tokenizer = None
        self._dialogues: dict[str, list[dict]] = {}

    def dialogues(self, split: str) -> list[dict]:
        if split not in self._dialogues:
            name = self.train_file if split == "train" else self.val_file
            path = Path(self.data_root()) / name
            if not path.is_file():
                raise UserError(f"dialogue file {path} not found; use dataset.synthetic=true for the twin")
            records = read_jsonl(path)
            if self.max_dialogues and split == "train":
                records = records[: int(self.max_dialogues)]
            self._dialogues[split] = records
        return self._dialogues[split]

    def text_of(self, dialogue: dict) -> tuple[str, str]:
        return self.prompt_template.format(text=dialogue["prompt"]), " " + str(dialogue["response"])

    def build_tokenizer(self):
        """The BPE tokenizer trained on the training dialogues (deterministic, about a second)."""
        from runner.models.lm import train_tokenizer

        if self.tokenizer is None:
            corpus = ["".join(self.text_of(d)) for d in self.dialogues("train")]
            self.tokenizer = train_tokenizer(corpus, self.vocab_size)
        return self.tokenizer

    def network_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.build_tokenizer()}

    def collate(self, dialogues: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Left-padded ids; ``labels`` are −100 except on the answer tokens and EOS."""
        from runner.models.lm import left_pad

        tokenizer = self.build_tokenizer()
        rows, answer_lengths = [], []
        for dialogue in dialogues:
            prompt, answer = self.text_of(dialogue)
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            rows.append(tokenizer(prompt, add_special_tokens=False)["input_ids"] + answer_ids)
            answer_lengths.append(len(answer_ids))
        ids, mask = left_pad(rows, tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        for row, n in enumerate(answer_lengths):
            labels[row, -n:] = ids[row, -n:]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dialogues(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            multiprocessing_context=worker_context(self.num_workers),
            collate_fn=self.collate,
            drop_last=shuffle,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", False)


class FawningEvalDataModule(_TwinMixin, L.LightningDataModule):
    """Evaluation items for the CCD test loop (see the module docstring).

    An item is ``{"id", "task", "paradigm", "input", "neutral", "labels", "wrong_label", "choices"}``
    with ``paradigm`` = ``clean`` or an induction paradigm; inputs are already in ``prompt_template``.

    Args:
        root / synthetic / synthetic_root / twin: where the data is (see the mixin).
        synthetic_file: the twin's file read with ``synthetic=true`` (the twin writes every format).
        reader: ``root -> list[TextExample]`` (``runner.data.text.readers``).
        neutraliser: the x_ind -> x_neu transformation (clean inputs go through it too: the method
            does not know which inputs are induced).
        prompt_template: chat format of the user turn (``{text}``).
        paradigms: induction paradigms to evaluate (None = all in the data); clean is always included
            when the example has a clean input.
        max_examples: cap on examples (per file order) for quick runs.
        batch_size: items per test batch.
        num_workers, persistent_workers: loader settings.
    """

    def __init__(
        self,
        reader: Callable[[str], list[TextExample]],
        root: str = "",
        synthetic: bool = False,
        synthetic_root: str = "",
        synthetic_file: str = "eval.jsonl",
        twin: KnowledgeBaseTwin | None = None,
        neutraliser: Neutraliser | None = None,
        prompt_template: str = DEFAULT_PROMPT,
        paradigms: Sequence[str] | None = None,
        max_examples: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.synthetic_file = synthetic_file
        self.persistent_workers = bool(persistent_workers) and int(num_workers) > 0
        self.root, self.synthetic, self.synthetic_root, self.twin = root, synthetic, synthetic_root, twin
        self.neutraliser = neutraliser or Neutraliser()
        self.prompt_template = prompt_template
        self.paradigms = None if paradigms is None else [str(p) for p in paradigms]
        self.max_examples = max_examples
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self._items: list[dict] | None = None

    def network_kwargs(self) -> dict[str, Any]:
        """The twin's root, for a model config that trains the in-project LM on it."""
        return {"twin_root": self.twin_root()} if self.twin is not None else {}

    def examples(self) -> list[TextExample]:
        path = Path(self.twin_root()) / self.synthetic_file if self.synthetic else Path(self.root)
        examples = self.reader(str(path))
        if self.max_examples:
            examples = _round_robin(examples, int(self.max_examples))
        return examples

    def items(self) -> list[dict]:
        if self._items is None:
            self._items = []
            for example in self.examples():
                variants = [(CLEAN, example.clean, example.clean)] if example.clean else []
                for paradigm, text in example.induced.items():
                    if self.paradigms is None or paradigm in self.paradigms:
                        neutral = example.neutral.get(paradigm) or self.neutraliser(text)
                        variants.append((paradigm, text, neutral))
                for paradigm, text, neutral in variants:
                    self._items.append(
                        {
                            "id": example.id,
                            "task": example.task,
                            "paradigm": paradigm,
                            "input": self.prompt_template.format(text=text),
                            "neutral": self.prompt_template.format(
                                text=neutral if paradigm != CLEAN else self.neutraliser(text)
                            ),
                            "labels": example.labels,
                            "wrong_label": example.wrong_label,
                            "choices": example.choices,
                        }
                    )
            log.info("fawning evaluation: %d items", len(self._items))
        return self._items

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.items(),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            multiprocessing_context=worker_context(self.num_workers),
            collate_fn=list,
            persistent_workers=self.persistent_workers,
        )


def _round_robin(examples: list[TextExample], count: int) -> list[TextExample]:
    """The first ``count`` examples taking tasks in turn (so a cap keeps every task)."""
    by_task: dict[str, list[TextExample]] = {}
    for example in examples:
        by_task.setdefault(example.task, []).append(example)
    out: list[TextExample] = []
    queues = list(by_task.values())
    index = 0
    while len(out) < count and any(index < len(q) for q in queues):
        out += [q[index] for q in queues if index < len(q)][: count - len(out)]
        index += 1
    return out
