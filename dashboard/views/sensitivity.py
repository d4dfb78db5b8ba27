"""How sensitive each optimizer is to its hyperparameters: objective against learning rate,
Optuna's parameter importances, parallel coordinates."""

import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner import analysis
from tuner.api import searched_params
from tuner.storage.records import COMPLETE

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("Sensitivity")
trials = data.trial_outcomes(url, name)  # every trial's outcome and learning rate, as columns
if not (trials["state"] == COMPLETE).any():
    st.info(f"{code(name)} has no completed trial yet: sensitivity plots appear as soon as one finishes.")
    st.stop()

log_y = bool((trials["objective"].dropna() > 0).all())
outcomes, hollow, scores = None, "", ""
if spec.objective.name == "steps_to_target":
    outcomes = charts.target_outcomes(trials, data.step_budgets(spec, trials), spec.objective.target)
    scores = (" A trial that did not reach the target scores steps × (1 + log10(final loss / target)), more than "
              "its step budget: a ranking device (nearer misses first), not a step count.")
    hollow = " Hollow: trials that did not reach the target (hover: their final loss)." + scores
with_lr = trials[trials["lr"].notna()]
if with_lr.empty:
    st.info("No optimizer of this experiment has a learning rate (L-BFGS only).")
else:
    st.subheader("Objective against learning rate")
    st.plotly_chart(charts.lr_figure(with_lr, log_y=log_y, outcomes=outcomes), width="stretch")
    st.caption(f"Objective: {spec.objective.name} (lower is better). x: diverged trials, drawn along the top edge "
               "at their learning rate." + hollow)

optimizer = st.selectbox("optimizer", list(dict.fromkeys(trials["optimizer"])))
mine = data.trials(url, name, optimizer)  # with its configurations
params = searched_params(mine)
if not params:
    st.info(f"{optimizer} has no searched parameter in this experiment: every value is fixed.")
    st.stop()

others = [p for p in params if p != "lr"]
if "lr" in params and others:
    colour = st.selectbox("colour by", others)
    if outcomes is not None:
        outcomes = charts.target_outcomes(mine, data.step_budgets(spec, mine), spec.objective.target)
    st.plotly_chart(charts.lr_figure(mine, colour=colour, log_y=log_y, outcomes=outcomes), width="stretch")

st.subheader("Importance")
importances = data.importances(url, name, optimizer)
if importances:
    st.columns([3, 2])[0].plotly_chart(charts.importance_figure(importances), width="stretch")
    st.caption(f"Optuna's fANOVA importances over the completed trials (at most {analysis.IMPORTANCE_TRIALS:,}, "
               "evenly spread over them), on the parameters as Optuna sampled them (one_minus_beta2 is 1 - beta2 on "
               "a log scale).")
else:
    st.info("Importances need at least three completed trials whose parameters vary.")
st.subheader("Parallel coordinates")
completed = int((mine["state"] == COMPLETE).sum())
# plotly's parallel coordinates are drawn by WebGL: over a second even for 100 lines without a GPU, so a
# large experiment draws them when asked (the page's other charts first)
if st.toggle("draw parallel coordinates", value=completed <= charts.PARALLEL_AT_ONCE,
             help=f"drawn at once up to {charts.PARALLEL_AT_ONCE:,} completed trials"):
    st.plotly_chart(charts.parallel_figure(mine, params), width="stretch")
    st.caption("One line per completed trial. Parameters spanning more than a decade on a log scale; a batch size "
               "and other parameters with few values by category, in order." + scores)
else:
    st.caption(f"{completed:,} completed trials of {optimizer}: switch on to draw their parallel coordinates "
               f"(at most {charts.PARALLEL_LINES:,} lines, evenly spread).")
