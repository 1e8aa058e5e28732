"""Read a W&B run folder written offline (``<run>/wandb/offline-run-*``) without the network or a W&B
server: its config, its logged history and its tables.

The ``run-<id>.wandb`` file is a LevelDB-style log (W&B's transaction log): a 7-byte header
(``:W&B``, magic ``0xBEE1``, version), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC32C, length, type: full / first / middle / last); the payloads are ``wandb_internal_pb2.Record``
protobufs (``run``, ``config``, ``history``, ``summary``, ...). Tables are JSON files under
``files/media/table/`` named by the history entry (``{"_type": "table-file", "path": ...}``).
The CRCs are not checked (a torn last chunk, from a killed run, is dropped).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER_LENGTH = 7
BLOCK_SIZE = 32768
CHUNK_HEADER = struct.Struct("<IHB")  # crc32c, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def run_folders(job_dir: str | Path) -> list[Path]:
    """The W&B run folders of one runner job (offline and synced/online ones), oldest first."""
    root = Path(job_dir) / "wandb"
    return sorted(p for p in root.glob("*run-*") if p.is_dir() and any(p.glob("run-*.wandb")))


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (no :W&B header)")
    position = HEADER_LENGTH
    while position + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER.size:  # block trailer: zero padding
            position += left_in_block
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(data, position)
        start = position + CHUNK_HEADER.size
        if kind == 0 and length == 0:  # padding up to the block end
            position += left_in_block
            continue
        if start + length > len(data):  # torn write at the end of a killed run
            return
        yield kind, data[start : start + length]
        position = start + length


def records(wandb_file: str | Path) -> Iterator[Any]:
    """Every ``Record`` protobuf of a ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    pending = b""
    for kind, payload in _chunks(Path(wandb_file).read_bytes()):
        if kind == FULL:
            body = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            body, pending = pending + payload, b""
        else:
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(body)
        yield record


def _log_file(run_dir: Path) -> Path:
    return next(Path(run_dir).glob("run-*.wandb"))


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """``name``, ``group``, ``job_type``, ``project`` and the ``config`` (updates applied in order)."""
    info: dict[str, Any] = {"config": {}}
    for record in records(_log_file(Path(run_dir))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            info.update(
                name=run.display_name, group=run.run_group, job_type=run.job_type, project=run.project
            )
            updates = run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            continue
        for item in updates:
            if _key(item) != "_wandb":
                info["config"][_key(item)] = json.loads(item.value_json)
    return info


def history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The logged history rows (one dict per ``log`` call: ``_step``, ``epoch``, metrics, media refs)."""
    rows = []
    for record in records(_log_file(Path(run_dir))):
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, Any] = {}
        for item in record.history.item:
            value = json.loads(item.value_json)
            if item.nested_key and len(item.nested_key) > 1:  # a media entry: {"curves": {"_type": ...}}
                row.setdefault(item.nested_key[0], {})["/".join(item.nested_key[1:])] = value
            else:
                row[_key(item)] = value
        rows.append(row)
    return rows


def tables(run_dir: str | Path) -> dict[str, dict[str, list]]:
    """``{key: {"columns": [...], "data": [[...], ...]}}`` of every table the run logged (last one per key)."""
    out = {}
    for row in history(run_dir):
        for key, value in row.items():
            if isinstance(value, dict) and value.get("_type") == "table-file" and value.get("path"):
                table = json.loads((Path(run_dir) / "files" / value["path"]).read_text())
                out[key] = {"columns": table["columns"], "data": table["data"]}
    return out
