"""A suite's optimizers across its tasks: performance profiles, the AlgoPerf score, and each task's ratios and times."""

import streamlit as st

from dashboard import data, suite_charts
from dashboard.verbatim import code
from tuner.errors import ConfigError
from tuner.profiles import R_MAX
from tuner.suite_scores import UNITS

url = data.storage_url()
name = st.session_state["experiment"]
member = data.spec(url, name).in_suite  # the suite of the sidebar's experiment, if it is a task of one
st.title("Suites")
names = data.suite_names(url)
if not names:
    st.info(f"{code(name)} is not a task of a suite, and this storage has no suite yet. Run one with "
            "`tuner launch suites/algoperf_small.yaml`.")
    st.stop()
left, right = st.columns([3, 1])
shown_first = names.index(member.suite) if member and member.suite in names else len(names) - 1  # names: cached
suite = left.selectbox("suite", names, index=shown_first)
unit = right.radio("time to target in", list(UNITS), horizontal=True)
if member is None:
    st.caption(f"{code(name)} is not a task of a suite.")
try:
    result = data.suite_results(url, suite, unit)
except ConfigError as exc:  # not all of its experiments stored, or not finished
    st.info(code(str(exc)))
    st.stop()

st.plotly_chart(suite_charts.profile_figure(result), width="stretch")
st.caption(f"Performance profiles over {len(result.tasks)} tasks: the fraction of tasks on which an optimizer reached "
           f"the target within tau times the fastest one's time ({unit}). Its time on a task is the median over "
           f"{result.studies} studies of the fastest of {result.trials} trials; a missed target never counts.")

st.subheader("AlgoPerf score")
st.dataframe(suite_charts.score_table(result), hide_index=True, width="stretch",
             column_config={"score": st.column_config.NumberColumn(
                 format="%.3f", help=f"the area under the profile from 1 to {R_MAX:g}, divided by {R_MAX - 1:g}: "
                                     "1 for the fastest on every task, 0 for one that missed every target")})
if result.unreached:
    st.warning(f"No optimizer reached the target of {', '.join(result.unreached)}: a miss for every one "
               "(raise its budget or its target).")

st.subheader("Ratio to the fastest, per task")
st.dataframe(suite_charts.task_table(result, result.ratios), hide_index=True, width="stretch")
st.subheader(f"Time to target ({unit}), per task")
st.dataframe(suite_charts.task_table(result, result.times), hide_index=True, width="stretch")
st.caption("Empty: the target was missed (in the median study).")
