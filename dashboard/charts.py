"""Pure functions: DataFrames in, summary DataFrames or plotly figures out. No queries, no Streamlit."""

import datetime as dt
import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from tuner.optim import OPTIMIZERS
from tuner.samplers import BASELINE, SAMPLERS
from tuner.storage.records import COMPLETE, DIVERGED

PALETTE = dict(zip(OPTIMIZERS, qualitative.Plotly, strict=False))
SAMPLER_PALETTE = dict(zip(SAMPLERS, qualitative.D3, strict=False))
BANDS = {"inter-quartile": (0.25, 0.75), "min-max": (0.0, 1.0)}
THROUGHPUT_WINDOW = dt.timedelta(minutes=10)


def _label(value: object) -> str:
    """A parameter's value as plotly shows it as typed: plotly reads ``<b>``, ``<br>``, ``<a href>``
    in tick labels and hover text as HTML, and its entities (``&lt;``) as the characters."""
    return html.escape(str(value), quote=False)


def _rgba(colour: str, alpha: float) -> str:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def spread(runs: pd.DataFrame, group: list[str], at: str, x: str, band: str) -> pd.DataFrame:
    """Median and band of ``value`` over the runs of each ``group``, at each ``at`` (a step or
    trial index); ``x`` is the median of that column there. Columns: *group, x, median, lo, hi, n."""
    low, high = BANDS[band]
    grouped = runs.groupby([*group, at], sort=True)
    stats = grouped["value"].agg(["median", "count"]).rename(columns={"count": "n"})
    bounds = grouped["value"].quantile([low, high]).unstack()
    stats["lo"], stats["hi"] = bounds[low], bounds[high]
    stats["x"] = grouped[x].median()
    stats[["median", "lo", "hi"]] = stats[["median", "lo", "hi"]].replace([np.inf, -np.inf], np.nan)  # not drawable
    return stats.reset_index()


def _band_traces(figure: go.Figure, frame: pd.DataFrame, name: str, colour: str, *, row: int | None = None,
                 col: int | None = None, legend: bool = True, hover: str = "") -> None:
    where = {"row": row, "col": col} if row else {}
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["hi"], mode="lines", line={"width": 0}, hoverinfo="skip",
                                showlegend=False, legendgroup=name, name=name), **where)
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["lo"], mode="lines", line={"width": 0}, fill="tonexty",
                                fillcolor=_rgba(colour, 0.18), hoverinfo="skip", showlegend=False, legendgroup=name,
                                name=name), **where)
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["median"], mode="lines", line={"color": colour, "width": 2},
                                name=name, legendgroup=name, showlegend=legend,
                                hovertemplate=f"{hover}{name}<br>%{{x:.4g}}: %{{y:.4g}}<extra></extra>"), **where)


def convergence_figure(stats: pd.DataFrame, *, x_title: str, y_title: str, log_y: bool,
                       faint: pd.DataFrame | None = None,
                       references: list[tuple[str, np.ndarray, np.ndarray]] = ()) -> go.Figure:
    """Median line and band per optimizer (``stats`` from ``spread``); optionally every trial of
    one optimizer as faint lines (columns run_id, x, value) and dashed reference lines."""
    figure = go.Figure()
    if faint is not None and not faint.empty:
        xs, ys = [], []
        for _, run in faint.groupby("run_id", sort=False):
            xs += [*run["x"], None]
            ys += [*run["value"], None]
        figure.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": "rgba(120,120,120,0.25)", "width": 1},
                                      name="every trial", hoverinfo="skip"))
    for optimizer, frame in stats.groupby("optimizer", sort=False):
        _band_traces(figure, frame, str(optimizer), PALETTE.get(optimizer, "#444444"))
    for label, x, y in references:
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label, line={"dash": "dash", "color": "black",
                                                                             "width": 1}))
    figure.update_layout(xaxis_title=x_title, yaxis_title=y_title, yaxis_type="log" if log_y else "linear",
                         legend_title_text="optimizer", margin={"t": 30}, hovermode="closest")
    return figure


def progress(experiments: pd.DataFrame, finish_times: pd.DataFrame) -> pd.DataFrame:
    """``experiments`` (queries.experiments) with progress (done / total, at most 1), trials_per_min
    over the last THROUGHPUT_WINDOW of each experiment's activity (``finish_times``: name,
    finished_at) and minutes_left at that rate (NaN at none; 0 once done)."""
    out = experiments.set_index("name")
    out["progress"] = (out["done"] / out["total"].where(out["total"] > 0)).clip(upper=1.0).fillna(0.0)
    out["trials_per_min"] = _throughput(finish_times).reindex(out.index).fillna(0.0)
    remaining = (out["total"] - out["done"]).clip(lower=0)
    out["minutes_left"] = (remaining / out["trials_per_min"].where(out["trials_per_min"] > 0)).where(remaining > 0, 0.0)
    return out.reset_index()


def _throughput(finished: pd.DataFrame) -> pd.Series:
    """Trials finished per minute over the last THROUGHPUT_WINDOW of each experiment's activity."""
    if finished.empty:
        return pd.Series(dtype=float)
    times = pd.to_datetime(finished["finished_at"], utc=True)
    rates = {}
    for name, group in times.groupby(finished["name"]):
        last = group.max()
        recent = group[group > last - THROUGHPUT_WINDOW]
        span = (last - recent.min()).total_seconds() / 60.0
        rates[name] = (len(recent) - 1) / span if span > 0 else 0.0
    return pd.Series(rates, dtype=float)


def best_so_far(trials: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
    """Per study (optimizer, sampler, repeat): the lowest objective among its first k finished
    trials, for k = 1..min(n, budget); +inf until the first completed one, so that a repeat without
    a result counts as the worst in a median over repeats (left out, it would let the median rise
    once it gets one). Trials past the budget, which concurrent workers may add, are left out so
    that every repeat is compared at the same count. Columns: optimizer, sampler, repeat, trial, value.
    (A curve of the search's progress; the best configuration itself is the tuner_best_configs view's.)"""
    ordered = trials.sort_values(["optimizer", "sampler", "repeat", "trial_number"])
    value = ordered["objective"].where(ordered["state"] == COMPLETE)
    keys = [ordered["optimizer"], ordered["sampler"], ordered["repeat"]]
    progress = pd.DataFrame({
        "optimizer": ordered["optimizer"], "sampler": ordered["sampler"], "repeat": ordered["repeat"],
        "trial": ordered.groupby(keys).cumcount() + 1,
        "value": value.groupby(keys).cummin().groupby(keys).ffill().fillna(np.inf),  # cummin leaves NaN at a failure
    })
    return progress if budget is None else progress[progress["trial"] <= budget]


def sampler_figure(stats: pd.DataFrame, *, log_y: bool) -> go.Figure:
    """Best-so-far against trial number: one panel per optimizer, a median line and band per sampler."""
    optimizers = list(dict.fromkeys(stats["optimizer"]))
    cols = 2 if len(optimizers) > 1 else 1
    rows = math.ceil(len(optimizers) / cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=optimizers, shared_xaxes=True,
                           vertical_spacing=0.12 / max(rows - 1, 1) if rows > 1 else 0.1)
    shown: set[str] = set()
    for index, optimizer in enumerate(optimizers):
        row, col = index // cols + 1, index % cols + 1
        for sampler, frame in stats[stats["optimizer"] == optimizer].groupby("sampler", sort=True):
            _band_traces(figure, frame, str(sampler), SAMPLER_PALETTE.get(sampler, "#444444"), row=row, col=col,
                         legend=sampler not in shown, hover=f"{optimizer} · ")
            shown.add(str(sampler))
        if log_y:
            figure.update_yaxes(type="log", row=row, col=col)
    figure.update_layout(height=260 * rows + 60, legend_title_text="sampler", margin={"t": 40})
    figure.update_xaxes(title_text="trial", row=rows)
    return figure


def trials_to_match(stats: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per optimizer and sampler: the baseline's final median best, and the first trial at which the
    sampler's median best-so-far is at least as good (None: not within its trials)."""
    rows = []
    for optimizer, frame in stats.groupby("optimizer", sort=True):
        base = frame[frame["sampler"] == baseline].sort_values("trial")
        if base.empty or base["median"].isna().all():
            continue
        target = base["median"].dropna().iloc[-1]
        for sampler, own in frame[frame["sampler"] != baseline].groupby("sampler", sort=True):
            own = own.sort_values("trial")
            hits = own.loc[own["median"] <= target, "trial"]
            rows.append({"optimizer": optimizer, "sampler": sampler, f"{baseline} final best": target,
                         "trials to match": int(hits.iloc[0]) if len(hits) else None,
                         f"{baseline} trials": int(base["trial"].max())})
    return pd.DataFrame(rows)


def lr_figure(trials: pd.DataFrame, *, colour: str | None = None, log_y: bool) -> go.Figure:
    """Objective against learning rate (log axis). Coloured by optimizer, or, with ``colour``, by
    that parameter (log scale for positive values spanning a decade). Diverged trials are marked
    with an x along the top edge, at their learning rate."""
    figure = go.Figure()
    done = trials[trials["state"] == COMPLETE]
    finite = done["objective"].dropna()
    top = float(finite.max()) if len(finite) else 1.0
    if colour is None:
        for optimizer, frame in done.groupby("optimizer", sort=False):
            figure.add_trace(go.Scattergl(x=frame["lr"], y=frame["objective"], mode="markers", name=str(optimizer),
                                          marker={"color": PALETTE.get(optimizer), "size": 6, "opacity": 0.75}))
    else:
        shade, label = _scaled(done[colour], colour)
        figure.add_trace(go.Scattergl(
            x=done["lr"], y=done["objective"], mode="markers", name=" ".join(done["optimizer"].unique()),
            text=done[colour].map(_label),
            hovertemplate=f"lr %{{x:.3g}}<br>objective %{{y:.4g}}<br>{colour} %{{text}}<extra></extra>",
            marker={"color": shade, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": label},
                    "size": 7},
        ))
    diverged = trials[trials["state"] == DIVERGED]
    for optimizer, frame in diverged.groupby("optimizer", sort=False):
        figure.add_trace(go.Scattergl(
            x=frame["lr"], y=[top] * len(frame), mode="markers", name=f"{optimizer} diverged",
            text=frame["diverged_at"].astype(str), hovertemplate="lr %{x:.3g}: diverged at step %{text}",
            marker={"symbol": "x", "size": 9, "color": PALETTE.get(optimizer, "#d62728") if colour is None
                    else "#d62728"}))
    figure.update_layout(xaxis_title="learning rate", xaxis_type="log", yaxis_title="objective",
                         yaxis_type="log" if log_y else "linear", margin={"t": 30})
    if colour is not None:  # the colour bar takes the right edge
        figure.update_layout(legend={"orientation": "h", "y": -0.25})
    return figure


def _scaled(values: pd.Series, name: str) -> tuple[pd.Series, str]:
    """Numbers for a colour scale: log10 for positive values spanning more than a decade, codes for categories."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype("category").cat.codes, name
    positive = values.dropna()
    if len(positive) and (positive > 0).all() and positive.max() / positive.min() > 10:
        return np.log10(values), f"log10 {name}"
    return values, name


def importance_figure(importances: dict[str, float]) -> go.Figure:
    names = list(importances)[::-1]
    figure = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", name="importance"))
    figure.update_layout(xaxis_title="importance (fANOVA)", margin={"t": 30}, height=120 + 30 * len(names))
    return figure


def parallel_figure(trials: pd.DataFrame, params: list[str]) -> go.Figure:
    """Parallel coordinates of ``params`` and the objective over completed trials, coloured by objective."""
    done = trials[trials["state"] == COMPLETE].dropna(subset=["objective"])
    dimensions = []
    for name in params:
        column = done[name]
        if column.isna().any():
            continue
        values, label = _scaled(column, name)
        dimension = {"label": label, "values": values}
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            categories = column.astype("category").cat.categories
            dimension.update(tickvals=list(range(len(categories))), ticktext=[_label(c) for c in categories])
        dimensions.append(dimension)
    dimensions.append({"label": "objective", "values": done["objective"]})
    figure = go.Figure(go.Parcoords(line={"color": done["objective"], "colorscale": "Viridis_r", "showscale": True},
                                    dimensions=dimensions))
    figure.update_layout(margin={"t": 40, "l": 60, "r": 60})
    return figure
