"""The ``tuner`` command."""

from typing import Annotated

import typer
import yaml

from tuner.errors import ConfigError

app = typer.Typer(help="Tune gradient-descent optimizers with Optuna.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


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
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    verdict = "ok" if result.passed(tolerance) else "FAILED"
    typer.echo(
        f"{result.task}: {verdict}  relative error {result.relative_error:.2e} "
        f"(max abs {result.max_abs_error:.2e}) over {result.checked} of {result.dim} coordinates"
    )
    if verdict != "ok":
        raise typer.Exit(1)


@app.callback()
def main() -> None:
    """Tune gradient-descent optimizers with Optuna."""
