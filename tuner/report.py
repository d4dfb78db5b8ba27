"""Rendering query results for the terminal, JSON and CSV."""

import csv
import io
import json
from collections import Counter
from typing import Any

from rich.table import Table

from tuner.storage.records import COMPLETE, DIVERGED, DONE_STATES, PRUNED, StudyRow


def best_as_json(rows: list[dict[str, Any]]) -> str:
    """One object per optimizer and sampler; ``config`` holds constructor arguments and the schedule."""
    return json.dumps([
        {
            "experiment": r["experiment"],
            "optimizer": r["optimizer"],
            "sampler": r["sampler"],
            "objective": {
                "mean": r["reeval_mean"], "std": r["reeval_std"], "min": r["reeval_min"], "max": r["reeval_max"],
                "seeds": r["reeval_count"], "diverged_seeds": r["reeval_diverged"], "trial": r["trial_objective"],
            },
            "trial": {"repeat": r["repeat"], "number": r["trial_number"]},
            "config": r["params"],
        }
        for r in rows
    ], indent=2)


CSV_COLUMNS = ("experiment", "optimizer", "sampler", "repeat", "trial_number", "trial_objective", "reeval_mean",
               "reeval_std", "reeval_min", "reeval_max", "reeval_count", "reeval_diverged")


FORMULA_STARTS = ("=", "+", "-", "@")
"""A spreadsheet reads a cell that starts with one of these as a formula (OWASP, CSV injection;
its other two, tab and carriage return, cannot start a name: names hold no control character)."""


def best_as_csv(rows: list[dict[str, Any]]) -> str:
    """One line per optimizer and sampler: CSV_COLUMNS, then ``config`` as JSON. A text cell that
    starts with one of FORMULA_STARTS (an experiment named ``=HYPERLINK(...)``) is written with a
    single quote before it, as OWASP recommends, so that a spreadsheet shows it as text instead of
    running it; numbers are written as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "config"])
    for r in rows:
        writer.writerow([_csv_cell(cell) for cell in (*(r[c] for c in CSV_COLUMNS), json.dumps(r["params"]))])
    return out.getvalue()


def _csv_cell(cell: Any) -> Any:
    """A CSV cell: None as empty, a text that a spreadsheet would run as a formula quoted (best_as_csv)."""
    if cell is None:
        return ""
    return f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _spread(row: dict[str, Any]) -> str:
    if not row["reeval_count"]:
        return f"{_number(row['trial_objective'])} (trial, not re-evaluated)"
    std = "" if row["reeval_std"] is None else f" ± {row['reeval_std']:.2g}"
    return f"{row['reeval_mean']:.4g}{std} (n={row['reeval_count']})"


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
    """Rows of ``queries.best_configs``, in their order (best first)."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("optimizer", "sampler", f"{objective} mean ± std", "best trial", "configuration"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["optimizer"], r["sampler"], _spread(r), _number(r["trial_objective"]), _compact(r["params"]))
    return table


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
