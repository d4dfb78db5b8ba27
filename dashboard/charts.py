"""Pure functions: DataFrames in, summary DataFrames or plotly figures out. No queries, no Streamlit."""

import datetime as dt
import html
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots
from scipy.signal import lfilter

from tuner.optim import OPTIMIZERS
from tuner.samplers import BASELINE, SAMPLERS
from tuner.storage.records import COMPLETE, DIVERGED, missed_final_loss, reached_target

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
"""Eight colours told apart on white: Tableau's ten without grey (the faint trial lines' colour) and olive."""
DASHES = ("solid", "dash", "dot", "dashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")
REFERENCE_DASHES = ("longdash", "longdashdot")
"""The line styles of the quadratic's theory references: no optimizer's."""


@dataclass(frozen=True)
class Style:
    """How one optimizer is drawn: line colour, line style, marker."""

    colour: str
    dash: str
    symbol: str


def styles(names: Iterable[str]) -> dict[str, Style]:
    """The i-th name's style: COLOURS[i mod 8], and the line style and marker (i + i // 8) mod 4.
    Neighbours in the list differ in both, and each of the first 32 names has a pair of its own."""
    return {name: Style(COLOURS[i % len(COLOURS)], DASHES[(i + i // len(COLOURS)) % len(DASHES)],
                        SYMBOLS[(i + i // len(COLOURS)) % len(SYMBOLS)]) for i, name in enumerate(names)}


STYLES = styles(OPTIMIZERS)
"""Every optimizer's style by its place in OPTIMIZERS: the same on every page and in every experiment."""
PALETTE = {name: look.colour for name, look in STYLES.items()}
"""Every optimizer's colour (STYLES'), for figures whose line styles say something else."""
UNKNOWN = Style("#444444", "solid", "circle")
"""The style of an optimizer this tuner no longer registers (an older experiment's)."""
SAMPLER_PALETTE = dict(zip(SAMPLERS, qualitative.D3, strict=False))
BANDS = {"inter-quartile": (0.25, 0.75), "min-max": (0.0, 1.0)}
THROUGHPUT_WINDOW = dt.timedelta(minutes=10)
MAX_CATEGORIES = 12
"""An integer parameter with at most this many distinct values (a batch size) is coloured by category."""
WEBGL_POINTS = 2_000
"""A scatter figure of more points than this draws one per trace and cell (``first_per_cell``),
and if still more, by WebGL (``go.Scattergl``); SVG draws fewer sooner and without taking one
of the browser's few WebGL contexts. Measured in the dashboard in headless Chromium (software
WebGL): 100 markers by SVG in 0.2 s, 5,000 in 0.9 s; 5,000 and 15,000 by WebGL in 0.5-0.8 s."""
CELLS = (150, 65)
"""The grid (columns, rows) over a crowded scatter's axes in which it draws one point per trace
and cell: a cell is about a marker (7 px) on a wide page, so the picture is the same. A finer
grid draws more points for nothing seen: without a GPU, WebGL draws on the CPU the dashboard's
queries need too (100,000 trials, Sensitivity in-app: 2.13 s at 300 x 130, 1.87 s at this grid)."""
PARALLEL_LINES = 1_000
"""Parallel coordinates draw at most this many trials, evenly spread over them in trial order:
plotly's WebGL lines take seconds beyond (headless Chromium, software WebGL: 1.3 s for 100 lines,
1.4 s for 1,000, 4.7 s for 20,000)."""
PARALLEL_AT_ONCE = 300
"""Up to this many completed trials the Sensitivity page draws parallel coordinates at once; beyond,
when asked (their WebGL drawing alone costs over a second in a browser without a GPU)."""


def style(optimizer: str) -> Style:
    """``optimizer``'s style (STYLES), UNKNOWN for a name this tuner no longer registers."""
    return STYLES.get(optimizer, UNKNOWN)


def sci(value: float | None) -> str:
    """A number in scientific notation with 3 significant digits (``8.56e-10``); ``-`` for none."""
    return "-" if value is None or pd.isna(value) else f"{value:.2e}"


def log_axis(values: Iterable[float], *, ticks: int = 8) -> dict[str, Any]:
    """The layout of a log axis showing ``values`` (its data) that labels plain numbers or powers of
    ten, never plotly's digit-only minor labels ("0.1 9 8 7") or SI prefixes ("100µ"). Over the
    finite positive values: when they include two powers of ten or more, a tick every k decades
    labelled 10^n (k: at most ``ticks`` ticks); else the 1, 2, 5 times powers of ten among them
    when there are three, as plain numbers; else plain numbers at a linear 1-2-5 step (about
    ``ticks`` / 2 of them or more). No minor ticks."""
    axis: dict[str, Any] = {"type": "log", "exponentformat": "power", "minor": {"ticks": "", "showgrid": False}}
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return axis
    low, high = math.log10(v.min()), math.log10(v.max())
    if math.floor(high) - math.ceil(low) >= 1:
        return {**axis, "dtick": max(1, math.ceil((high - low) / ticks))}
    steps = [m * 10.0 ** k for k in range(math.floor(low), math.ceil(high) + 1) for m in (1, 2, 5)]
    inside = [float(f"{t:.1g}") for t in steps if v.min() <= t <= v.max()]
    if len(inside) >= 3:
        return {**axis, "tickmode": "array", "tickvals": inside, "ticktext": [f"{t:g}" for t in inside]}
    parts = max(ticks // 2, 2)
    return {**axis, "dtick": f"L{_nice_step((v.max() - v.min()) / parts or v.max() / parts):g}"}


def _nice_step(raw: float) -> float:
    """The largest 1, 2 or 5 times a power of ten at or under ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (5, 2, 1) if m * power <= raw * (1 + 1e-9))


def _label(value: object) -> str:
    """A parameter's value as plotly shows it as typed: plotly reads ``<b>``, ``<br>``, ``<a href>``
    in tick labels and hover text as HTML, and its entities (``&lt;``) as the characters."""
    return html.escape(str(value), quote=False)


def rgba(colour: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS ``rgba(...)`` with opacity ``alpha`` (bands under lines)."""
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def grouped_quantiles(group: np.ndarray, values: np.ndarray, qs: Iterable[float],
                      groups: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per group (``group``: each value's group, 0 .. groups - 1), the ``qs`` quantiles of its
    values that are not NaN, by linear interpolation between the two nearest ranks as pandas'
    ``quantile`` (``v[i] + (v[i+1] - v[i]) * frac``); infinite where it falls at or between
    infinite values (a missing result counted as the worst), NaN for a group without a value.
    And the number of values each group has. One sort over every group: no loop over them."""
    values = np.asarray(values, dtype=float)
    present = np.bincount(group, weights=~np.isnan(values), minlength=groups).astype(np.int64)
    if not len(values):
        return [np.full(groups, np.nan) for _ in qs], present
    ordered = values[np.lexsort((values, group))]  # by group, then value, NaN last
    start = np.r_[0, np.cumsum(np.bincount(group, minlength=groups))[:-1]]
    top = np.maximum(present - 1, 0)
    out = []
    for q in qs:
        rank = q * top
        below = np.floor(rank).astype(np.int64)
        frac = rank - below
        a = ordered[np.minimum(start + below, len(ordered) - 1)]
        b = ordered[np.minimum(start + np.minimum(below + 1, top), len(ordered) - 1)]
        with np.errstate(invalid="ignore"):
            value = np.where((frac == 0) | (a == b), a, a + (b - a) * frac)
        out.append(np.where(present > 0, value, np.nan))
    return out, present


def spread(runs: pd.DataFrame, group: list[str], at: str, x: str, band: str) -> pd.DataFrame:
    """Median and band of ``value`` over the runs of each ``group``, at each ``at`` (a step or
    trial index); ``x`` is the median of that column there. Columns: *group, at, x, median, lo,
    hi, n (the values that are not NaN), sorted by group and ``at``. Quantiles as
    ``grouped_quantiles``; an infinite one is not drawable: NaN."""
    low, high = BANDS[band]
    keys = runs[[*group, at]]
    codes = keys.groupby([*group, at], sort=True).ngroup().to_numpy()
    first = np.unique(codes, return_index=True)[1]  # each group's first row, in the groups' order
    (median, lo, hi), n = grouped_quantiles(codes, runs["value"].to_numpy(dtype=float), (0.5, low, high), len(first))
    (middle,), _ = grouped_quantiles(codes, runs[x].to_numpy(dtype=float), (0.5,), len(first))
    stats = keys.iloc[first].reset_index(drop=True)
    stats["median"], stats["n"], stats["lo"], stats["hi"], stats["x"] = median, n, lo, hi, middle
    drawable = ["median", "lo", "hi"]
    stats[drawable] = stats[drawable].replace([np.inf, -np.inf], np.nan)
    return stats


def thinned(stats: pd.DataFrame, group: list[str], at: str, columns: Iterable[str] = ("median", "lo", "hi"),
            limit: int = 2000) -> pd.DataFrame:
    """The rows of ``stats`` (sorted by ``group`` and ``at``) that a line through each group's
    ``columns`` needs: its first and last, and each one where a column changes from the row
    before or to the row after. A line drawn through them is the line through all (NaN as NaN,
    a gap); a best-so-far line of 10,000 trials changes a few dozen times. A group still over
    ``limit`` rows keeps ``limit`` evenly spaced ones among them, first and last included."""
    if stats.empty:
        return stats
    line = stats.groupby(group, sort=False).ngroup().to_numpy()
    values = stats[list(columns)].to_numpy(dtype=float)
    same = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
    flat = same.all(axis=1) & (line[1:] == line[:-1])  # row i+1 repeats row i within its line
    keep = np.ones(len(stats), dtype=bool)
    keep[1:-1] = ~(flat[:-1] & flat[1:])
    kept = stats[keep]
    lines = [frame if len(frame) <= limit else frame.iloc[np.unique(np.linspace(0, len(frame) - 1, limit).round()
                                                                    .astype(int))]
             for _, frame in kept.groupby(group, sort=False)]
    return pd.concat(lines) if lines else kept


def _band_traces(figure: go.Figure, frame: pd.DataFrame, name: str, colour: str, *, dash: str = "solid",
                 row: int | None = None, col: int | None = None, legend: bool = True, hover: str = "") -> None:
    where = {"row": row, "col": col} if row else {}
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["hi"], mode="lines", line={"width": 0}, hoverinfo="skip",
                                showlegend=False, legendgroup=name, name=name), **where)
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["lo"], mode="lines", line={"width": 0}, fill="tonexty",
                                fillcolor=rgba(colour, 0.18), hoverinfo="skip", showlegend=False, legendgroup=name,
                                name=name), **where)
    figure.add_trace(go.Scatter(x=frame["x"], y=frame["median"], mode="lines",
                                line={"color": colour, "width": 2, "dash": dash}, name=name, legendgroup=name,
                                showlegend=legend,
                                hovertemplate=f"{hover}{name}<br>%{{x:.4g}}: %{{y:.4g}}<extra></extra>"), **where)


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average: ``s[0] = x[0]``, ``s[i] = weight * s[i-1] + (1 - weight) * x[i]``
    (weight 0: the values themselves; a NaN carries to the end, where a diverged run has it)."""
    values = np.asarray(values, dtype=float)
    if weight == 0 or not len(values):
        return values.copy()
    smoothed, _ = lfilter([1.0 - weight], [1.0, -weight], values, zi=[weight * values[0]])
    return smoothed


def smooth(curves: pd.DataFrame, weight: float) -> pd.DataFrame:
    """``curves`` (long form: run_id, step, value, ...) with each run's values replaced by their
    ``ema`` over its recorded points in step order."""
    out = curves.sort_values(["run_id", "step"], kind="stable")
    return out.assign(value=out.groupby("run_id")["value"].transform(lambda v: ema(v.to_numpy(), weight)))


def objective_series(objective: str, synthetic: bool) -> str:
    """The curve series ``objective`` is computed from (tuner.objective.objective_value): the
    validation loss for final_val_loss and best_val_loss; the evaluated full-batch loss for a
    synthetic task's final_train_loss; the per-step training loss otherwise (steps_to_target, rate,
    train_auc, and a data task's final_train_loss, its last epoch's mean)."""
    if objective in ("final_val_loss", "best_val_loss"):
        return "val_loss"
    if objective == "final_train_loss" and synthetic:
        return "loss"
    return "train_loss"


def registry_order(optimizers: Iterable[str]) -> list[str]:
    """The distinct names of ``optimizers`` in OPTIMIZERS' order (unknown ones last, by name): the
    order of every legend."""
    place = {name: index for index, name in enumerate(OPTIMIZERS)}
    distinct = optimizers.unique() if isinstance(optimizers, pd.Series) else optimizers  # 100,000 trials' names
    return sorted({str(name) for name in distinct}, key=lambda name: (place.get(name, len(place)), name))


def _level(figure: go.Figure, y: float, label: str, x: list[float], *, legend: bool = True,
           row: int | None = None, col: int | None = None) -> None:
    """A horizontal line at ``y`` across ``x`` (its ends), named ``label`` in the legend (a trace:
    plotly places an ``add_hline`` label on a log axis at 10^y)."""
    where = {"row": row, "col": col} if row else {}
    figure.add_trace(go.Scatter(x=x, y=[y, y], mode="lines", name=label, legendgroup=label, showlegend=legend,
                                line={"color": "#b00020", "width": 1.5, "dash": "dot"},
                                hovertemplate=f"{label}<extra></extra>"), **where)


def _finite(values: Iterable[float], *, positive: bool) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v) & (v > 0)] if positive else v[np.isfinite(v)]


FAINT_LINES = 300
"""Up to this many trials, "every trial of" draws each one's curve; beyond, where their curves run."""
DENSITY_BINS = (100, 60)
"""Columns (x) and rows (y) of the density of many trials' curves."""
DENSITY_SCALE = [[0.0, "rgba(150,150,150,0.15)"], [0.02, "rgba(120,120,120,0.35)"], [0.1, "rgba(90,90,90,0.55)"],
                 [0.4, "rgba(60,60,60,0.75)"], [1.0, "rgba(30,30,30,0.9)"]]
"""Grey, darker for a larger share of a column's points; a share of a few percent is still seen."""


def density(curves: pd.DataFrame, *, log_y: bool,
            bins: tuple[int, int] = DENSITY_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where many curves run (``curves``: columns x, value; NaN values, and values <= 0 on a log
    axis, left out): a histogram of their points, columns at the distinct x values when there are
    at most ``bins[0]`` of them (runs of one budget share their steps), else ``bins[0]`` equal
    ones over the x range, and ``bins[1]`` equal rows over the values' range (of their log10 on a
    log axis). Returns the columns' x, the rows' y (as values) and each cell's share of its
    column's points, NaN where it has none (a heatmap leaves it blank), shape (rows, columns)."""
    x = curves["x"].to_numpy(dtype=float)
    v = curves["value"].to_numpy(dtype=float)
    keep = np.isfinite(x) & np.isfinite(v) & ((v > 0) if log_y else True)
    x, v = x[keep], np.log10(v[keep]) if log_y else v[keep]
    if not len(x):
        return np.array([]), np.array([]), np.empty((0, 0))
    distinct = np.unique(x)
    if len(distinct) <= bins[0]:
        columns, column = distinct, np.searchsorted(distinct, x)
    else:
        edges = np.linspace(distinct[0], distinct[-1], bins[0] + 1)
        columns, column = (edges[:-1] + edges[1:]) / 2, np.clip(np.searchsorted(edges, x, side="right") - 1, 0,
                                                                 bins[0] - 1)
    low, high = v.min(), v.max()
    width = (high - low) / bins[1] or 1.0
    row = np.clip(((v - low) / width).astype(np.int64), 0, bins[1] - 1)
    counts = np.bincount(row * len(columns) + column, minlength=bins[1] * len(columns)).reshape(bins[1], -1)
    with np.errstate(invalid="ignore"):
        share = counts / counts.sum(axis=0, keepdims=True)
    rows = low + width * (np.arange(bins[1]) + 0.5)
    return columns, 10.0 ** rows if log_y else rows, np.where(counts > 0, share, np.nan)


def convergence_figure(stats: pd.DataFrame, *, x_title: str, y_title: str, log_y: bool,
                       faint: pd.DataFrame | None = None,
                       references: Iterable[tuple[str, np.ndarray, np.ndarray]] = (),
                       target: float | None = None) -> go.Figure:
    """Median line and band per optimizer (``stats`` from ``spread``) in its STYLES; optionally
    every trial of one optimizer (columns run_id, x, value) as faint lines, or over FAINT_LINES
    trials as the density of their points (``density``, shades of grey), reference lines
    (label, x, y) clipped to the y-range of the real curves, so that they never squash them, each
    in a REFERENCE_DASHES style and the legend, and the ``target`` loss as a horizontal line. Tall
    enough for its legend."""
    figure = go.Figure()
    real = [stats["lo"], stats["median"], stats["hi"]]
    if faint is not None and not faint.empty and faint["run_id"].nunique() > FAINT_LINES:
        x, y, share = density(faint, log_y=log_y)
        figure.add_trace(go.Heatmap(x=x, y=y, z=share, zmin=0.0, colorscale=DENSITY_SCALE, showscale=False,
                                    name="every trial", showlegend=True, hoverongaps=False,
                                    hovertemplate="%{z:.1%} of the trials' points here<extra>every trial</extra>"))
        real.append(faint["value"])
    elif faint is not None and not faint.empty:
        xs, ys = [], []
        for _, run in faint.groupby("run_id", sort=False):
            xs += [*run["x"], None]
            ys += [*run["value"], None]
        figure.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": "rgba(120,120,120,0.25)", "width": 1},
                                      name="every trial", hoverinfo="skip"))
        real.append(faint["value"])
    for optimizer in registry_order(stats["optimizer"]):
        look = style(optimizer)
        _band_traces(figure, stats[stats["optimizer"] == optimizer], optimizer, look.colour, dash=look.dash)
    shown = _finite(np.concatenate([np.asarray(r, dtype=float) for r in real]), positive=log_y)
    for index, (label, x, y) in enumerate(references):
        y = np.asarray(y, dtype=float)
        if len(shown):
            y = np.where((y >= shown.min()) & (y <= shown.max()), y, np.nan)
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label, legendgroup="theory",
                                    legendgrouptitle_text="theory" if index == 0 else None,
                                    line={"dash": REFERENCE_DASHES[index % len(REFERENCE_DASHES)], "color": "#222222",
                                          "width": 1.5}))
    if target is not None:
        _level(figure, target, f"target {target:.3g}", [stats["x"].min(), stats["x"].max()])
    y_axis = log_axis([*shown, *([target] if target else [])]) if log_y else {"type": "linear"}
    entries = sum(trace.showlegend is not False for trace in figure.data)
    figure.update_layout(xaxis_title=x_title, yaxis={**y_axis, "title": y_title}, legend_title_text="optimizer",
                         margin={"t": 30}, hovermode="closest", height=max(450, 200 + 30 * entries))
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


def sampler_figure(stats: pd.DataFrame, *, log_y: bool, y_title: str, budget: int | None = None) -> go.Figure:
    """Best-so-far against trial number: one panel per optimizer, a median line and band per
    sampler, ``y_title`` on each row's first panel. ``budget``: a steps_to_target experiment's
    step budget, the same for every run, drawn as the line above which a score is a miss."""
    optimizers = registry_order(stats["optimizer"])
    cols = 2 if len(optimizers) > 1 else 1
    rows = math.ceil(len(optimizers) / cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=optimizers, shared_xaxes=True,
                           vertical_spacing=0.12 / max(rows - 1, 1) if rows > 1 else 0.1)
    shown: set[str] = set()
    for index, optimizer in enumerate(optimizers):
        row, col = index // cols + 1, index % cols + 1
        mine = stats[stats["optimizer"] == optimizer]
        for sampler, frame in mine.groupby("sampler", sort=True):
            _band_traces(figure, frame, str(sampler), SAMPLER_PALETTE.get(sampler, "#444444"), row=row, col=col,
                         legend=sampler not in shown, hover=f"{optimizer} · ")
            shown.add(str(sampler))
        if log_y:
            values = [*mine["lo"], *mine["median"], *mine["hi"], *([budget] if budget else [])]
            figure.update_yaxes(**log_axis(values, ticks=4), row=row, col=col)
        if budget:
            _level(figure, budget, "step budget (above it: target not reached)",
                   [mine["trial"].min(), mine["trial"].max()], legend=index == 0, row=row, col=col)
    figure.update_layout(height=260 * rows + 60, legend_title_text="sampler", margin={"t": 40})
    figure.update_xaxes(title_text="trial", row=rows)
    figure.update_yaxes(title_text=y_title, col=1)
    return figure


def trials_to_match(stats: pd.DataFrame, baseline: str = BASELINE, show: Callable[[float], str] = sci) -> pd.DataFrame:
    """Per optimizer and sampler: the baseline's final median best (as ``show`` writes it), and
    the first trial at which the sampler's median best-so-far is at least as good ("-": not within
    its trials)."""
    rows = []
    for optimizer in registry_order(stats["optimizer"]):
        frame = stats[stats["optimizer"] == optimizer]
        base = frame[frame["sampler"] == baseline].sort_values("trial")
        if base.empty or base["median"].isna().all():
            continue
        target = base["median"].dropna().iloc[-1]
        for sampler, own in frame[frame["sampler"] != baseline].groupby("sampler", sort=True):
            own = own.sort_values("trial")
            hits = own.loc[own["median"] <= target, "trial"]
            rows.append({"optimizer": optimizer, "sampler": sampler, f"{baseline} final best": show(target),
                         "trials to match": str(int(hits.iloc[0])) if len(hits) else "-",
                         f"{baseline} trials": int(base["trial"].max())})
    return pd.DataFrame(rows)


def not_reached(final_loss: float | None) -> str:
    """How a steps_to_target miss is shown: never its score, which only ranks misses after hits."""
    return f"not reached (final loss {sci(final_loss)})"


def steps_to_target(score: float | None, total_steps: int, target: float, final_loss: float | None = None) -> str:
    """A steps_to_target score as the dashboard shows it. A run that reached the target
    (``records.reached_target``: score <= its step budget ``total_steps``) scores the first step
    whose training loss was at or under it: shown as that step. A miss scores ``total_steps * (1 +
    log10(final / target))``, a ranking device only (nearer misses first, every miss after every
    hit): shown as "not reached (final loss X)", X the stored ``final_loss`` or, without one, the
    score's (``missed_final_loss``). ``-``: no score."""
    if score is None or pd.isna(score):
        return "-"
    if reached_target(score, total_steps):
        return f"{score:g}"
    return not_reached(missed_final_loss(score, target, total_steps) if final_loss is None else final_loss)


def target_outcomes(trials: pd.DataFrame, total_steps: pd.Series, target: float) -> pd.DataFrame:
    """Per completed trial (``trials``' index; its objective a steps_to_target score, ``total_steps``
    its step budget): reached (bool, ``records.reached_target``) and text (as ``steps_to_target``
    writes it; the final loss of a miss from its score, ``missed_final_loss``), for all at once."""
    done = trials[trials["state"] == COMPLETE]
    score = done["objective"].to_numpy(dtype=float)
    budget = total_steps.loc[done.index].to_numpy(dtype=float)
    reached = score <= budget
    with np.errstate(over="ignore", invalid="ignore"):
        final = target * 10.0 ** (score / budget - 1.0)
    text = ["-" if v != v else f"{v:g}" if hit else not_reached(loss)
            for v, hit, loss in zip(score.tolist(), reached.tolist(), final.tolist(), strict=True)]
    return pd.DataFrame({"reached": reached, "text": text}, index=done.index)


def best_scores(rows: list[dict[str, Any]], *, target: float | None = None,
                budgets: list[int] | None = None) -> pd.DataFrame:
    """The best configurations' objective (``rows``: tuner best's, best first), one row each: rank,
    optimizer, sampler, mean, std, min and max over the re-evaluation seeds that completed, how
    many did and how many diverged, the tuning trial's objective and number; numbers as ``sci``,
    ``-`` where there is none (not re-evaluated, one seed). For steps_to_target (``target``, and
    ``budgets``: each row's step budget) scores as ``steps_to_target`` shows them, and how many
    seeds reached the target instead of min and max: the mean and std only when every seed reached
    it; when none did, "not reached (final loss X)", X the seeds' median; between, "k of n reached"
    and the best seed's steps."""
    table = []
    for index, r in enumerate(rows):
        n, mean = r["reeval_count"], r["reeval_mean"]
        row = {"rank": r["rank"], "optimizer": r["optimizer"], "sampler": r["sampler"]}
        if target is None or budgets is None:
            row |= {"mean": sci(mean), "std": sci(r["reeval_std"]), "min": sci(r["reeval_min"]),
                    "max": sci(r["reeval_max"]), "seeds": n}
            trial = sci(r["trial_objective"])
        else:
            hits = r["reeval_reached"]
            every = n > 0 and hits == n
            steps = ("-" if not n else f"{mean:.4g}" if every else not_reached(r["reeval_final_loss"]) if not hits
                     else f"{hits} of {n} reached, the best in {r['reeval_min']:g}")
            std = f"{r['reeval_std']:.3g}" if every and r["reeval_std"] is not None else "-"
            row |= {"mean": steps, "std": std, "reached": f"{hits} of {n}"}
            trial = steps_to_target(r["trial_objective"], budgets[index], target, r["trial_final_loss"])
        table.append({**row, "diverged": r["reeval_diverged"], "trial objective": trial, "trial": r["trial_number"]})
    return pd.DataFrame(table)


PAGE_WIDTH = 900
"""Pixels of table a wide Streamlit page shows without scrolling sideways (a 1400-pixel window with the sidebar)."""


def column_widths(table: pd.DataFrame) -> dict[str, int]:
    """Each column's width in pixels, as Streamlit needs for its header and longest cell (7 per character)."""
    return {column: 7 * max([len(column), *(len(str(v)) for v in table[column])]) + 24 for column in table.columns}


def best_parameters(rows: list[dict[str, Any]], params: list[dict[str, Any]], *,
                    width: int = PAGE_WIDTH) -> pd.DataFrame:
    """The best configurations' parameters in search-space terms (``params``: one dict per row of
    ``rows``), in a table no wider than ``width`` pixels (``column_widths``) where it can be: each
    row named "optimizer · sampler" (as "paste it" names it); a column of its own for each of the
    k parameters most configurations have (at least half of them), k as large as fits (else the
    narrowest table); the others as ``name=value`` in "other parameters"; floats as ``sci``, ``-``
    where a configuration has no such parameter."""
    counts: dict[str, int] = {}
    for values in params:
        for name in values:
            counts[name] = counts.get(name, 0) + 1

    def table(own: list[str]) -> pd.DataFrame:
        own = [name for name in counts if name in own]  # in the order the parameters come
        return pd.DataFrame([
            {"configuration": f"{r['optimizer']} · {r['sampler']}",
             **{name: _cell(values[name]) if name in values else "-" for name in own},
             **({"other parameters": " ".join(f"{k}={_cell(v)}" for k, v in values.items() if k not in own) or "-"}
                if len(own) < len(counts) else {})}
            for r, values in zip(rows, params, strict=True)])

    common = sorted((n for n, count in counts.items() if 2 * count >= len(params)), key=lambda n: -counts[n])
    tables = [table(common[:k]) for k in range(len(common), -1, -1)]  # the most columns first
    wide = [sum(column_widths(t).values()) for t in tables]
    return next((t for t, w in zip(tables, wide, strict=True) if w <= width), tables[wide.index(min(wide))])


def _cell(value: Any) -> str:
    """A parameter's value as text: whole numbers as integers (a batch size read back as 16.0),
    other floats as ``sci``, the rest as typed."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return sci(value) if isinstance(value, float) else str(value)


def categorical(values: pd.Series) -> bool:
    """Whether a parameter is shown by category: text, booleans, and integers with at most
    MAX_CATEGORIES distinct values (a batch size: its powers of two in order)."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    present = values.dropna()
    return bool((present == present.round()).all()) and present.nunique() <= MAX_CATEGORIES


def _category_colours(categories: list[Any]) -> list[str]:
    """Ordered numbers (batch sizes) along Viridis; other categories in COLOURS."""
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in categories):
        return sample_colorscale("Viridis", [i / max(len(categories) - 1, 1) for i in range(len(categories))])
    return [COLOURS[i % len(COLOURS)] for i in range(len(categories))]


def _shown(value: Any) -> str:
    """A parameter's value in a plotly label or hover text: ``_cell``'s text, shown as typed (``_label``)."""
    return _label(_cell(value))


def first_per_cell(x: pd.Series, y: pd.Series, keys: list[pd.Series], *, log_y: bool,
                   cells: tuple[int, int] = CELLS) -> np.ndarray:
    """Which points to draw of a crowded scatter (x on a log axis, y on a log axis if ``log_y``):
    the first of each value of ``keys`` (what tells traces and markers apart) in each cell of a
    ``cells`` grid over the finite range of x and y; points that cannot be drawn (not finite, or
    not positive on a log axis) share a cell. A boolean mask, in the points' order."""
    def bins(values: pd.Series, log: bool, n: int) -> np.ndarray:
        v = values.to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(np.where(v > 0, v, np.nan)) if log else v
        finite = v[np.isfinite(v)]
        if not len(finite):
            return np.full(len(v), n)
        low, span = finite.min(), (finite.max() - finite.min()) or 1.0
        with np.errstate(invalid="ignore"):
            index = np.floor((v - low) / span * n)
        return np.where(np.isfinite(index), np.clip(index, 0, n - 1), n).astype(np.int64)

    codes = pd.DataFrame({"x": bins(x, True, cells[0]), "y": bins(y, log_y, cells[1]),
                          **{f"key{i}": pd.factorize(key)[0] for i, key in enumerate(keys)}})
    return ~codes.duplicated().to_numpy()


def _colour_key(values: pd.Series) -> pd.Series:
    """What a point's colour says, for ``first_per_cell``: its category, or which of 16 equal
    parts of the colour scale (``_scaled``) its value falls in."""
    if categorical(values):
        return values.astype(str)
    shade, _ = _scaled(values, "")
    low, high = shade.min(), shade.max()
    return np.floor((shade - low) / ((high - low) or 1.0) * 16).clip(upper=15)


def lr_figure(trials: pd.DataFrame, *, colour: str | None = None, log_y: bool,
              outcomes: pd.DataFrame | None = None) -> go.Figure:
    """Objective against learning rate (log axes as ``log_axis``). Each optimizer in its STYLES;
    or, with ``colour``, one optimizer's trials coloured by that parameter: by category (see
    ``categorical``), else on a colour scale (log for positive values spanning a decade). Diverged
    trials are marked with an x along the top edge, at their learning rate. ``outcomes``
    (``target_outcomes``): a steps_to_target experiment's misses are drawn hollow, and the hover
    text says what each trial reached. Over WEBGL_POINTS trials, one per optimizer (or colour),
    marker and cell (``first_per_cell``), the title saying so; over WEBGL_POINTS drawn, by WebGL
    (``go.Scattergl``), else by SVG."""
    figure = go.Figure()
    finite = trials.loc[trials["state"] == COMPLETE, "objective"].dropna()
    top = float(finite.max()) if len(finite) else 1.0
    points = trials[trials["state"].isin([COMPLETE, DIVERGED])]
    total = len(points)
    if total > WEBGL_POINTS:
        keys = [points["state"], points["optimizer"] if colour is None else _colour_key(points[colour])]
        if outcomes is not None:
            keys.append(outcomes["reached"].reindex(points.index))
        y = points["objective"].where(points["state"] == COMPLETE, top)
        points = points[first_per_cell(points["lr"], y, keys, log_y=log_y)]
        by = "optimizer" if colour is None else f"{colour} value"
        figure.update_layout(title={"text": f"{len(points):,} of {total:,} trials drawn: the first of each {by} in "
                                            f"each of {CELLS[0]} × {CELLS[1]} cells; the others lie under them",
                                    "font": {"size": 12}})
    done, diverged = points[points["state"] == COMPLETE], points[points["state"] == DIVERGED]
    scatter = go.Scattergl if len(points) > WEBGL_POINTS else go.Scatter

    def hover(frame: pd.DataFrame) -> tuple[list[str], str]:
        if outcomes is None:
            return [], "lr %{x:.3g}<br>objective %{y:.3g}"
        return list(outcomes.loc[frame.index, "text"]), "lr %{x:.3g}<br>%{text}"

    def marker(frame: pd.DataFrame, colour: Any, symbol: str, **more: Any) -> dict[str, Any]:
        """Hollow where the target was missed, outlined in ``colour`` (WebGL draws an open marker's outline only)."""
        if outcomes is None:
            return {"color": colour, "symbol": symbol, **more}
        symbols = [symbol if reached else f"{symbol}-open" for reached in outcomes.loc[frame.index, "reached"]]
        line = {"color": colour, "width": 1.5, **({"colorscale": more["colorscale"]} if "colorscale" in more else {})}
        return {"color": colour, "symbol": symbols, "line": line, **more}

    if colour is None:
        for optimizer in registry_order(done["optimizer"]):
            frame, look = done[done["optimizer"] == optimizer], style(optimizer)
            text, template = hover(frame)
            figure.add_trace(scatter(x=frame["lr"], y=frame["objective"], mode="markers", name=str(optimizer),
                                     text=text, hovertemplate=f"{optimizer}<br>{template}<extra></extra>",
                                     marker=marker(frame, look.colour, look.symbol, size=7, opacity=0.8)))
    elif categorical(done[colour]):
        categories = sorted(done[colour].dropna().unique().tolist())
        for category, shade in zip(categories, _category_colours(categories), strict=True):
            frame = done[done[colour] == category]
            text, template = hover(frame)
            figure.add_trace(scatter(x=frame["lr"], y=frame["objective"], mode="markers",
                                     name=_shown(category), text=text, customdata=[_shown(category)] * len(frame),
                                     hovertemplate=f"{colour} %{{customdata}}<br>{template}<extra></extra>",
                                     marker=marker(frame, shade, "circle", size=8)))
        figure.update_layout(legend_title_text=colour)
    else:
        shade, label = _scaled(done[colour], colour)
        every, _ = _scaled(trials.loc[trials["state"] == COMPLETE, colour], colour)  # the scale of every trial's
        text, template = hover(done)
        figure.add_trace(scatter(
            x=done["lr"], y=done["objective"], mode="markers", name=" ".join(done["optimizer"].unique()),
            text=text, customdata=done[colour].map(_shown),
            hovertemplate=f"{template}<br>{colour} %{{customdata}}<extra></extra>",
            marker=marker(done, shade, "circle", colorscale="Viridis", showscale=True, colorbar={"title": label},
                          cmin=every.min(), cmax=every.max(), size=7),
        ))
        figure.update_layout(legend={"orientation": "h", "y": -0.25})  # the colour bar takes the right edge
    for optimizer in registry_order(diverged["optimizer"]):
        frame = diverged[diverged["optimizer"] == optimizer]
        figure.add_trace(scatter(
            x=frame["lr"], y=np.full(len(frame), top), mode="markers", name=f"{optimizer} diverged",
            customdata=frame["diverged_at"], hovertemplate="lr %{x:.3g}: diverged at step %{customdata}",
            marker={"symbol": "x", "size": 9, "color": style(optimizer).colour if colour is None else "#d62728"}))
    y_axis = log_axis(finite) if log_y else {"type": "linear"}
    figure.update_layout(xaxis={**log_axis(trials["lr"]), "title": "learning rate"},
                         yaxis={**y_axis, "title": "objective"}, margin={"t": 50 if total > WEBGL_POINTS else 30})
    return figure


def _scaled(values: pd.Series, name: str) -> tuple[pd.Series, str]:
    """Numbers for a colour scale or an axis: log10 for positive values spanning more than a decade."""
    positive = values.dropna()
    if len(positive) and (positive > 0).all() and positive.max() / positive.min() > 10:
        return np.log10(values), f"log10 {name}"
    return values, name


def importance_figure(importances: dict[str, float]) -> go.Figure:
    names = list(importances)[::-1]
    figure = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", name="importance"))
    figure.update_layout(xaxis_title="importance (fANOVA)", margin={"t": 30}, height=120 + 30 * len(names))
    return figure


def _dimension(column: pd.Series, name: str) -> dict[str, Any]:
    """A parallel-coordinates axis: categories evenly spaced (``categorical``: a batch size's powers
    of two, so on a log2 scale), positive numbers spanning more than a decade on a log scale with a
    tick at each power of ten, other numbers as they are."""
    if categorical(column):
        codes = column.astype("category")
        return {"label": name, "values": codes.cat.codes, "tickvals": list(range(len(codes.cat.categories))),
                "ticktext": [_shown(c) for c in codes.cat.categories]}
    return _numeric_dimension(column, name)


def _numeric_dimension(column: pd.Series, name: str) -> dict[str, Any]:
    """A parallel-coordinates axis of numbers: log scale (a tick at each power of ten) for positive
    numbers spanning more than a decade."""
    values, label = _scaled(column, name)
    if label == name:
        return {"label": name, "values": values}
    decades = range(math.floor(values.min()), math.ceil(values.max()) + 1)
    return {"label": name, "values": values, "tickvals": list(decades), "ticktext": [f"1e{k}" for k in decades]}


def parallel_figure(trials: pd.DataFrame, params: list[str]) -> go.Figure:
    """Parallel coordinates of ``params`` and the objective over completed trials, coloured by
    objective (see ``_dimension`` for the axes' scales); over PARALLEL_LINES of them, that many
    evenly spread over them in ``trials``' order, the title saying so."""
    done = trials[trials["state"] == COMPLETE].dropna(subset=["objective"])
    total = len(done)
    if total > PARALLEL_LINES:
        done = done.iloc[np.unique(np.linspace(0, total - 1, PARALLEL_LINES).round().astype(int))]
    dimensions = [_dimension(done[name], name) for name in params if not done[name].isna().any()]
    objective = _numeric_dimension(done["objective"], "objective")
    ticks = {k: objective[k] for k in ("tickvals", "ticktext") if k in objective}
    figure = go.Figure(go.Parcoords(
        line={"color": objective["values"], "colorscale": "Viridis_r", "showscale": True,
              "colorbar": {"title": "objective", **ticks}},
        dimensions=[*dimensions, objective]))
    figure.update_layout(margin={"t": 40, "l": 60, "r": 60})
    if total > PARALLEL_LINES:
        figure.update_layout(title={"text": f"{len(done):,} of {total:,} completed trials, evenly spread over them "
                                            "in trial order", "font": {"size": 12}, "yref": "container", "y": 0.99,
                                    "yanchor": "top"}, margin={"t": 90})
    return figure
