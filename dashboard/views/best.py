"""The best configuration per optimizer and sampler, ready to download or paste."""

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.verbatim import code
from tuner.report import best_as_csv, best_as_json
from tuner.snippets import study_snippet, torch_snippet
from tuner.storage.queries import TRIAL_COLUMNS

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("Best configurations")
rows = data.best_configs(url, name)
if not rows:
    st.info(f"{code(name)} has no completed trial yet: its best configurations appear here as soon as one finishes.")
    st.stop()

trials = data.trials(url, name).set_index("run_id")
if not all(r["run_id"] in trials.index for r in rows):  # cached before these runs finished: read again
    data.trials.clear()
    trials = data.trials(url, name).set_index("run_id")
table = pd.DataFrame([
    {"optimizer": r["optimizer"], "sampler": r["sampler"], "mean": r["reeval_mean"], "std": r["reeval_std"],
     "min": r["reeval_min"], "max": r["reeval_max"], "seeds": r["reeval_count"], "diverged seeds": r["reeval_diverged"],
     "trial objective": r["trial_objective"], "trial": r["trial_number"],
     **{k: v for k, v in trials.loc[r["run_id"]].items() if k not in TRIAL_COLUMNS and pd.notna(v)}}
    for r in rows  # best first
])
st.caption(f"Objective: {spec.objective.name} (lower is better); mean and spread over the re-evaluation seeds. "
           "Best first: re-evaluated configurations by their mean, then the others by their trial's objective.")
st.dataframe(table, hide_index=True, width="stretch")
left, right, _ = st.columns([1, 1, 4])
left.download_button("CSV", best_as_csv(rows), file_name=f"{name}-best.csv", mime="text/csv")
right.download_button("JSON", best_as_json(rows), file_name=f"{name}-best.json", mime="application/json")

st.subheader("Paste it")
labels = {f"{r['optimizer']} · {r['sampler']}": r for r in rows}
chosen = labels[st.selectbox("configuration", list(labels))]
config, total_steps = chosen["params"], int(trials.loc[chosen["run_id"], "steps"])
torch_tab, study_tab = st.tabs(["torch.optim", "study file"])
torch_tab.code(torch_snippet(config), language="python")
study_tab.code(study_snippet(config, total_steps), language="yaml")
