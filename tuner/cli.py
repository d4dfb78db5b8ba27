"""The ``tuner`` command. User errors print one clear message (exit 2), never a traceback."""

import os
import shlex
import signal
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from tuner.errors import ConfigError, check_range, shown
from tuner.safe_yaml import parse_yaml

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tuner.suite import Suite

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console(markup=False, emoji=False)
"""Every string is printed as it is, never read as Rich markup or emoji codes: experiment names are
users' text (``mlp [baseline]``, ``sweep [/] v2``, ``:rocket:``). Styles are given as Text or style=."""

StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="Database URL; default: $TUNER_STORAGE, else sqlite:///tuner.db.")]
LaunchStorageOption = Annotated[str | None, typer.Option(
    "--storage", help="Database URL; default: $TUNER_STORAGE, else the study file's, else sqlite:///tuner.db.")]
ExperimentArgument = Annotated[str | None, typer.Argument(
    help="The experiment's name (the study file's name); may be left out when the storage holds one.")]
NO_EXPERIMENTS = "no experiments yet: run tuner launch studies/quickstart.yaml"


def show_version(value: bool) -> None:
    """``--version``: the installed package's version (importlib.metadata), exit 0."""
    if value:
        typer.echo(f"tuner {version('tuner')}")
        raise typer.Exit()


@app.callback()
def main_options(
    print_version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                    help="Print tuner's version and exit.")] = False,
) -> None:
    """Tune gradient-descent optimizers with Optuna."""


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def parse_options(pairs: list[str]) -> dict:
    """``["dim=10", "hidden_sizes=[32, 16]"]`` -> ``{"dim": 10, "hidden_sizes": [32, 16]}`` (YAML values,
    read as study files are: ``tuner.safe_yaml``)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {shown(pair)} is not allowed; allowed: KEY=VALUE")
        if key.strip() in options:
            raise ConfigError(f"--option {shown(key.strip())} is given twice; allowed: each option once")
        options[key.strip()] = parse_yaml(value, f"--option {shown(key.strip())}")
    return options


@app.command()
def launch(
    study_file: Annotated[Path, typer.Argument(
        help="A study file, e.g. studies/quickstart.yaml, or a suite file, e.g. suites/algoperf_small.yaml.")],
    workers: Annotated[int, typer.Option(help="Local worker processes (0: only create the experiment).")] = (
        os.cpu_count() or 1),
    storage: LaunchStorageOption = None,
) -> None:
    """Create or resume an experiment, tune it with local workers, re-evaluate and print the best
    (a suite file: each of its experiments in turn, then the suite's scores)."""
    from tuner import urls
    from tuner.launch import DONE, EXIT_CODES, STOPS
    from tuner.launch import launch as run_launch
    from tuner.safe_yaml import load_yaml
    from tuner.spec import parse_experiment
    from tuner.storage.engine import resolve_url
    from tuner.suite import is_suite, parse_suite

    if workers < 0:
        raise fail(f"--workers={workers} is not allowed; allowed: 0 or more")
    try:
        data = load_yaml(study_file)
        if is_suite(data):
            raise typer.Exit(EXIT_CODES[_launch_suite(parse_suite(data, str(study_file)), storage, workers)])
        spec = parse_experiment(data, str(study_file))
        url = resolve_url(storage, spec.storage)
        outcome = run_launch(spec, url, workers, console)
        if outcome == DONE and workers:
            _print_best(url, spec.name, per_optimizer=True)
            pasted = shlex.quote(urls.shown(url))  # commands to paste: quoted, and never wrapped by Rich
            console.print(f"\nQuery the winners:   tuner best {shlex.quote(spec.name)} --storage {pasted}",
                          soft_wrap=True)
            console.print(f"See the curves:      tuner dashboard --storage {pasted}", soft_wrap=True)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:  # while the winners are printed: everything is stored already
        outcome = STOPS[signal.SIGINT]
    raise typer.Exit(EXIT_CODES[outcome])


def _launch_suite(suite: "Suite", storage: str | None, workers: int) -> str:
    """``tuner launch`` of a suite file: each task's experiment in turn (``launch_suite``), then the
    suite's scores and the commands that show them again; the launch's outcome."""
    from tuner import urls
    from tuner.launch import DONE, launch_suite
    from tuner.storage.engine import resolve_url

    url = resolve_url(storage, suite.storage)
    outcome = launch_suite(suite, url, workers, console)
    if outcome == DONE and workers:
        _print_suite(url, suite.suite, "steps", "table")
        pasted = shlex.quote(urls.shown(url))  # as the study file's hints
        console.print(f"\nQuery the scores:    tuner best --suite {suite.suite} --storage {pasted}", soft_wrap=True)
        console.print(f"See the profiles:    tuner dashboard --storage {pasted}", soft_wrap=True)
    return outcome


def _print_suite(url: str, suite: str, unit: str, fmt: str) -> None:
    """The scores of ``suite`` (``tuner.suite_scores``) with times in ``unit``, as ``fmt``."""
    from tuner import suite_scores

    engine = _reader(url)
    try:
        result = suite_scores.scores(engine, suite, unit)
    finally:
        engine.dispose()
    if fmt == "json":
        typer.echo(suite_scores.as_json(result))
    elif fmt == "csv":
        typer.echo(suite_scores.as_csv(result), nl=False)
    else:
        console.print(suite_scores.table(result))
        console.print(suite_scores.time_table(result))
        for line in suite_scores.notes(result):
            console.print(line, soft_wrap=True)


def _only_experiment(engine: "Engine") -> str:
    """The name of the storage's one experiment, for a command whose EXPERIMENT is left out;
    ConfigError when the storage holds none or several (listed)."""
    from tuner.storage import queries

    names = queries.experiment_names(engine)
    if not names:
        raise ConfigError(NO_EXPERIMENTS)
    if len(names) > 1:
        raise ConfigError(f"EXPERIMENT is needed: this storage holds {len(names)} experiments; "
                          f"allowed: {queries.shown_names(names)}")
    return names[0]


def _reader(url: str) -> "Engine":
    """A reader on ``url`` (``reader_engine``: ConfigError when it cannot be read), with a note on
    stderr when it is read as a snapshot (``snapshot_note``)."""
    from tuner.storage.engine import reader_engine, snapshot_note

    engine = reader_engine(url)
    if note := snapshot_note(url):
        typer.echo(f"note: {note}", err=True)
    return engine


def _print_best(url: str, name: str | None, *, per_optimizer: bool, optimizer: str | None = None,
                sampler: str | None = None, fmt: str = "table") -> None:
    """The best configurations of experiment ``name`` (None: the storage's only one) as ``fmt``."""
    from tuner import report
    from tuner.rankings import best_ranked
    from tuner.spec import stored_experiment
    from tuner.storage import queries
    from tuner.theory import theory_gap

    engine = _reader(url)
    try:
        name = _only_experiment(engine) if name is None else name
        rows, ranking = best_ranked(engine, name, optimizer, sampler, per_optimizer=per_optimizer)
        spec = stored_experiment(queries.experiment(engine, name)[1], name)
    finally:
        engine.dispose()
    if ranking.note:
        typer.echo(f"note: {ranking.note}", err=True)
    if fmt == "json":
        typer.echo(report.best_as_json(rows))
    elif fmt == "csv":
        typer.echo(report.best_as_csv(rows), nl=False)
    else:
        if not rows:
            console.print(f"experiment {shown(name)} has no completed trial yet")
            return
        title = "best configuration per optimizer" if per_optimizer else "best configuration per optimizer and sampler"
        console.print(Text.assemble("experiment ", (name, "bold")))
        console.print(report.best_table(rows, spec.objective.name, title))
        console.print(report.best_configurations(rows))
        if gap := theory_gap(spec.task.name, spec.task.options, rows, spec.objective.name):
            console.print(report.theory_gap_table(gap))


@app.command()
def worker(
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment to work on.")],
    storage: StorageOption = None,
    max_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
) -> None:
    """Join an experiment from any machine: run trials until its budget is met, then re-evaluate the
    winners (SIGTERM, SIGINT and SIGHUP stop cleanly, exit 128 + the signal's number)."""
    from tuner.storage.engine import resolve_url
    from tuner.worker import worker_id, worker_process

    if max_trials is not None and max_trials < 1:
        raise fail(f"--max-trials={max_trials} is not allowed; allowed: 1 or more")
    try:
        end = worker_process(resolve_url(storage), experiment, worker_id(), max_trials)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if end.stopped_by is None:
        console.print(f"worker done: {end.trials} trial(s) run")
        return
    typer.echo(f"worker stopped by {signal.Signals(end.stopped_by).name} after {end.trials} trial(s); its trial "
               "in flight runs again later: start a worker again to go on")
    raise typer.Exit(128 + end.stopped_by)


@app.command()
def best(
    experiment: ExperimentArgument = None,
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Only this sampler.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",  # noqa: A002
    storage: StorageOption = None,
    suite: Annotated[str | None, typer.Option(
        help="Rank the optimizers of this suite across its tasks (AlgoPerf score) instead.")] = None,
    unit: Annotated[str | None, typer.Option(
        help="With --suite: time to target in steps (default) or seconds.")] = None,
) -> None:
    """The best configuration per optimizer and sampler, ready to paste; or a suite's score table."""
    from tuner.storage.engine import resolve_url

    if format not in ("table", "json", "csv"):
        raise fail(f"--format={shown(format)} is not allowed; allowed: table, json, csv")
    if suite is not None or unit is not None:
        return _best_suite(suite, unit, format, storage, experiment=experiment, optimizer=optimizer, sampler=sampler)
    try:
        _print_best(resolve_url(storage), experiment, per_optimizer=False, optimizer=optimizer, sampler=sampler,
                    fmt=format)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _best_suite(suite: str | None, unit: str | None, fmt: str, storage: str | None, **others: str | None) -> None:
    """``tuner best --suite NAME [--unit steps|seconds]``: the suite's score table as ``fmt``."""
    from tuner.storage.engine import resolve_url
    from tuner.suite_scores import UNITS

    if suite is None:
        raise fail("--unit is allowed only with --suite")
    given = [f"--{name}" if name != "experiment" else "EXPERIMENT" for name, value in others.items() if value]
    if given:
        raise fail(f"{given[0]} is not allowed with --suite, which ranks every optimizer of the suite's experiments")
    if unit is not None and unit not in UNITS:
        raise fail(f"--unit={shown(unit)} is not allowed; allowed: {', '.join(UNITS)}")
    try:
        _print_suite(resolve_url(storage), suite, unit or UNITS[0], fmt)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@app.command("tunability")
def tunability_command(
    experiment: ExperimentArgument = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",  # noqa: A002
    storage: StorageOption = None,
) -> None:
    """What a budget of k trials buys: expected best of k random-search trials, omega summaries,
    the winner at each budget."""
    from tuner import report
    from tuner.storage import queries
    from tuner.storage.engine import resolve_url
    from tuner.tunability import tunability

    if format not in ("table", "json", "csv"):
        raise fail(f"--format={shown(format)} is not allowed; allowed: table, json, csv")
    try:
        engine = _reader(resolve_url(storage))
        experiment = _only_experiment(engine) if experiment is None else experiment
        result = tunability(engine, experiment)
        objective = queries.experiment(engine, experiment)[1]["objective"]["name"]
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if format == "json":
        typer.echo(report.tunability_as_json(result))
    elif format == "csv":
        typer.echo(result.frame().to_csv(index=False), nl=False)
    elif not result.curves:
        console.print(f"experiment {shown(experiment)} has no finished trial yet")
    else:
        console.print(Text.assemble("experiment ", (experiment, "bold")))
        for table in report.tunability_tables(result, objective):
            console.print(table)


@app.command()
def status(
    experiment: ExperimentArgument = None,
    storage: StorageOption = None,
) -> None:
    """Progress of every study: finished, pruned, diverged, failed, running."""
    from tuner import report
    from tuner.spec import stored_experiment
    from tuner.storage import queries
    from tuner.storage.engine import resolve_url

    try:
        engine = _reader(resolve_url(storage))
        experiment = _only_experiment(engine) if experiment is None else experiment
        experiment_id, spec_dict = queries.experiment(engine, experiment)
        spec = stored_experiment(spec_dict, experiment)
        rows = queries.studies(engine, experiment_id)
        runs = queries.run_states(engine, experiment_id)
        optuna_counts = queries.optuna_states(engine, [r.study_name for r in rows])
        reevaluations = len(queries.reevaluated(engine, experiment_id))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    console.print(Text.assemble("experiment ", (spec.name, "bold"),
                                f" on {spec.task.name}; objective {spec.objective.name}"))
    console.print(report.status_table(rows, runs, optuna_counts))
    console.print(f"re-evaluation runs: {reevaluations} of {len(rows) * spec.reevaluate}")


@app.command("list")
def list_experiments(storage: StorageOption = None) -> None:
    """Experiments in a storage."""
    from rich.table import Table

    from tuner.storage import queries
    from tuner.storage.engine import resolve_url

    try:
        engine = _reader(resolve_url(storage))
        found = queries.experiments(engine)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not found:
        console.print(NO_EXPERIMENTS)
        return
    table = Table()
    table.add_column("experiment", overflow="fold")  # a long name is folded onto more lines, never cut with …
    for column in ("task", "studies", "trials finished", "created"):
        table.add_column(column)
    for e in found:
        table.add_row(e["name"], e["task"], str(e["studies"]), f"{e['done']}/{e['total']}",
                      f"{e['created_at']:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command()
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """Open the read-only Streamlit dashboard on http://HOST:PORT."""
    import dashboard as package
    from tuner import urls
    from tuner.storage.engine import resolve_url

    try:
        url = resolve_url(storage)
        _reader(url).dispose()  # answer here, before the server starts, when it cannot be read
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not 0 < port < 65536:
        raise fail(f"--port={port} is not allowed; allowed: 1-65535")
    app_file = Path(package.__file__).parent / "app.py"
    typer.echo(f"dashboard of {urls.shown(url)} on http://{host}:{port}", err=True)
    os.environ["TUNER_STORAGE"] = url  # not in argv, which every user of the machine can read (ps)
    os.execv(sys.executable, [
        sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ])


@app.command()
def gradcheck(
    task: Annotated[str, typer.Argument(help="Task name, e.g. mlp, quadratic.")],
    option: Annotated[list[str], typer.Option("--option", "-o", help="Task option KEY=VALUE (repeatable).")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed of the point and batch checked.")] = 0,
    tolerance: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
) -> None:
    """Compare TASK's analytic gradient with central differences (float64)."""
    from tuner.gradcheck import gradcheck as check

    try:
        check_range("--seed", seed, 0, integer=True)
        check_range("--tolerance", tolerance, 0, low_open=True)
        result = check(task, parse_options(option), seed=seed)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    verdict = "ok" if result.passed(tolerance) else "FAILED"
    typer.echo(
        f"{result.task}: {verdict}  relative error {result.relative_error:.2e} "
        f"(max abs {result.max_abs_error:.2e}) over {result.checked} of {result.dim} coordinates"
    )
    if verdict != "ok":
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
