"""The best configuration per optimizer and sampler, ready to download or paste."""

import pandas as pd
import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner.report import best_as_csv, best_as_json
from tuner.snippets import study_snippet, torch_snippet

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("Best configurations")
ranked, _ = data.ranking(url, name)
if ranked.empty:
    st.info(f"{code(name)} has no completed trial yet: its best configurations appear here as soon as one finishes.")
    st.stop()
rows = ranked.astype(object).where(ranked.notna(), None).to_dict("records")  # tuner best's rows, best first

trials = data.trials(url, name).set_index("run_id")
if not all(r["run_id"] in trials.index for r in rows):  # cached before these runs finished: read again
    data.trials.clear()
    trials = data.trials(url, name).set_index("run_id")
searched = {o.name: {p.name: p for p in spec.search_space(o.name) if p.searched} for o in spec.optimizers}
params = [{k: f"1 - {charts.sci(1 - v)}" if searched[r["optimizer"]][k].one_minus else v  # 0.9999: 1 - 1.00e-04
           for k, v in trials.loc[r["run_id"]].items() if k in searched[r["optimizer"]] and pd.notna(v)}
          for r in rows]  # the values tuning chose; the fixed ones are in the snippets
scoring = ""
if spec.objective.name == "steps_to_target":
    target = spec.objective.target
    scores = charts.best_scores(rows, target=target,
                                budgets=[data.total_steps(spec, int(r["params"].get("batch_size", 1))) for r in rows])
    scoring = (f" steps_to_target counts the steps until the training loss first reaches {target:.3g}; a run that "
               "never does is shown as not reached, with its final loss (in mean: the median over the seeds). Its "
               "stored score, steps × (1 + log10(final loss / target)), more than its step budget, only ranks: "
               "every miss after every hit, nearer misses first.")
else:
    scores = charts.best_scores(rows)
st.caption(f"Objective: {spec.objective.name} (lower is better); mean, spread and rank over the re-evaluation seeds. "
           "Best first: re-evaluated configurations by their mean, then the others by their trial's objective."
           + scoring)
st.dataframe(scores, hide_index=True, width="stretch", height="content")
parameters = charts.best_parameters(rows, params)
st.caption("The searched parameters of each, in search-space terms; the study file fixes the others, and the "
           "snippets below give every one.")
st.dataframe(parameters, hide_index=True, width="stretch", height="content", column_config={
    column: st.column_config.TextColumn(width=pixels) for column, pixels in charts.column_widths(parameters).items()})
left, right, _ = st.columns([1, 1, 4])
left.download_button("CSV", best_as_csv(rows), file_name=f"{name}-best.csv", mime="text/csv")
right.download_button("JSON", best_as_json(rows), file_name=f"{name}-best.json", mime="application/json")

st.subheader("Paste it")
labels = {f"{r['optimizer']} · {r['sampler']}": r for r in rows}
winner = next(iter(labels))
# keyed by the experiment and its winner: a choice made for another experiment (or before a new best) is not kept
chosen = labels[st.selectbox("configuration", list(labels), index=0, key=f"paste {name} {winner}",
                             help=f"preselected: the best, {winner}")]
config, total_steps = chosen["params"], int(trials.loc[chosen["run_id"], "steps"])
torch_tab, study_tab = st.tabs(["torch.optim", "study file"])
torch_tab.code(torch_snippet(config), language="python", wrap_lines=True)
study_tab.code(study_snippet(config, total_steps), language="yaml", wrap_lines=True)
