"""Rendering query results for the terminal, JSON and CSV."""

import csv
import io
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from tuner.storage.records import COMPLETE, DIVERGED, DONE_STATES, PRUNED, StudyRow, reached_target

if TYPE_CHECKING:
    from tuner.tunability import Tunability


STEPS_OBJECTIVE = "steps_to_target"
"""The objective whose scores are steps when the target was reached and a ranking device when not."""


def best_as_json(rows: list[dict[str, Any]]) -> str:
    """One object per optimizer and sampler (rows of ``rankings.best_ranked``): ``objective``, this
    configuration's re-evaluation runs; ``ranking``, the statistics it is ranked by (the runs of
    every repeat's winner, ``tuner.rankings``) with 95% intervals; ``config``, constructor
    arguments and the schedule."""
    def estimate(value: float, low: float, high: float) -> dict[str, float | None]:
        return {"value": _plain(value), "ci": [_plain(low), _plain(high)]}

    return json.dumps([
        {
            "experiment": r["experiment"],
            "optimizer": r["optimizer"],
            "sampler": r["sampler"],
            "objective": {
                "mean": r["reeval_mean"], "std": r["reeval_std"], "min": r["reeval_min"], "max": r["reeval_max"],
                "seeds": r["reeval_count"], "diverged_seeds": r["reeval_diverged"],
                "reached_target": r["reeval_reached"], "trial": r["trial_objective"],
            },
            "ranking": {
                "rank": r["rank"], "runs": r["runs"],
                "mean": estimate(r["mean"], r["mean_low"], r["mean_high"]),
                "median": estimate(r["median"], r["median_low"], r["median_high"]),
                "beats_next": None if r["beats_next"] is None else estimate(
                    r["beats_next"].value, r["beats_next"].low, r["beats_next"].high),
            },
            "trial": {"repeat": r["repeat"], "number": r["trial_number"]},
            "config": r["params"],
        }
        for r in rows
    ], indent=2)


def _plain(value: float | None) -> float | None:
    """A number for JSON: None for no value or an infinite one (JSON has no infinity)."""
    return value if value is None or np.isfinite(value) else None


CSV_COLUMNS = ("experiment", "optimizer", "sampler", "repeat", "trial_number", "trial_objective", "reeval_mean",
               "reeval_std", "reeval_min", "reeval_max", "reeval_count", "reeval_diverged", "reeval_reached", "rank",
               "runs", "mean", "mean_low", "mean_high", "median", "median_low", "median_high", "beats_next",
               "beats_next_low", "beats_next_high")
"""The columns of ``tuner best --format csv`` (then ``config`` as JSON): reeval_* over this
configuration's re-evaluation runs; rank to beats_next_high, the ranking (``best_as_json``'s ``ranking``)."""


FORMULA_STARTS = ("=", "+", "-", "@")
"""A spreadsheet reads a cell that starts with one of these as a formula (OWASP, CSV injection;
its other two, tab and carriage return, cannot start a name: names hold no control character)."""


def best_as_csv(rows: list[dict[str, Any]]) -> str:
    """One line per optimizer and sampler (rows of ``rankings.best_ranked``): CSV_COLUMNS, then
    ``config`` as JSON. A text cell that starts with one of FORMULA_STARTS (an experiment named
    ``=HYPERLINK(...)``) is written with a single quote before it, as OWASP recommends, so that a
    spreadsheet shows it as text instead of running it; numbers are written as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "config"])
    for r in rows:
        beats = r["beats_next"]
        cells = {**r, "beats_next": beats and beats.value, "beats_next_low": beats and beats.low,
                 "beats_next_high": beats and beats.high}
        writer.writerow([_csv_cell(cells[c]) for c in CSV_COLUMNS] + [json.dumps(r["params"])])
    return out.getvalue()


def _csv_cell(cell: Any) -> Any:
    """A CSV cell: None as empty, a text that a spreadsheet would run as a formula quoted (best_as_csv)."""
    if cell is None:
        return ""
    return f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def number(value: float | None) -> str:
    """A number as tables show it: 4 significant digits, ``-`` for none."""
    return "-" if value is None else f"{value:.4g}"


def interval(value: float, low: float, high: float) -> str:
    """``0.0712 [0.0701, 0.0725]``; the value alone when there is no interval (low = high)."""
    return number(value) if low == high else f"{number(value)} [{number(low)}, {number(high)}]"


def not_reached(final_loss: float | None) -> str:
    """How a run that missed its steps_to_target target is shown (its score is no step count)."""
    return f"not reached (final loss {number(final_loss)})"


def _statistic(row: dict[str, Any], objective: str, which: str) -> str:
    """The mean or median cell: the value and its interval, or what a steps_to_target miss reached."""
    if not row["runs"] and row["reeval_diverged"]:
        return f"all {row['reeval_diverged']} runs diverged"
    if not row["runs"]:
        if objective == STEPS_OBJECTIVE and not reached_target(row["trial_objective"], row["trial_steps"]):
            return not_reached(row["trial_final_loss"])
        return f"{number(row[which])} (trial, not re-evaluated)"
    shown = interval(row[which], row[f"{which}_low"], row[f"{which}_high"])
    if objective == STEPS_OBJECTIVE and row["reeval_reached"] < row["runs"]:
        if not row["reeval_reached"]:
            return not_reached(row["reeval_final_loss"])
        return f"{row['reeval_reached']} of {row['runs']} reached; score {shown}"
    return shown


def _runs(row: dict[str, Any]) -> str:
    diverged = f" +{row['reeval_diverged']} diverged" if row["reeval_diverged"] else ""
    return f"{row['runs']}{diverged}"


def trial_objective(row: dict[str, Any], objective: str) -> str:
    """A best-configs row's trial objective as shown: a number, or a steps_to_target miss as such."""
    if objective == STEPS_OBJECTIVE and not reached_target(row["trial_objective"], row["trial_steps"]):
        return not_reached(row["trial_final_loss"])
    return number(row["trial_objective"])


def _compact(config: dict[str, Any]) -> str:
    """``lr=0.0324 betas=(0.609, 0.9998) batch_size=16 schedule=cosine(total_steps=135, lr_min=0.0283)``"""

    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list):
            return "(" + ", ".join(show(v) for v in value) + ")"
        return str(value)

    parts = [f"{k}={show(v)}" for k, v in config.items() if k not in ("optimizer", "schedule")]
    schedule = config.get("schedule")
    if schedule:
        inner = ", ".join(f"{k}={show(v)}" for k, v in schedule.items() if k != "kind")
        parts.append(f"schedule={schedule['kind']}" + (f"({inner})" if inner else ""))
    return " ".join(parts)


def best_table(rows: list[dict[str, Any]], objective: str, title: str) -> Table:
    """Rows of ``rankings.best_ranked``, in their order (best first): tied ranks, the mean and
    median of ``objective`` over the re-evaluation runs with 95% bootstrap intervals, the runs,
    P(a run beats one of the next row) and the tuning trial's objective. The configurations
    follow in ``best_configurations``."""
    table = Table(title=f"{title}: {objective}, 95% bootstrap intervals", title_justify="left")
    for column in ("rank", "optimizer", "sampler", "mean [95% CI]", "median [95% CI]", "runs", "P(beats next)",
                   "best trial"):
        table.add_column(column, overflow="fold")
    for r in rows:
        beats = r["beats_next"]
        table.add_row(r["rank"], r["optimizer"], r["sampler"], _statistic(r, objective, "mean"),
                      _statistic(r, objective, "median"), _runs(r),
                      "-" if beats is None else interval(beats.value, beats.low, beats.high),
                      trial_objective(r, objective))
    return table


def best_configurations(rows: list[dict[str, Any]]) -> Table:
    """The configuration of each row of ``best_table``, in its order, ready to paste."""
    table = Table(title="configurations", title_justify="left", show_header=False, box=None)
    table.add_column("who", no_wrap=True)
    table.add_column("configuration", overflow="fold")
    for r in rows:
        table.add_row(f"{r['rank']:>5} {r['optimizer']}/{r['sampler']}", _compact(r["params"]))
    return table


TUNABILITY_BUDGETS = (1, 2, 5, 10, 20, 50, 100)
"""The budgets k at which ``tuner tunability`` prints each curve (and the last, K)."""


def tunability_tables(result: "Tunability", objective: str) -> list[Table]:
    """The omega summaries of each expected curve, the winner at each budget, and every curve at
    TUNABILITY_BUDGETS; for steps_to_target, a caption: values above the budget rank misses."""
    omega = Table(title="expected best of k random-search trials (Dodge et al.): omega summaries "
                        "(Sivaprasad et al.)", title_justify="left")
    for column in ("optimizer", "sampler", "one-shot (k=1)", "P(k=1 fails)", "peak (k=K)", "CPE", "CPU", "CPL"):
        omega.add_column(column, overflow="fold")
    for c in result.curves:
        if c.kind == "expected":
            o = result.omega.get((c.optimizer, c.sampler))
            cells = [number(v) for v in (o.one_shot, o.peak, o.cpe, o.cpu, o.cpl)] if o else ["-"] * 5
            omega.add_row(c.optimizer, c.sampler, cells[0], f"{c.failed[0]:.0%}", *cells[1:])
    winners = Table(title="the winner at each budget k (a new row: a crossover)", title_justify="left")
    for column in ("sampler", "k", "optimizer"):
        winners.add_column(column)
    for w in result.winners:
        winners.add_row(w.sampler, str(w.first) if w.first == w.last else f"{w.first}-{w.last}", w.optimizer)
    curves = Table(title="best objective after k trials: expected (random search) or observed median of "
                         "repeats, [95% band]", title_justify="left")
    longest = max(len(c.value) for c in result.curves)
    budgets = sorted({k for k in TUNABILITY_BUDGETS if k < longest} | {longest})
    for column in ("optimizer", "sampler", "kind", *(f"k={k}" for k in budgets)):
        curves.add_column(column, overflow="fold")
    for c in result.curves:
        cells = [("every trial failed" if np.isnan(c.value[k - 1]) else
                  interval(c.value[k - 1], c.low[k - 1], c.high[k - 1])) if k <= len(c.value) else "-"
                 for k in budgets]
        curves.add_row(c.optimizer, c.sampler, c.kind, *cells)
    if objective == STEPS_OBJECTIVE:
        curves.caption = ("steps_to_target: a value above the step budget mixes misses' ranking scores "
                          "(steps * (1 + log10(final / target))), not a step count")
    return [omega, winners, curves] if result.omega else [curves]


def tunability_as_json(result: "Tunability") -> str:
    """Every curve (k, value, low, high, failed), the omega summaries and the winners."""
    def plain(values: Any) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in values]

    return json.dumps({
        "curves": [{"optimizer": c.optimizer, "sampler": c.sampler, "kind": c.kind, "k": c.k.tolist(),
                    "value": plain(c.value), "low": plain(c.low), "high": plain(c.high),
                    "failed": plain(c.failed)} for c in result.curves],
        "omega": [{"optimizer": optimizer, "sampler": sampler, **vars(o)}
                  for (optimizer, sampler), o in result.omega.items()],
        "winners": [vars(w) for w in result.winners],
    }, indent=2)


def status_table(rows: list[StudyRow], runs: dict[int, Counter], optuna: dict[str, Counter]) -> Table:
    table = Table(title="studies", title_justify="left")
    for column in ("optimizer", "sampler", "repeat", "finished", "complete", "pruned", "diverged", "failed",
                   "running", "waiting"):
        table.add_column(column, justify="left" if column in ("optimizer", "sampler") else "right")
    for row in rows:
        mine, theirs = runs.get(row.id, Counter()), optuna.get(row.study_name, Counter())
        finished = sum(mine[s] for s in DONE_STATES)
        table.add_row(row.optimizer, row.sampler, str(row.repeat), f"{finished}/{row.n_trials}", str(mine[COMPLETE]),
                      str(mine[PRUNED]), str(mine[DIVERGED]), str(theirs["FAIL"]), str(theirs["RUNNING"]),
                      str(theirs["WAITING"]))
    return table


def theory_gap_table(rows: list[dict[str, Any]]) -> Table:
    """Rows of ``tuner.theory.theory_gap``: each tuned learning rate and momentum against the
    quadratic's optimum (tuned / optimal = ratio), and the rates: measured (the ``rate`` objective),
    the tuned configuration's asymptotic rate, and the optimum's."""

    def versus(tuned: float | None, optimal: float | None, ratio: float | None) -> str:
        return "-" if ratio is None else f"{tuned:.4g} / {optimal:.4g} = {ratio:.3f}"

    table = Table(title="theory gap (the quadratic's optimum)", title_justify="left")
    for column in ("optimizer", "sampler", "lr tuned / optimal", "momentum tuned / optimal", "measured rate",
                   "asymptotic rate", "optimal rate"):
        table.add_column(column, overflow="fold")
    for r in rows:
        rates = (f"{value:.4f}" if value is not None else "-"
                 for value in (r["measured_rate"], r["asymptotic_rate"], r["optimal_rate"]))
        table.add_row(r["optimizer"], r["sampler"] or "-", versus(r["lr"], r["optimal_lr"], r["lr_ratio"]),
                      versus(r["momentum"], r["optimal_momentum"], r["momentum_ratio"]), *rates)
    return table
