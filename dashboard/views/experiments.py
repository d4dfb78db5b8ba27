"""Every experiment with its progress; the selected one study by study. Redraws itself while workers run."""

import streamlit as st

from dashboard import data
from dashboard.verbatim import code

url = data.storage_url()
st.title("Experiments")


@st.fragment(run_every=data.REFRESH_S)
def progress() -> None:
    frame = data.experiments(url)
    name = st.session_state["experiment"]
    if name not in set(frame["name"]):  # the listing was cached before this experiment was created
        data.experiments.clear()
        frame = data.experiments(url)
    st.dataframe(
        frame[["name", "task", "progress", "done", "total", "running", "diverged", "failed", "trials_per_min",
               "minutes_left", "created_at"]],  # complete and pruned per study below: the listing fits the page
        hide_index=True, width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", format="percent", min_value=0.0, max_value=1.0,
                                                        width="small"),
            **{column: st.column_config.NumberColumn(column, width="small") for column in ("running", "diverged")},
            "done": st.column_config.NumberColumn("finished", help="complete + pruned + diverged", width="small"),
            "total": st.column_config.NumberColumn("budget", help="trials over all studies", width="small"),
            "failed": st.column_config.NumberColumn("failed", help="crashed or killed workers' trials (retried)",
                                                    width="small"),
            "trials_per_min": st.column_config.NumberColumn("trials/min", format="%.1f", width="small",
                                                            help="over the last 10 minutes of activity"),
            "minutes_left": st.column_config.NumberColumn("minutes left", format="%.1f", width="small"),
            "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        },
    )
    row = frame.set_index("name").loc[name]
    st.subheader(code(name))
    left, middle, right, last = st.columns(4)
    left.metric("finished trials", f"{row['done']} / {row['total']}")
    middle.metric("running now", int(row["running"]))
    right.metric("trials per minute", f"{row['trials_per_min']:.1f}")
    last.metric("time to finish", "done" if row["done"] >= row["total"] else
                "-" if row["minutes_left"] != row["minutes_left"] else f"{row['minutes_left']:.1f} min")
    st.dataframe(data.studies(url, name), hide_index=True, width="stretch")


progress()
