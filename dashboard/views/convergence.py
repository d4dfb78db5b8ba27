"""Convergence of each optimizer's best configuration: median over re-evaluation seeds with a band."""

import numpy as np
import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner.storage.records import COMPLETE, DIVERGED
from tuner.tasks import is_synthetic

SERIES = {"train_loss": "training loss", "val_loss": "validation loss", "val_accuracy": "validation accuracy",
          "loss": "full-batch loss (evaluated)"}
X_AXES = {"epochs": "epoch", "steps": "step", "wall time": "seconds"}

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("Convergence")
runs = data.best_runs(url, name)
if runs.empty:
    st.info(f"{code(name)} has no completed trial yet: curves appear here as soon as one finishes.")
    st.stop()

recorded = [s for s in SERIES if s in data.series_names(url, name)]
if not any(s.startswith("val_") for s in recorded):
    st.info(f"Task {spec.task.name!r} has no validation data: the evaluated series is the noiseless full-batch loss.")
axes = [a for a in X_AXES if a != "epochs" or not is_synthetic(spec.task.name)]
top = st.columns([2, 2, 2, 1, 1])
series = top[0].selectbox("metric", recorded, format_func=SERIES.get)
x_axis = top[1].radio("x axis", axes, horizontal=True)
band = top[2].radio("band over seeds", list(charts.BANDS), horizontal=True)
log_y = top[3].toggle("log scale", value=series != "val_accuracy")
faint_for = top[4].selectbox("every trial of", ["none", *runs["optimizer"].unique()])

curves = data.curves(url, tuple(int(i) for i in runs["run_id"]), series).merge(runs, on="run_id")
curves["epoch"] = curves["step"] * spec.budget.epochs / curves["total_steps"] if spec.budget.epochs else np.nan
x = X_AXES[x_axis]
stats = charts.spread(curves, ["optimizer"], "step", x, band)

faint = None
if faint_for != "none":
    trials = data.trials(url, name)
    mine = trials[trials["optimizer"] == faint_for]
    if spec.budget.epochs:  # steps per epoch from the full runs, by batch size (a diverged run stopped early)
        full = mine[mine["state"] == COMPLETE]
        by = "batch_size" if "batch_size" in mine else None
        per_epoch = (full.groupby(by)["steps"].median() if by else full["steps"].median()) / spec.budget.epochs
        mine = mine.assign(per_epoch=mine[by].map(per_epoch) if by else per_epoch)
    faint = data.curves(url, tuple(int(i) for i in mine["run_id"]), series).merge(mine, on="run_id")
    faint["epoch"] = faint["step"] / faint["per_epoch"] if spec.budget.epochs else np.nan
    faint["x"] = faint[x]

references = []
theory = data.theory(spec.task.name, spec.task.options)
if theory and x == "step" and series in ("train_loss", "loss"):
    start = curves.loc[curves["step"] == 0, "value"].median()
    k = np.arange(int(curves["step"].max()) + 1)
    references = [(f"optimal heavy ball (rate {theory['heavy_ball_rate']:.3f})", k,
                   start * theory["heavy_ball_rate"] ** (2 * k)),
                  (f"optimal gradient descent (rate {theory['gd_rate']:.3f})", k, start * theory["gd_rate"] ** (2 * k))]

figure = charts.convergence_figure(stats, x_title=x, y_title=SERIES[series], log_y=log_y, faint=faint,
                                   references=references)
st.plotly_chart(figure, width="stretch")
seeds = runs.groupby("optimizer").agg(sampler=("sampler", "first"), seeds=("seed", "size"),
                                      diverged=("state", lambda s: int((s == DIVERGED).sum())))
st.caption("Each line is the median over the seeds that re-ran the optimizer's best configuration "
           "(its own trial before any re-evaluation); the band is the " + band + " range.")
st.dataframe(seeds, width="content")
