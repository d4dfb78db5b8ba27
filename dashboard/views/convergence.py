"""Convergence of each optimizer's best configuration: median over re-evaluation seeds with a band."""

import numpy as np
import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner.storage.records import COMPLETE, DIVERGED, MAX_POINTS
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
synthetic = is_synthetic(spec.task.name)
axes = [a for a in X_AXES if a != "epochs" or not synthetic]
own = charts.objective_series(spec.objective.name, synthetic)
top = st.columns([2, 2, 2, 1, 1])
series = top[0].selectbox("metric", recorded, index=recorded.index(own) if own in recorded else 0,
                          format_func=SERIES.get)
x_axis = top[1].radio("x axis", axes, horizontal=True)
band = top[2].radio("band over seeds", list(charts.BANDS), horizontal=True)
log_y = top[3].toggle("log scale", value=series != "val_accuracy")
faint_for = top[4].selectbox("every trial of", ["none", *runs["optimizer"].unique()])
smoothing = 0.0
if series == "train_loss" and not synthetic:  # a synthetic task's per-step loss is exact: nothing to smooth
    smoothing = st.columns([2, 5])[0].slider("smoothing (EMA weight)", 0.0, 0.99, 0.0, 0.01,
                                             help="0: the per-step training loss as recorded")
if own in recorded:
    st.caption(f"The objective, {spec.objective.name}, is computed from the {SERIES[own]}: the metric shown first.")

curves = data.curves(url, tuple(int(i) for i in runs["run_id"]), series).merge(runs, on="run_id")
if smoothing:
    curves = charts.smooth(curves, smoothing)
curves["epoch"] = curves["step"] * spec.budget.epochs / curves["total_steps"] if spec.budget.epochs else np.nan
x = X_AXES[x_axis]
stats = charts.spread(curves, ["optimizer"], "step", x, band)

faint = None
if faint_for != "none":
    trials = data.trial_outcomes(url, name)
    mine = trials.loc[trials["optimizer"] == faint_for, ["run_id", "state", "steps", "batch_size"]]
    if spec.budget.epochs:  # steps per epoch from the full runs, by batch size (a diverged run stopped early)
        full = mine[mine["state"] == COMPLETE]
        by = "batch_size" if mine["batch_size"].notna().any() else None
        per_epoch = (full.groupby(by)["steps"].median() if by else full["steps"].median()) / spec.budget.epochs
        mine = mine.assign(per_epoch=mine[by].map(per_epoch) if by else per_epoch)
    faint = data.curves(url, tuple(int(i) for i in mine["run_id"]), series).merge(mine, on="run_id")
    if smoothing:
        faint = charts.smooth(faint, smoothing)
    faint["epoch"] = faint["step"] / faint["per_epoch"] if spec.budget.epochs else np.nan
    faint["x"] = faint[x]

references = []
theory = data.theory(spec.task.name, spec.task.options)
if theory and x == "step" and series in ("train_loss", "loss"):
    # the loss at step 0 (before the first update), which the evaluated series (from step eval_every) has not
    first = curves if series == "train_loss" else data.curves(url, tuple(int(i) for i in runs["run_id"]), "train_loss")
    start = first.loc[first["step"] == 0, "value"].median()
    k = np.arange(int(curves["step"].max()) + 1)
    references = [(f"optimal {method} (rate {theory[f'{key}_rate']:.3f})", k, start * theory[f"{key}_rate"] ** (2 * k))
                  for method, key in (("heavy ball", "heavy_ball"), ("Nesterov", "nesterov"),
                                      ("gradient descent", "gd"))]

target = None
if spec.objective.name == "steps_to_target" and series in ("train_loss", "loss"):
    target = spec.objective.target
figure = charts.convergence_figure(stats, x_title=x, y_title=SERIES[series], log_y=log_y, faint=faint,
                                   references=references, target=target)
st.plotly_chart(figure, width="stretch")
seeds = runs.groupby("optimizer").agg(sampler=("sampler", "first"), seeds=("seed", "size"),
                                      diverged=("state", lambda s: int((s == DIVERGED).sum())))
seeds = seeds.reindex(charts.registry_order(seeds.index))
notes = ["Each line is the median over the seeds that re-ran the optimizer's best configuration "
         f"(its own trial before any re-evaluation); the band is the {band} range."]
if faint is not None and faint["run_id"].nunique() > charts.FAINT_LINES:
    notes.append(f"Grey: where the curves of the {len(mine)} trials of {faint_for} run, each cell shaded by its "
                 "share of the trials' points at its x (darker: more of them).")
if smoothing:
    notes.append(f"The training loss is smoothed per run before the median: an exponential moving average over "
                 f"its recorded points (every step up to {MAX_POINTS} steps, else {MAX_POINTS} evenly spaced ones), "
                 f"s₀ = x₀, sᵢ = w·sᵢ₋₁ + (1 − w)·xᵢ with w = {smoothing:.2f}.")
if references:
    notes.append("Theory: the loss of the optimal step size (and momentum) from the median starting loss, "
                 "drawn within the range of the curves.")
if target is not None:
    notes.append(f"Dotted line: the target {target:.3g}; steps_to_target counts the steps until the per-step "
                 "training loss first reaches it.")
st.caption(" ".join(notes))
st.dataframe(seeds, width="content")

gap = data.theory_gap(url, name)
if not gap.empty:
    st.subheader("Theory gap")
    st.dataframe(gap.drop(columns="sampler"), hide_index=True, width="stretch", column_config={
        column: st.column_config.NumberColumn(format="%.4g") for column in gap.columns if column != "optimizer"})
    st.caption("Each optimizer's best configuration against the quadratic's optimum: tuned / optimal learning rate "
               "and momentum (ratio 1: the tuner found the theory's optimum), the rate measured by the rate "
               "objective (the error's linear rate per step fitted on the loss curve's tail), the tuned "
               "configuration's asymptotic rate on this spectrum, and the optimum's.")
