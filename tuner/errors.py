"""The root exception, the error raised for bad user input, and how messages show values."""

import json
import math
from typing import Any

from pydantic import ValidationError

SHOWN_CHARACTERS = 60
"""Longer values are cut in messages: a message is one line a user can read."""


class TunerError(Exception):
    """Root of every error tuner raises on purpose."""


class ConfigError(TunerError, ValueError):
    """A user-supplied value is invalid; the message names the field, the value and what is allowed.

    ``allowed`` repeats what is allowed on its own, for callers that name the field differently
    (a study file's ``optimizers.0.space.beta2`` for the constructor's ``betas[1]``)."""

    def __init__(self, message: str, *, allowed: str | None = None) -> None:
        super().__init__(message)
        self.allowed = allowed


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``value`` as a message shows it: a string in single quotes, anything else as YAML/JSON spells
    it (``true``, ``.nan``, ``{"low": 1}``, never a Python repr), control and format characters
    escaped, cut to ``limit`` characters with the full length noted."""
    if isinstance(value, str):
        text = f"'{value}'"
    elif isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if value != value else (".inf" if value > 0 else "-.inf")
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return _cut(escaped(text), limit)


def shown_key(key: Any) -> str:
    """A mapping key as a field path shows it: text unquoted, escaped, cut to 30 characters; any
    other key as ``shown`` spells it (``null``, ``1``)."""
    return _cut(escaped(key), 30) if isinstance(key, str) else shown(key, 30)


def escaped(text: str) -> str:
    r"""``text`` with every character Python does not call printable (NUL, ANSI escapes, newlines,
    bidi overrides, non-ASCII spaces) written as ``\uXXXX``: safe to print on one terminal line."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
                   for c in text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        allowed = f"{'an integer' if integer else 'a finite number'} in {left}{lo}, {hi}{right}"
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: {allowed}", allowed=allowed)
    return value


def check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return ``value`` if it is one of ``choices`` (strings, or None), else raise ConfigError
    naming ``field`` and listing the choices as a study file writes them."""
    if not any(value is choice or (isinstance(value, str) and value == choice) for choice in choices):
        allowed = ", ".join(shown(c) for c in choices)
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: {allowed}", allowed=allowed)
    return value


def check_options(owner: str, given: dict, allowed: "list[str] | tuple[str, ...]") -> None:
    """Raise ConfigError if ``given`` has a key that ``owner`` does not accept."""
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise ConfigError(
            f"unknown option {shown(unknown[0])} for {owner}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )


def from_validation_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """One ConfigError listing every problem as ``field.path=value: what is allowed``, one line each;
    a problem of a list or mapping is left out when one inside it is listed."""
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors:
        if any(len(other["loc"]) > len(err["loc"]) and other["loc"][: len(err["loc"])] == err["loc"]
               for other in errors):
            continue  # a consequence of a problem inside the value, which is reported instead
        path = ".".join(shown_key(part) for part in (prefix, *err["loc"]) if part != "")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field")
        elif not err["loc"] or message.startswith(path):
            lines.append(message if message.startswith(path) else f"{path}: {message}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required field is missing")
        else:
            lines.append(f"{path}={shown(err['input'])}: {message}")
    return ConfigError("\n".join(lines))
