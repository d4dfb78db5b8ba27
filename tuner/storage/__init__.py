"""Everything tuner keeps in SQL: Optuna's storage and tuner's tables over one engine.

``store`` writes (the only module that does), ``queries`` reads, ``engine`` finds and opens
databases, ``schema`` and ``migrations`` define tuner's tables.
"""

from tuner.storage.engine import DEFAULT_URL, reader_engine, resolve_url
from tuner.storage.records import StudyRow
from tuner.storage.store import Store

__all__ = ["DEFAULT_URL", "Store", "StudyRow", "reader_engine", "resolve_url"]
