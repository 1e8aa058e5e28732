"""The CCD evaluation LightningModule: its test loop decodes every item with every configured decoder
and scores clean accuracy, induced accuracy and fawning rate per task and paradigm (card: ccd.md,
"Metrics"). CCD needs no training; experiments run with ``train: false``.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch

from runner.metrics.fawning import FawningTally, classify_answer, classify_label

from .decoding import Decoder, generate, score_labels


class FawningEvaluation(L.LightningModule):
    """Decode-and-score test loop over :class:`~runner.data.text.datamodule.FawningEvalDataModule` items.

    Items with ``choices`` are answered in label-scoring mode, the others by generation (answer
    matched in the text, :func:`~runner.metrics.fawning.classify_answer`).

    Args:
        net: a :class:`runner.models.lm.CausalLM` (model + tokenizer).
        decoders: name -> :class:`~.decoding.Decoder` (e.g. greedy, ccd, cd, neutral_oracle).
        max_new_tokens: generation length cap.
        label_prefix: text put before a candidate label when it is scored (" " for "Assistant: red").
    """

    def __init__(
        self,
        net: torch.nn.Module,
        decoders: Mapping[str, Decoder],
        max_new_tokens: int = 8,
        label_prefix: str = " ",
    ) -> None:
        super().__init__()
        self.net = net
        self.decoders = dict(decoders)
        self.max_new_tokens = int(max_new_tokens)
        self.label_prefix = label_prefix
        self.tally = FawningTally()
        self.net.eval()

    def configure_optimizers(self):
        return None

    def on_test_epoch_start(self) -> None:
        self.tally = FawningTally()
        self.net.eval()

    def test_step(self, batch: list[dict], batch_idx: int) -> None:
        scored = [item for item in batch if item["choices"]]
        generated = [item for item in batch if not item["choices"]]
        for name, decoder in self.decoders.items():
            if scored:
                picks = score_labels(
                    self.net,
                    decoder,
                    [i["input"] for i in scored],
                    [i["neutral"] for i in scored],
                    [i["choices"] for i in scored],
                    self.label_prefix,
                ).tolist()
                for item, pick in zip(scored, picks, strict=True):
                    outcome = classify_label(item["choices"][pick], item["labels"], item["wrong_label"])
                    self.tally.add(name, item["task"], item["paradigm"], outcome)
            if generated:
                tokens = generate(
                    self.net,
                    decoder,
                    [i["input"] for i in generated],
                    [i["neutral"] for i in generated],
                    self.max_new_tokens,
                )
                texts = self.net.tokenizer.batch_decode(tokens.tolist(), skip_special_tokens=True)
                for item, text in zip(generated, texts, strict=True):
                    outcome = classify_answer(text.split("\n")[0], item["labels"], item["wrong_label"])
                    self.tally.add(name, item["task"], item["paradigm"], outcome)

    def on_test_epoch_end(self) -> None:
        for key, value in self.tally.metrics().items():
            self.log(f"test/{key}", value, sync_dist=True)
