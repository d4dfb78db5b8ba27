"""Users' text (experiment names, storage URLs, messages that quote values) in Streamlit's Markdown
(``st.info``, ``st.error``, ``st.caption``, ``st.subheader``), shown as typed."""

import re


def code(text: str) -> str:
    """``text`` as a Markdown code span, which Streamlit shows as typed: inside one, no link, image,
    emphasis, ``:red[...]`` directive, ``:emoji:`` code, LaTeX or HTML is read. The fence is one
    backtick longer than ``text``'s longest run of backticks, and a space pads each side (CommonMark
    strips one from each). Line breaks become spaces, as CommonMark shows them in a code span; left
    in, a blank line would end the span. (Streamlit rewrites ``:material/`` as ``:material_``
    before parsing, even in code.)"""
    text = re.sub(r"\r\n?|\n", " ", text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"
