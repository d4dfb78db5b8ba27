"""Pure functions for the Suites page: a suite's results (``tuner.suite_scores.SuiteScores``) in,
plotly figures or DataFrames out. No queries, no Streamlit."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import PALETTE
from tuner.profiles import R_MAX, profile_steps
from tuner.suite_scores import SuiteScores

DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
"""One line style per sampler of the suite, when it has several (the colour is the optimizer's)."""


def label(result: SuiteScores, index: int) -> str:
    """A solver as the page names it: the optimizer, and its sampler when the suite has several."""
    optimizer, sampler = result.solvers[index]
    return optimizer if len({s for _, s in result.solvers}) == 1 else f"{optimizer} · {sampler}"


def profile_figure(result: SuiteScores) -> go.Figure:
    """rho_s(tau) for tau in [1, R_MAX], one step line per solver (best score first), exact:
    ``profiles.profile_steps`` drawn horizontal then vertical."""
    samplers = list(dict.fromkeys(s for _, s in result.solvers))
    figure = go.Figure()
    for i in result.order:
        taus, rho = profile_steps(result.ratios[i], R_MAX)
        optimizer, sampler = result.solvers[i]
        figure.add_trace(go.Scatter(
            x=taus, y=rho, mode="lines", line_shape="hv", name=f"{label(result, i)} (B = {result.scores[i]:.3f})",
            line={"color": PALETTE.get(optimizer), "width": 2, "dash": DASHES[samplers.index(sampler) % len(DASHES)]},
            hovertemplate=f"{label(result, i)}<br>tau %{{x:.3g}}: %{{y:.0%}} of tasks<extra></extra>"))
    figure.update_layout(xaxis_title="tau: time to target / fastest time to target",
                         yaxis_title="rho(tau): fraction of tasks within tau", legend_title_text="score B",
                         margin={"t": 30})
    figure.update_xaxes(range=[1, R_MAX])
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return figure


def score_table(result: SuiteScores) -> pd.DataFrame:
    """One row per solver, best first: rank, optimizer, sampler, AlgoPerf score, tasks reached."""
    return pd.DataFrame([
        {"rank": result.rank(i), "optimizer": result.solvers[i][0], "sampler": result.solvers[i][1],
         "score": float(result.scores[i]), "tasks reached": f"{result.reached[i]}/{len(result.tasks)}"}
        for i in result.order])


def task_table(result: SuiteScores, values: np.ndarray) -> pd.DataFrame:
    """One row per task: its target, then ``values`` (the ratios or the times, solvers x tasks) with
    one column per solver, best score first; empty (NaN) where the target was missed."""
    finite = np.where(np.isfinite(values), values, np.nan)
    return pd.DataFrame([
        {"task": task.name, "target": f"{task.series} <= {task.target:g}",
         **{label(result, i): finite[i, w] for i in result.order}}
        for w, task in enumerate(result.tasks)])
