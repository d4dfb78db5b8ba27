"""How sensitive each optimizer is to its hyperparameters: objective against learning rate,
Optuna's parameter importances, parallel coordinates."""

import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner.api import searched_params
from tuner.storage.records import COMPLETE

url = data.storage_url()
name = st.session_state["experiment"]
st.title("Sensitivity")
trials = data.trials(url, name)
if not (trials["state"] == COMPLETE).any():
    st.info(f"{code(name)} has no completed trial yet: sensitivity plots appear as soon as one finishes.")
    st.stop()

log_y = bool((trials["objective"].dropna() > 0).all())
with_lr = trials[trials["lr"].notna()] if "lr" in trials else trials.iloc[0:0]
if with_lr.empty:
    st.info("No optimizer of this experiment has a learning rate (L-BFGS only).")
else:
    st.subheader("Objective against learning rate")
    st.plotly_chart(charts.lr_figure(with_lr, log_y=log_y), width="stretch")
    st.caption("x: diverged trials, drawn along the top edge at their learning rate.")

optimizer = st.selectbox("optimizer", list(dict.fromkeys(trials["optimizer"])))
mine = trials[trials["optimizer"] == optimizer]
params = searched_params(mine)
if not params:
    st.info(f"{optimizer} has no searched parameter in this experiment: every value is fixed.")
    st.stop()

others = [p for p in params if p != "lr"]
if "lr" in params and others:
    colour = st.selectbox("colour by", others)
    st.plotly_chart(charts.lr_figure(mine, colour=colour, log_y=log_y), width="stretch")

left, right = st.columns([1, 2])
with left:
    st.subheader("Importance")
    importances = data.importances(url, name, optimizer)
    if importances:
        st.plotly_chart(charts.importance_figure(importances), width="stretch")
        st.caption("Optuna's fANOVA importances over the completed trials, on the parameters as Optuna sampled "
                   "them (one_minus_beta2 is 1 - beta2 on a log scale).")
    else:
        st.info("Importances need at least three completed trials whose parameters vary.")
with right:
    st.subheader("Parallel coordinates")
    st.plotly_chart(charts.parallel_figure(mine, params), width="stretch")
