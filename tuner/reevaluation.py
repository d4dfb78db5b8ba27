"""Re-evaluation: each study's best trial trained again on fresh seeds, once the experiment's
budget is met, so that the winners are compared on more than the one seed they were tuned on.

Any worker of the experiment runs the pending ones when it finds no trial left to take (a
``tuner launch``'s workers, or ``tuner worker`` processes started by hand or by docker compose).
The runs table coordinates them: a re-evaluation is pending until its run is stored (one per
source trial and seed, a unique key), each worker takes the pending ones in its own order and
looks again before each, and a second copy of a run that two workers made at once is dropped.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tuner.objective import Budget, run_config, summarize
from tuner.spec import Experiment
from tuner.storage import queries
from tuner.storage.store import Store
from tuner.tasks import Task

REEVALUATION_SEED = 1_000_000
"""Re-evaluation seeds start here, far from the trials' seeds (a study's repeat index)."""


@dataclass(frozen=True)
class Reevaluation:
    """One fresh-seed run of a study's best configuration."""

    study_id: int
    source_run_id: int
    seed: int
    config: dict[str, Any]


def pending(engine: Engine, spec: Experiment, experiment_id: int) -> list[Reevaluation]:
    """Re-evaluations not stored yet: each study's best trial on seeds 1e6 .. 1e6 + reevaluate - 1."""
    done = queries.reevaluated(engine, experiment_id)
    return [
        Reevaluation(best["study_id"], best["id"], seed, best["params"])
        for best in queries.best_trials(engine, experiment_id)
        for seed in range(REEVALUATION_SEED, REEVALUATION_SEED + spec.reevaluate)
        if (best["id"], seed) not in done
    ]


def run_pending(store: Store, spec: Experiment, experiment_id: int, task: Task, worker: int,
                should_stop: Callable[[], bool]) -> int:
    """Run the pending re-evaluations, in an order of this worker's own, each one only if it is
    still pending when its turn comes; stop between two evaluations when ``should_stop`` (the run
    in flight is dropped: it stays pending). The number of runs stored."""
    jobs = pending(store.engine, spec, experiment_id)
    random.Random(worker).shuffle(jobs)
    stored = 0
    for job in jobs:
        if should_stop():
            break
        if (job.source_run_id, job.seed) in queries.reevaluated(store.engine, experiment_id):
            continue
        result = run_config(task, job.config, Budget.of(spec), job.seed, on_eval=lambda *_: should_stop())
        if result.stopped_by_caller:
            break
        record = summarize(spec, task, result, job.config, job.seed, kind="reevaluation")
        record.source_run_id = job.source_run_id
        stored += store.save_run(job.study_id, record) is not None
    return stored
