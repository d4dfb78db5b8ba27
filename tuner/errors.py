"""The root exception and the error raised for bad user input."""

from pydantic import ValidationError


class TunerError(Exception):
    """Root of every error tuner raises on purpose."""


class ConfigError(TunerError, ValueError):
    """A user-supplied value is invalid; the message names the field, the value and what is allowed."""


def check_range(
    field: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """Return ``value`` if it lies in the interval, else raise ConfigError naming ``field``."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        kind = "an integer" if integer else "a number"
        raise ConfigError(
            f"{field}={value!r} is not allowed; allowed: {kind} in {left}{lo}, {hi}{right}"
        )
    return value


def check_options(owner: str, given: dict, allowed: "list[str] | tuple[str, ...]") -> None:
    """Raise ConfigError if ``given`` has a key that ``owner`` does not accept."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for {owner}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )


def from_validation_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """One ConfigError listing every problem as ``field.path=value: what is allowed``."""
    lines = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field")
        elif not err["loc"] or message.startswith(path):
            lines.append(message if message.startswith(path) else f"{path}: {message}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required field is missing")
        else:
            lines.append(f"{path}={err['input']!r}: {message}")
    return ConfigError("\n".join(lines))
