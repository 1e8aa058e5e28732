"""``python -m runner.federated.tuning <multirun dir> --tune KEY --select METRIC``: compare methods each
at its own best value of a swept hyperparameter, chosen on a validation metric.

A fair comparison of methods that move at different speeds per unit of step size (Byrd-NAFL: robust
SGD vs undampened heavy-ball / Nesterov momentum at one shared η; CO-PFL: Adam at 1e-3 vs SGD at 0.05)
tunes the step size of each method on a validation split and compares the methods at their best
values. This reads a Hydra multirun (the same job folders as :mod:`runner.report`), groups the jobs by
their overrides other than ``seed`` and ``KEY`` (a *setting*: method, aggregator, ...), and for each
setting picks the value of ``KEY`` whose mean ``METRIC`` over its seeds is best (``--mode max`` by
default). It writes ``tuning.md`` next to the runs: per setting the chosen value, the selection
metric and every ``test/*`` metric at that value (mean ± std over seeds), and the mean selection
metric of every value tried. The selection never looks at a ``test/*`` metric (refused).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from runner.report import load_jobs, mean_std

__all__ = ["best_values", "main", "tuning_table"]


def _split(group: str, key: str) -> tuple[str, str | None]:
    """(the setting: the group's overrides without ``key``, the value of ``key`` or None)."""
    rest, value = [], None
    for token in group.split(" "):
        if token.lstrip("+~").startswith(key + "="):
            value = token.split("=", 1)[1]
        elif token and token != "(no overrides)":
            rest.append(token)
    return " ".join(rest) or "(no other overrides)", value


def _finite(jobs: list[dict], metric: str) -> list[float]:
    return [j["metrics"][metric] for j in jobs if math.isfinite(j["metrics"].get(metric, math.nan))]


def best_values(jobs: list[dict], key: str, metric: str, mode: str = "max") -> dict[str, dict]:
    """``{setting: {"best": value, "jobs": jobs at that value, "scores": {value: mean metric}}}``;
    a value none of whose jobs logged ``metric`` (e.g. every run diverged) is never chosen."""
    settings: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        setting, value = _split(job["group"], key)
        if value is not None:
            settings[setting][value].append(job)
    out = {}
    for setting, by_value in settings.items():
        scores = {
            v: statistics.fmean(s) for v, members in by_value.items() if (s := _finite(members, metric))
        }
        if not scores:
            continue
        pick = max if mode == "max" else min
        best = pick(scores, key=scores.__getitem__)
        out[setting] = {"best": best, "jobs": by_value[best], "scores": scores}
    return out


def tuning_table(jobs: list[dict], key: str, metric: str, mode: str = "max") -> str:
    """The markdown table of :func:`best_values` (module docstring)."""
    chosen = best_values(jobs, key, metric, mode)
    tests = sorted(
        {n for j in jobs for n in j["metrics"] if n.startswith("test/") and not n.endswith("_step")}
    )
    header = ["setting", f"best {key}", "seeds", f"{metric} (selection)", *tests, f"mean {metric} per value"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, entry in sorted(chosen.items()):
        members = entry["jobs"]
        cells = [setting, entry["best"], ",".join(str(m["seed"]) for m in members)]
        for name in (metric, *tests):
            values = _finite(members, name)
            cells.append(mean_std(values) if values else "–")
        tried = sorted(entry["scores"].items(), key=lambda kv: float(kv[0]) if _is_number(kv[0]) else kv[0])
        cells.append(", ".join(f"{v}: {s:.4f}" for v, s in tried))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.federated.tuning", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (logs/<task>/multiruns/<time>)")
    parser.add_argument("--tune", required=True, help="the swept override key, e.g. fl_strategy.server_lr")
    parser.add_argument("--select", required=True, help="the validation metric, e.g. val/acc")
    parser.add_argument("--mode", choices=("max", "min"), default="max")
    args = parser.parse_args(argv)
    if args.select.startswith("test/"):
        print(
            f"error: --select {args.select} is a test metric; select on a validation metric (val/...)",
            file=sys.stderr,
        )
        return 2
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder; give a multirun folder", file=sys.stderr)
        return 2
    jobs = load_jobs(args.sweep_dir)
    if not best_values(jobs, args.tune, args.select, args.mode):
        print(
            f"error: no job under {args.sweep_dir} has both {args.tune}=... and {args.select}",
            file=sys.stderr,
        )
        return 2
    markdown = (
        f"# Tuned comparison: {args.sweep_dir}\n\nEach setting at its best `{args.tune}` by mean "
        f"`{args.select}` ({args.mode}) over its seeds; test metrics at that value.\n\n"
        + tuning_table(jobs, args.tune, args.select, args.mode)
        + "\n"
    )
    (args.sweep_dir / "tuning.md").write_text(markdown)
    print(markdown)
    print(f"written: {args.sweep_dir / 'tuning.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
