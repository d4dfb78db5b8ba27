"""Everything tuner keeps in SQL: Optuna's storage and tuner's tables over one engine.

``store`` writes (the only module that does), ``queries`` reads, ``engine`` finds and opens
databases, ``schema`` and ``migrations`` define tuner's tables.

Import the module you need (``from tuner.storage import queries``): the package itself loads
none, so that reading does not import the writer's Optuna and Alembic.
"""
