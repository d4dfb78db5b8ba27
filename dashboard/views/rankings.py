"""How sure are we: the best configurations ranked with 95% bootstrap intervals and tied ranks,
the probability that one beats another, and what a budget of k trials buys."""

import pandas as pd
import streamlit as st

from dashboard import data, ranking_charts
from dashboard.verbatim import code
from tuner.report import interval

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("How sure are we")
rows, ranking = data.ranking(url, name)
if rows.empty:
    st.info(f"{code(name)} has no completed trial yet: rankings appear as soon as one finishes.")
    st.stop()

st.subheader("Rankings")
if ranking.note:
    st.warning(ranking.note)
table = pd.DataFrame({
    "rank": rows["rank"], "optimizer": rows["optimizer"], "sampler": rows["sampler"],
    "mean [95% CI]": [interval(r.mean, r.mean_low, r.mean_high) for r in rows.itertuples()],
    "median [95% CI]": [interval(r.median, r.median_low, r.median_high) for r in rows.itertuples()],
    "runs": rows["runs"], "diverged": rows["reeval_diverged"],
    "P(beats next)": ["-" if b is None else interval(b.value, b.low, b.high) for b in rows["beats_next"]],
})
st.dataframe(table, hide_index=True, width="stretch")
st.caption(f"Objective: {spec.objective.name} (lower is better), over each best configuration's re-evaluation runs "
           f"on fresh seeds ({spec.reevaluate} per repeat), stratified over repeats. Rows whose intervals overlap "
           "the best interval of their group share its ranks (\"1-3\"). P(beats next): the chance that a run of this "
           "configuration scores lower than a run of the next row's (ties count one half; a diverged run loses).")
st.plotly_chart(ranking_charts.ranking_figure(rows, spec.objective.name), width="stretch")
if len(ranking.rows) > 1 and ranking.improvements:
    with st.expander("Probability of improvement, every pair"):
        st.plotly_chart(ranking_charts.improvement_figure(ranking), width="stretch")

st.subheader("Tunability: what a budget of k trials buys")
result = data.tunability(url, name)
log_y = st.toggle("log scale", value=bool(pd.concat([pd.Series(c.value) for c in result.curves]).dropna().gt(0).all()))
st.plotly_chart(ranking_charts.tunability_figure(result, log_y=log_y), width="stretch")
st.caption("Random search (solid): the expected best objective of k trials drawn from its trials (Dodge et al. "
           "2019), with a 95% bootstrap band; a diverged trial never wins a draw, and the chance that all k diverge "
           "is in the table. Adaptive samplers (dashed): the best so far after k trials, median over repeats. A "
           "dotted line marks a crossover: from there, another optimizer expects the best result.")
if result.omega:
    omega = pd.DataFrame([
        {"optimizer": optimizer, "sampler": sampler, "one-shot (k=1)": o.one_shot,
         "P(k=1 diverges)": next(c.failed[0] for c in result.curves
                                 if (c.optimizer, c.sampler) == (optimizer, sampler) and c.kind == "expected"),
         "peak (k=K)": o.peak, "CPE": o.cpe, "CPU": o.cpu, "CPL": o.cpl}
        for (optimizer, sampler), o in result.omega.items()])
    st.dataframe(omega, hide_index=True, width="stretch", column_config={
        column: st.column_config.NumberColumn(format="%.3g") for column in omega.columns[2:]})
    st.caption("Omega tunability (Sivaprasad et al. 2020) of the expected curve: one-shot (k=1), peak (k=K), and "
               "its averages over k weighted towards small budgets (CPE, weights K-k+1), uniformly (CPU) and towards "
               "large budgets (CPL, weights k).")
    winners = " · ".join(f"k={w.first}" + (f"-{w.last}" if w.last > w.first else "") + f": {w.optimizer}"
                         for w in result.winners)
    st.markdown(f"**Winner by budget (random search):** {winners}")
else:
    st.info("Expected best of k trials needs random search: add `random` to the experiment's samplers.")
