"""Pure figures of the "How sure are we" page: rankings with their intervals, the probability
of improvement of every pair, and what a budget of k trials buys (crossovers marked)."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard import charts
from tuner.rankings import Ranking
from tuner.tunability import Tunability


def ranking_figure(rows: pd.DataFrame, objective: str) -> go.Figure:
    """Each best configuration's mean over its re-evaluation runs with its 95% interval, best on
    top, coloured by optimizer; its tied rank in the label. A log axis when the intervals span
    more than a factor of 100 (all positive)."""
    figure = go.Figure()
    labels = [f"{r.rank}  {r.optimizer}/{r.sampler}" for r in rows.itertuples()]
    for label, r in zip(labels, rows.itertuples(), strict=True):
        figure.add_trace(go.Scatter(
            x=[r.mean], y=[label], mode="markers", name=label, showlegend=False,
            marker={"color": charts.style(r.optimizer).colour, "size": 10},
            error_x={"type": "data", "symmetric": False, "array": [r.mean_high - r.mean],
                     "arrayminus": [r.mean - r.mean_low]},
            hovertemplate=f"{label}<br>mean %{{x:.4g}} [{r.mean_low:.4g}, {r.mean_high:.4g}]<extra></extra>"))
    figure.update_yaxes(autorange="reversed", title=None)
    lows, highs = rows["mean_low"].to_numpy(dtype=float), rows["mean_high"].to_numpy(dtype=float)
    spread = (lows > 0).all() and np.isfinite(highs).all() and highs.max() > 100 * lows.min()
    figure.update_xaxes(title=f"{objective}: mean over re-evaluation runs, 95% bootstrap interval",
                        type="log" if spread else "linear", exponentformat="power")
    figure.update_layout(height=120 + 32 * len(rows), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def improvement_figure(ranking: Ranking) -> go.Figure:
    """P(a run of the row's configuration beats one of the column's), rows and columns in rank order."""
    labels = [r.label for r in ranking.rows]
    grid = np.full((len(labels), len(labels)), np.nan)
    text = [["" for _ in labels] for _ in labels]
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            if a != b and any(x.a == a and x.b == b for x in ranking.improvements):
                p = ranking.improvement(a, b)
                grid[i, j] = p.value
                text[i][j] = f"{p.value:.2f}<br>[{p.low:.2f}, {p.high:.2f}]"
    figure = go.Figure(go.Heatmap(z=grid, x=labels, y=labels, zmin=0, zmax=1, colorscale="RdBu", text=text,
                                  texttemplate="%{text}", hovertemplate="P(%{y} beats %{x}) = %{z:.2f}<extra></extra>",
                                  colorbar={"title": "P(row beats column)"}))
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=160 + 40 * len(labels), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def tunability_figure(result: Tunability, *, log_y: bool) -> go.Figure:
    """Best objective after k trials: expected for random search (solid, with its 95% band),
    observed median of repeats for adaptive samplers (dashed); a vertical line where the
    random-search winner changes (a crossover), labelled with the new winner."""
    figure = go.Figure()
    for c in result.curves:
        colour = charts.style(c.optimizer).colour
        name = f"{c.optimizer}/{c.sampler}"
        if c.kind == "expected" and (c.low != c.high).any():
            figure.add_trace(go.Scatter(x=np.r_[c.k, c.k[::-1]], y=np.r_[c.high, c.low[::-1]], mode="lines",
                                        fill="toself",
                                        fillcolor=charts.rgba(colour, 0.12), line={"width": 0}, hoverinfo="skip",
                                        showlegend=False, legendgroup=name))
        figure.add_trace(go.Scatter(x=c.k, y=c.value, mode="lines", name=name, legendgroup=name,
                                    line={"color": colour, "dash": "solid" if c.kind == "expected" else "dash"},
                                    hovertemplate=f"{name}: %{{y:.4g}} after %{{x}} trials<extra></extra>"))
    for w in result.winners:
        if w.first > 1:
            figure.add_vline(x=w.first - 0.5, line={"color": "#888", "dash": "dot"},
                             annotation_text=f"{w.optimizer} ({w.sampler}) from k={w.first}",
                             annotation_position="top")
    figure.update_xaxes(title="budget k (trials)")
    figure.update_yaxes(title="best objective after k trials", type="log" if log_y else "linear",
                        exponentformat="power")
    figure.update_layout(height=480, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure
