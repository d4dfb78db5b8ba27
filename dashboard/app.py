"""tuner's dashboard: ``tuner dashboard [--storage URL]`` or ``TUNER_STORAGE=URL streamlit run dashboard/app.py``.

Read-only. The sidebar picks the experiment that every page shows.
"""

import streamlit as st

from dashboard import data
from dashboard.verbatim import code
from tuner.errors import ConfigError
from tuner.storage.engine import snapshot_note
from tuner.urls import shown

st.set_page_config(page_title="tuner", page_icon=":material/monitoring:", layout="wide")
PAGES = [
    st.Page("views/experiments.py", title="Experiments", icon=":material/list:", default=True),
    st.Page("views/convergence.py", title="Convergence", icon=":material/show_chart:"),
    st.Page("views/samplers.py", title="Samplers", icon=":material/casino:"),
    st.Page("views/sensitivity.py", title="Sensitivity", icon=":material/tune:"),
    st.Page("views/best.py", title="Best configurations", icon=":material/emoji_events:"),
    st.Page("views/suites.py", title="Suites", icon=":material/stacked_line_chart:"),
    st.Page("views/rankings.py", title="How sure are we", icon=":material/leaderboard:"),
]
page = st.navigation(PAGES)

try:
    url = data.storage_url()
except ConfigError as exc:
    st.error(code(str(exc)))
    st.stop()
st.sidebar.caption(f"storage: {code(shown(url))}")
if note := snapshot_note(url):
    st.sidebar.caption(code(note))
problem = data.problem(url)
if problem:
    st.info(code(problem))
    st.stop()
names = data.experiment_names(url)
if not names:
    st.info("This storage has no experiment yet. Create one with `tuner launch studies/quickstart.yaml`.")
    st.stop()
chosen = st.session_state.get("experiment")
chosen = chosen if chosen in names else names[-1]  # the newest
# a plain session key, not a widget key: Streamlit forgets a widget's key when the page changes
st.session_state["experiment"] = st.sidebar.selectbox("Experiment", names, index=names.index(chosen))
page.run()
