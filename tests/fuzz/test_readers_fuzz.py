"""Damaged copies of every reader's twin files (issue 18, item 8).

For each registered target (tests/fuzz/targets.py) the twin is generated once, then each selected
file is damaged — truncated to half, its tail cut, emptied, garbled, replaced by another format,
given an out-of-range value, or deleted — and the real reader loads the copy in-process. Each case
must either load (with a skip count when the damage cannot be benign) or raise a one-line UserError
naming the damaged file. Never another exception (a traceback for the user), never an empty result
without an error.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from runner.compose import compose_run_config
from runner.data.skips import reset_skips, skipped
from runner.errors import UserError
from tests.fuzz.targets import TARGETS, FuzzTarget

MUTATIONS = ("truncate_half", "truncate_tail", "empty", "garble", "wrong_type", "out_of_range", "delete")
# damage that can never leave a file valid: it must end in an error or a skip count
ALWAYS_DETECTED = ("empty", "wrong_type", "out_of_range", "delete")


def is_binary(data: bytes) -> bool:
    if b"\x00" in data[:4096]:
        return True
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def mutate(path: Path, mutation: str, target: FuzzTarget, rng: random.Random) -> bool:
    """Damage ``path`` in place; False when the mutation does not apply to this file."""
    data = path.read_bytes()
    if mutation == "truncate_half":
        path.write_bytes(data[: len(data) // 2])
    elif mutation == "truncate_tail":
        path.write_bytes(data[: max(len(data) - 7, 0)])
    elif mutation == "empty":
        path.write_bytes(b"")
    elif mutation == "garble":
        garbled = bytearray(data)
        lo, hi = len(data) // 3, max(len(data) * 2 // 3, len(data) // 3 + 1)
        for _ in range(min(16, len(data))):
            garbled[rng.randrange(lo, min(hi, len(data)))] = rng.randrange(256)
        path.write_bytes(bytes(garbled))
    elif mutation == "wrong_type":
        other = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(64))
        path.write_bytes(other if not is_binary(data) else b'{"this is": "json, not the expected format"}\n')
    elif mutation == "out_of_range":
        if target.out_of_range is None:
            return False
        target.out_of_range(path, rng)
        if path.read_bytes() == data:
            return False
    elif mutation == "delete":
        path.unlink()
    return True


NEUTRAL_EXPERIMENT = "video_supervised_hmdb"


@pytest.fixture(scope="session")
def pristine_twins(tmp_path_factory):
    """name -> (composed config, root of the generated twin); each twin generated on first use."""
    from hydra.utils import instantiate

    made: dict[str, tuple] = {}

    def get(target: FuzzTarget):
        if target.name not in made:
            base = tmp_path_factory.mktemp(f"twin_{target.name}")
            overrides = list(target.overrides)
            if not any(o.startswith("experiment=") for o in overrides):
                # a dataset-only target under an experiment that sets no dataset keys (the default
                # experiment's twin recipe sizes video twins: its keys would reach, e.g., MNIST's twin)
                overrides.insert(0, f"experiment={NEUTRAL_EXPERIMENT}")
            cfg = compose_run_config(overrides, output_dir=base / "run", root_dir=base, data_dir=base)
            root = Path(instantiate(cfg.dataset[target.twin_attr]).ensure(str(base / "twin")))
            made[target.name] = (cfg, root)
        return made[target.name]

    return get


def damaged_files(root: Path, target: FuzzTarget) -> list[Path]:
    picked = []
    for pattern in target.files:
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        assert matches, f"{target.name}: no twin file matches {pattern} under {root}"
        picked.append(matches[0].relative_to(root))
    return picked


def check_case(target, cfg, root: Path, rel: Path, mutation: str, binary: bool) -> str | None:
    """None when the case is handled cleanly, else what went wrong."""
    reset_skips()
    try:
        loaded = target.load(cfg, root)
    except UserError as err:
        message = str(err)
        if "\n" in message:
            return f"multi-line error: {message!r}"
        named = {rel.name, rel.parent.name, str(root)} - {""}
        if not any(n in message for n in named) and str(rel) not in message:
            return f"error does not name the file: {message}"
        return None
    except Exception as err:  # noqa: BLE001 - exactly what the suite looks for
        return f"{type(err).__name__} (a traceback for the user): {str(err).splitlines()[0][:200] if str(err) else ''}"
    if loaded <= 0:
        return "loaded nothing and raised no error"
    must_detect = mutation in ALWAYS_DETECTED or (mutation == "truncate_half" and binary)
    if must_detect and not skipped():
        return f"loaded {loaded} samples with no error and no skip count"
    return None


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_damaged_twin_files_fail_in_one_line_or_load_with_a_skip_count(target, pristine_twins, tmp_path):
    cfg, pristine = pristine_twins(target)
    reset_skips()
    assert target.load(cfg, pristine) > 0, "the undamaged twin must load"
    problems, cases = [], 0
    for rel in damaged_files(pristine, target):
        binary = is_binary((pristine / rel).read_bytes())
        for mutation in MUTATIONS:
            if mutation in target.skip_mutations:
                continue
            seed = int(hashlib.sha256(f"{target.name}/{rel}/{mutation}".encode()).hexdigest()[:8], 16)
            case_root = tmp_path / f"case{cases}"
            shutil.copytree(pristine, case_root, symlinks=True)
            if not mutate(case_root / rel, mutation, target, random.Random(seed)):
                shutil.rmtree(case_root)
                continue
            cases += 1
            problem = check_case(target, cfg, case_root, rel, mutation, binary)
            if problem:
                problems.append(f"{rel} [{mutation}]: {problem}")
            shutil.rmtree(case_root)
    record_case_count(target.name, cases)
    assert not problems, f"{target.name}: " + "\n".join(problems)


def record_case_count(name: str, cases: int) -> None:
    """Append ``name cases`` to $FUZZ_CASES_FILE when set (the README's case count comes from it)."""
    out = os.environ.get("FUZZ_CASES_FILE")
    if out:
        with open(out, "a") as fh:
            fh.write(f"{name} {cases}\n")
