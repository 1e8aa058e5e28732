"""A paper's claims as data, checked on a table sweep's runs (``table.claims`` of ``conf/table/<paper>.yaml``).

A claim is one line (optionally ``{claim: <line>, paper: <what the paper says>, sections: [...]}``)::

    dual_teacher > dt_student_alone on test/acc            # arm A's metric is higher than arm B's
    nlgcl > lightgcn - 0.005 on test/ndcg@20                # ... than B's minus a margin (non-inferiority)
    ccd[test/ccd/induced_acc] > ccd[test/greedy/induced_acc]   # two metrics (of one arm or two)
    nesterov reaches val/acc 0.75 before heavy_ball         # first evaluation at or above the target
    nesterov reaches val/acc 90% before heavy_ball          # target = 90 % of the best arm's final mean

``<`` reverses the direction. Each claim is checked in every section (and grid cell) holding both
arms, on the seeds' values: **holds** when the difference is in the claimed direction and Welch's
two-sided t-test (unequal variances, ``scipy.stats.ttest_ind(equal_var=False)``) gives p < alpha
(``table.alpha``, default 0.05); **does not hold** when it is significant the other way; **not
separable** when p >= alpha (the difference is within the seeds' noise) or a side has fewer than two
seeds. Two metrics of the same arm (``ccd[a] > ccd[b]``) come from the same runs: they are compared
with the paired t-test over seeds (``scipy.stats.ttest_rel``) instead. "reaches ... before" compares the evaluation index (epoch) at which each seed's curve first
reaches the target; a seed that never reaches it counts as one evaluation after its last.

The trivial baseline (``table.trivial``: an arm, or a constant such as chance)::

    trivial: {arm: mostpop, metric: test/ndcg@20, ceiling: null}
    trivial: {value: 0.1, label: chance, metric: test/acc, ceiling: 0.95}

is checked against every other arm (or ``learned: [...]``): each must beat it clearly (higher, Welch's
t at alpha; against a constant, the one-sample t-test); with ``ceiling`` the best arm's mean must stay
at or below it (no saturation).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

HOLDS = "holds"
FAILS = "does not hold"
NOT_SEPARABLE = "not separable"
DEFAULT_ALPHA = 0.05

_NAME = r"[A-Za-z0-9_.\-]+"
_SIDE = rf"(?P<{{n}}>{_NAME})(?:\[(?P<{{n}}m>[^\]]+)\])?"
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
COMPARE = re.compile(
    rf"^\s*{_SIDE.format(n='a')}\s*(?P<op>[<>])\s*{_SIDE.format(n='b')}"
    rf"(?:\s*(?P<sign>[-+])\s*(?P<margin>{_NUMBER}))?(?:\s+on\s+(?P<metric>\S+))?\s*$"
)
REACHES = re.compile(
    rf"^\s*(?P<a>{_NAME})\s+reaches\s+(?P<metric>\S+)\s+(?P<target>{_NUMBER})(?P<pct>%?)\s+"
    rf"before\s+(?P<b>{_NAME})\s*$"
)


@dataclass(frozen=True)
class Claim:
    """One parsed claim (see the module docstring)."""

    text: str
    kind: str  # "compare" | "reaches"
    left: str
    right: str
    left_metric: str
    right_metric: str
    op: str = ">"  # compare: ">" or "<"; reaches: "<" (fewer evaluations)
    margin: float = 0.0  # compare: the right side is shifted by this (B + margin)
    target: float = math.nan  # reaches
    relative: bool = False  # reaches: target is a fraction of the best arm's final mean
    paper: str = ""
    sections: tuple[str, ...] = ()


def parse_claim(spec: str | Mapping) -> Claim:
    """A :class:`Claim` from its line (or ``{claim:, paper:, sections:}``); ValueError naming the line."""
    paper, only = "", ()
    if isinstance(spec, Mapping):
        paper = str(spec.get("paper") or "")
        only = tuple(spec.get("sections") or ())
        spec = str(spec.get("claim", ""))
    text = str(spec).strip()
    if m := REACHES.match(text):
        target = float(m["target"])
        return Claim(
            text, "reaches", m["a"], m["b"], m["metric"], m["metric"], "<",
            target=target / 100 if m["pct"] else target, relative=bool(m["pct"]), paper=paper, sections=only,
        )  # fmt: skip
    if m := COMPARE.match(text):
        left_metric = m["am"] or m["metric"]
        right_metric = m["bm"] or m["metric"]
        if not left_metric or not right_metric:
            raise ValueError(f"claim '{text}': name the metric ('... on test/acc' or 'arm[test/acc]')")
        margin = float(m["margin"] or 0.0) * (-1 if m["sign"] == "-" else 1)
        return Claim(
            text, "compare", m["a"], m["b"], left_metric, right_metric, m["op"], margin=margin,
            paper=paper, sections=only,
        )  # fmt: skip
    raise ValueError(
        f"claim '{text}': expected 'A > B on METRIC', 'A[METRIC] < B[METRIC]', 'A > B - 0.01 on METRIC' "
        "or 'A reaches METRIC TARGET before B'"
    )


@dataclass(frozen=True)
class Verdict:
    verdict: str  # HOLDS | FAILS | NOT_SEPARABLE
    left: list[float]
    right: list[float]
    p_value: float
    detail: str = ""


def _summary(values: Sequence[float]) -> str:
    if not values:
        return "no runs"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4g} (n=1)"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def welch(
    left: Sequence[float], right: Sequence[float], op: str = ">", alpha: float = DEFAULT_ALPHA
) -> Verdict:
    """Whether ``mean(left) op mean(right)`` by Welch's two-sided t-test at ``alpha`` (module docstring)."""
    left, right = [float(v) for v in left], [float(v) for v in right]
    if len(left) < 2 or len(right) < 2:
        return Verdict(NOT_SEPARABLE, left, right, math.nan, "fewer than 2 seeds on a side: no test")
    difference = statistics.fmean(left) - statistics.fmean(right)
    if statistics.pvariance(left) == 0 and statistics.pvariance(right) == 0:
        if difference == 0:
            return Verdict(NOT_SEPARABLE, left, right, 1.0, "identical values")
        p_value = 0.0  # no seed-to-seed variation at all: the difference is exact
    else:
        import warnings

        from scipy.stats import ttest_ind

        with warnings.catch_warnings():  # near-identical values: scipy warns, the p-value is still usable
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(ttest_ind(left, right, equal_var=False).pvalue)
    if not p_value < alpha:
        return Verdict(NOT_SEPARABLE, left, right, p_value)
    in_direction = difference > 0 if op == ">" else difference < 0
    return Verdict(HOLDS if in_direction else FAILS, left, right, p_value)


def paired(
    left: Sequence[float], right: Sequence[float], op: str = ">", alpha: float = DEFAULT_ALPHA
) -> Verdict:
    """Like :func:`welch` for two metrics of the same runs (``left[i]`` and ``right[i]`` from one seed's
    run): the paired two-sided t-test over seeds (``scipy.stats.ttest_rel``); differences that are the
    same in every seed are exact (p = 0)."""
    left, right = [float(v) for v in left], [float(v) for v in right]
    if len(left) != len(right) or len(left) < 2:
        return Verdict(NOT_SEPARABLE, left, right, math.nan, "fewer than 2 paired seeds: no test")
    differences = [a - b for a, b in zip(left, right, strict=True)]
    mean = statistics.fmean(differences)
    if statistics.pvariance(differences) < 1e-24:
        if abs(mean) < 1e-12:
            return Verdict(NOT_SEPARABLE, left, right, 1.0, "identical in every seed (paired)")
        p_value = 0.0
    else:
        import warnings

        from scipy.stats import ttest_rel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(ttest_rel(left, right).pvalue)
    detail = "paired over seeds"
    if not p_value < alpha:
        return Verdict(NOT_SEPARABLE, left, right, p_value, detail)
    in_direction = mean > 0 if op == ">" else mean < 0
    return Verdict(HOLDS if in_direction else FAILS, left, right, p_value, detail)


def one_sample(values: Sequence[float], constant: float, alpha: float = DEFAULT_ALPHA) -> Verdict:
    """Whether ``mean(values) > constant`` by the one-sample two-sided t-test at ``alpha``."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return Verdict(NOT_SEPARABLE, values, [constant], math.nan, "fewer than 2 seeds: no test")
    difference = statistics.fmean(values) - constant
    if statistics.pvariance(values) == 0:
        p_value = 0.0 if difference != 0 else 1.0
    else:
        import warnings

        from scipy.stats import ttest_1samp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(ttest_1samp(values, constant).pvalue)
    if not p_value < alpha:
        return Verdict(NOT_SEPARABLE, values, [constant], p_value)
    return Verdict(HOLDS if difference > 0 else FAILS, values, [constant], p_value)


def evaluations_to_reach(curve: Mapping[int, float], target: float, higher_is_better: bool = True) -> float:
    """Index (epoch) of the first evaluation at or beyond ``target``; one after the last if never."""
    for epoch in sorted(curve):
        value = curve[epoch]
        if (value >= target) if higher_is_better else (value <= target):
            return float(epoch)
    return float(max(curve) + 1) if curve else math.nan


# a "group" as the checker sees it: {arm: [job, ...]} with job = {"metrics": {...}, "curves": callable}
Finals = Callable[[str, str], list[float]]
Curves = Callable[[str, str], list[Mapping[int, float]]]


def check_claim(
    claim: Claim,
    finals: Finals,
    curves: Curves | None = None,
    arms: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
) -> Verdict | None:
    """The verdict of ``claim`` on one cell of a table (None if an arm is absent from ``arms`` or a
    side has no value, e.g. records from before the metric was logged).

    ``finals(arm, metric)``: the seeds' final values; ``curves(arm, metric)``: the seeds' curves
    (``{epoch: value}``) for "reaches"; ``arms``: the arms present (for a relative target)."""
    if arms and (claim.left not in arms or claim.right not in arms):
        return None
    if claim.kind == "compare":
        left = finals(claim.left, claim.left_metric)
        right = [v + claim.margin for v in finals(claim.right, claim.right_metric)]
        if not left or not right:
            return None
        if claim.left == claim.right and len(left) == len(right):  # two metrics of the same runs
            return paired(left, right, claim.op, alpha)
        return welch(left, right, claim.op, alpha)
    assert curves is not None, "a 'reaches' claim needs the runs' curves"
    target = claim.target
    if claim.relative:
        means = [statistics.fmean(v) for arm in arms if (v := finals(arm, claim.left_metric))]
        if not means:
            return None
        target = claim.target * max(means)
    left = [evaluations_to_reach(c, target) for c in curves(claim.left, claim.left_metric) if c]
    right = [evaluations_to_reach(c, target) for c in curves(claim.right, claim.right_metric) if c]
    if not left or not right:
        return None
    verdict = welch(left, right, "<", alpha)
    never = [
        name
        for name, runs in (
            (claim.left, curves(claim.left, claim.left_metric)),
            (claim.right, curves(claim.right, claim.right_metric)),
        )
        for c in runs
        if c and not any(v >= target for v in c.values())
    ]
    detail = f"target {target:.4g}"
    if never:
        detail += f"; not reached by {len(never)} run(s) of {', '.join(sorted(set(never)))} (counted as one evaluation after the last)"
    return Verdict(verdict.verdict, verdict.left, verdict.right, verdict.p_value, detail)


def claim_line(claim: Claim, verdict: Verdict | None, where: str = "") -> str:
    """``- [where] <claim>: **holds** (A ... vs B ..., Welch p = ...) — paper: ...``"""
    prefix = f"- {f'[{where}] ' if where else ''}`{claim.text}`: "
    if verdict is None:
        return prefix + "not evaluated (an arm has no finished run here, or its runs lack the metric)"
    unit = "evaluations to target" if claim.kind == "reaches" else claim.left_metric
    right_name = (
        claim.right
        if claim.kind == "reaches" or claim.right_metric == claim.left_metric
        else f"{claim.right}[{claim.right_metric}]"
    )
    shift = f" (shifted by {claim.margin:+g})" if claim.margin else ""
    values = f"{claim.left} {_summary(verdict.left)} vs {right_name}{shift} {_summary(verdict.right)}"
    test = "paired t" if verdict.detail.startswith("paired") else "Welch"
    p = "no test" if math.isnan(verdict.p_value) else f"{test} p = {verdict.p_value:.3g}"
    if verdict.p_value == 0:
        p = f"{test}: exact, the same difference in every seed"
    extra = f"; {verdict.detail}" if verdict.detail and test == "Welch" else ""
    paper = f" — paper: {claim.paper}" if claim.paper else ""
    return f"{prefix}**{verdict.verdict}** ({unit}: {values}; {p}{extra}){paper}"


def trivial_lines(
    spec: Mapping | None, finals: Finals, arms: Sequence[str], alpha: float = DEFAULT_ALPHA, where: str = ""
) -> list[str]:
    """The trivial-baseline check of one cell (module docstring): one line for the baseline, one for
    the ceiling when ``spec`` has one. Empty without a spec."""
    if not spec:
        return []
    metric = str(spec.get("metric") or "")
    if not metric:
        raise ValueError("table.trivial: name the metric the baseline is compared on (metric: test/acc)")
    prefix = f"- {f'[{where}] ' if where else ''}"
    baseline_arm = spec.get("arm")
    learned = [a for a in (spec.get("learned") or arms) if a in arms and a != baseline_arm]
    beaten, not_beaten = [], []
    if baseline_arm is not None:
        if baseline_arm not in arms:
            return [f"{prefix}trivial baseline `{baseline_arm}`: no finished run here"]
        baseline_values = finals(baseline_arm, metric)
        name = f"`{baseline_arm}` ({metric} {_summary(baseline_values)})"
    else:
        constant = float(spec["value"])
        name = f"{spec.get('label', 'constant')} ({metric} {constant:.4g})"
    for arm in learned:
        values = finals(arm, metric)
        if not values:
            continue
        if baseline_arm is not None:
            verdict = welch(values, baseline_values, ">", alpha)
        else:
            verdict = one_sample(values, constant, alpha)
        p = "no test" if math.isnan(verdict.p_value) else f"p = {verdict.p_value:.2g}"
        entry = f"{arm} {statistics.fmean(values):.4g} ({p})"
        (beaten if verdict.verdict == HOLDS else not_beaten).append(entry)
    test = "Welch's t" if baseline_arm is not None else "one-sample t"
    line = f"{prefix}trivial baseline {name}: beaten clearly ({test}, p < {alpha:g}) by {len(beaten)} of {len(beaten) + len(not_beaten)}"
    line += f": {', '.join(beaten)}" if beaten else ""
    line += f"; **not beaten clearly** by {', '.join(not_beaten)}" if not_beaten else ""
    lines = [line]
    ceiling = spec.get("ceiling")
    if ceiling is not None:
        means = {a: statistics.fmean(v) for a in arms if (v := finals(a, metric))}
        if means:
            best = max(means, key=means.__getitem__)
            ok = means[best] <= float(ceiling)
            lines.append(
                f"{prefix}ceiling: best {metric} {best} {means[best]:.4g} "
                + (f"≤ {float(ceiling):g} (not saturated)" if ok else f"> {float(ceiling):g}: **saturated**")
            )
    return lines
