"""How much the sampler mattered: best-so-far objective against trial number, random search as the baseline."""

from functools import partial

import streamlit as st

from dashboard import charts, data
from dashboard.verbatim import code
from tuner.samplers import BASELINE
from tuner.storage.records import COMPLETE

url = data.storage_url()
name = st.session_state["experiment"]
spec = data.spec(url, name)
st.title("Samplers")
trials = data.trial_outcomes(url, name)
if not (trials["state"] == COMPLETE).any():
    st.info(f"{code(name)} has no completed trial yet: best-so-far curves appear as soon as one finishes.")
    st.stop()

left, right = st.columns([3, 1])
band = left.radio("band over repeats", list(charts.BANDS), horizontal=True)
log_y = right.toggle("log scale", value=bool((trials["objective"].dropna() > 0).all()))
progress = charts.best_so_far(trials, budget=spec.trials)
stats = charts.spread(progress, ["optimizer", "sampler"], "trial", "trial", band)
show, budget, misses = charts.sci, None, ""
if spec.objective.name == "steps_to_target":
    budgets = set(data.step_budgets(spec, trials))
    budget = budgets.pop() if len(budgets) == 1 else None
    if budget is not None:
        show = partial(charts.steps_to_target, total_steps=budget, target=spec.objective.target)
        misses = (f" A score above the step budget ({budget}) did not reach the target: it is "
                  "steps × (1 + log10(final loss / target)), which only ranks misses, nearer first.")
    else:
        misses = (" A score above its run's step budget (which depends on the batch size here) did not reach the "
                  "target: it is steps × (1 + log10(final loss / target)), which only ranks misses, nearer first.")
drawn = charts.thinned(stats, ["optimizer", "sampler"], "trial")  # the same lines, through fewer points
st.plotly_chart(charts.sampler_figure(drawn, log_y=log_y, y_title=f"best {spec.objective.name} so far", budget=budget),
                width="stretch")
st.caption(f"Objective: {spec.objective.name} (lower is better). Median over {spec.repeats} repeat(s) per sampler; "
           "a trial that did not complete keeps the best so far; a repeat without a completed trial yet counts as "
           "the worst, so a line starts where its median is finite." + misses)

if BASELINE not in set(trials["sampler"]):
    st.info(f"This experiment has no random-search baseline: add `{BASELINE}` to its samplers to compare against it.")
elif trials["sampler"].nunique() < 2:
    st.info("Only random search ran: add `tpe` (or another sampler) to the study file to compare samplers.")
else:
    st.subheader("Trials needed to match random search's final best")
    st.dataframe(charts.trials_to_match(stats, show=show), hide_index=True, width="stretch",
                 column_config={"trials to match": st.column_config.TextColumn(
                     help="first trial at which the sampler's median best-so-far reaches random search's final "
                          "median best; -: not within its trials")})
