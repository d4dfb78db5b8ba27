"""The ``tuner`` command. User errors print one clear message (exit 2), never a traceback."""

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from tuner.errors import ConfigError

app = typer.Typer(help="Tune gradient-descent optimizers with Optuna.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()

StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="Database URL; default: $TUNER_STORAGE, else the study file's, else sqlite:///tuner.db.")]


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def parse_options(pairs: list[str]) -> dict:
    """``["dim=10", "hidden_sizes=[32, 16]"]`` -> ``{"dim": 10, "hidden_sizes": [32, 16]}`` (YAML values)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r} is not allowed; allowed: KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return options


@app.command()
def launch(
    study_file: Annotated[Path, typer.Argument(help="A study file, e.g. studies/quickstart.yaml.")],
    workers: Annotated[int, typer.Option(help="Local worker processes (0: only create the experiment).")] = (
        os.cpu_count() or 1),
    storage: StorageOption = None,
) -> None:
    """Create or resume an experiment, tune it with local workers, re-evaluate and print the best."""
    from tuner.launch import DONE, INTERRUPTED
    from tuner.launch import launch as run_launch
    from tuner.spec import load_experiment
    from tuner.storage.engine import resolve_url
    from tuner.urls import shown

    if workers < 0:
        raise fail(f"--workers={workers} is not allowed; allowed: 0 or more")
    try:
        spec = load_experiment(study_file)
        url = resolve_url(storage, spec.storage)
        outcome = run_launch(spec, url, workers, console)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if outcome != DONE:
        raise typer.Exit(130 if outcome == INTERRUPTED else 1)
    if workers:
        _print_best(url, spec.name, per_optimizer=True)
        console.print(f"\nQuery the winners:   tuner best {shlex.quote(spec.name)} --storage {shown(url)}")
        console.print(f"See the curves:      tuner dashboard --storage {shown(url)}")


def _print_best(url: str, name: str, *, per_optimizer: bool, optimizer: str | None = None,
                sampler: str | None = None, fmt: str = "table") -> None:
    from tuner import report
    from tuner.spec import Experiment
    from tuner.storage import queries
    from tuner.storage.engine import reader_engine

    engine = reader_engine(url)
    try:
        rows = queries.best_configs(engine, name, optimizer, sampler, per_optimizer=per_optimizer)
        spec = Experiment(**queries.experiment(engine, name)[1])
    finally:
        engine.dispose()
    if fmt == "json":
        typer.echo(report.best_as_json(rows))
    elif fmt == "csv":
        typer.echo(report.best_as_csv(rows), nl=False)
    else:
        if not rows:
            console.print(f"experiment {name!r} has no completed trial yet")
            return
        title = "best configuration per optimizer" if per_optimizer else "best configuration per optimizer and sampler"
        console.print(report.best_table(rows, spec.objective.name, title))


@app.command()
def worker(
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment to work on.")],
    storage: StorageOption = None,
    max_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
) -> None:
    """Join an experiment from any machine: run trials until its budget is met (SIGTERM stops cleanly)."""
    from tuner.storage.engine import resolve_url
    from tuner.worker import worker_id, worker_process

    if max_trials is not None and max_trials < 1:
        raise fail(f"--max-trials={max_trials} is not allowed; allowed: 1 or more")
    try:
        ran = worker_process(resolve_url(storage), experiment, worker_id(), max_trials)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    console.print(f"worker done: {ran} trial(s) run")


@app.command()
def best(
    experiment: Annotated[str, typer.Argument(help="The experiment's name (the study file's name).")],
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Only this sampler.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",  # noqa: A002
    storage: StorageOption = None,
) -> None:
    """The best configuration per optimizer and sampler, ready to paste."""
    from tuner.storage.engine import resolve_url

    if format not in ("table", "json", "csv"):
        raise fail(f"--format={format!r} is not allowed; allowed: table, json, csv")
    try:
        _print_best(resolve_url(storage), experiment, per_optimizer=False, optimizer=optimizer, sampler=sampler,
                    fmt=format)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@app.command()
def status(
    experiment: Annotated[str, typer.Argument(help="The experiment's name.")],
    storage: StorageOption = None,
) -> None:
    """Progress of every study: finished, pruned, diverged, failed, running."""
    from tuner import report
    from tuner.spec import Experiment
    from tuner.storage import queries
    from tuner.storage.engine import reader_engine, resolve_url

    try:
        engine = reader_engine(resolve_url(storage))
        experiment_id, spec_dict = queries.experiment(engine, experiment)
        spec = Experiment(**spec_dict)
        rows = queries.studies(engine, experiment_id)
        runs = queries.run_states(engine, experiment_id)
        optuna_counts = queries.optuna_states(engine, [r.study_name for r in rows])
        reevaluations = len(queries.reevaluated(engine, experiment_id))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    console.print(f"experiment [bold]{spec.name}[/] on {spec.task.name}; objective {spec.objective.name}")
    console.print(report.status_table(rows, runs, optuna_counts))
    console.print(f"re-evaluation runs: {reevaluations} of {len(rows) * spec.reevaluate}")


@app.command("list")
def list_experiments(storage: StorageOption = None) -> None:
    """Experiments in a storage."""
    from rich.table import Table

    from tuner.storage import queries
    from tuner.storage.engine import reader_engine, resolve_url

    try:
        engine = reader_engine(resolve_url(storage))
        found = queries.experiments(engine)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not found:
        console.print("no experiments yet: run tuner launch studies/quickstart.yaml")
        return
    table = Table()
    for column in ("experiment", "task", "studies", "trials finished", "created"):
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
    from tuner.storage.engine import resolve_url
    from tuner.urls import shown

    try:
        url = resolve_url(storage)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not 0 < port < 65536:
        raise fail(f"--port={port} is not allowed; allowed: 1-65535")
    app_file = Path(package.__file__).parent / "app.py"
    typer.echo(f"dashboard of {shown(url)} on http://{host}:{port}", err=True)
    os.execv(sys.executable, [
        sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--storage", url,
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
