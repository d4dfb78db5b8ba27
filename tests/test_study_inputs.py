"""Study files as a clumsy user or an attacker writes them: every one is refused with one line
naming the field, the value (shortened) and what is allowed, exit 2 and no database; or it runs.

The property tests generate study files from the schema, valid and not, and hold ``tuner launch``
to exactly that: a refusal that leaves no database, or an experiment whose trials all finish.
"""

import math
import os
import re
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tuner.cli import app
from tuner.errors import ConfigError
from tuner.optim import OPTIMIZERS
from tuner.params import Param
from tuner.safe_yaml import MAX_BYTES, parse_yaml
from tuner.space import default_space
from tuner.spec import load_experiment, parse_experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.records import COMPLETE, DIVERGED, PRUNED
from tuner.storage.store import Store
from tuner.worker import run_worker

BASE = {"name": "bad", "task": {"name": "quadratic"}, "optimizers": ["adam"], "samplers": ["random"],
        "trials": 1, "budget": {"steps": 5}, "objective": "final_train_loss", "reevaluate": 0}


def launch(path: Path, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["launch", str(path), "--workers", "0", "--storage", f"sqlite:///{db}"])
    return result.exit_code, result.output


def assert_refused(path: Path, tmp: Path, pattern: str) -> str:
    """``tuner launch`` refuses ``path`` in one line matching ``pattern``, exit 2, no database made."""
    db = tmp / "refused.db"
    code, output = launch(path, db)
    assert code == 2, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert re.search(pattern, lines[0]), lines[0]
    assert not db.exists(), "a refused study file must not create the database"
    return lines[0]


def write(tmp: Path, data: object, name: str = "study.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# the values the issue found accepted, each then crashing the first trial ------------------------
FIXED_VALUES = [
    ({"space": {"lr": "fast"}}, r"space\.lr='fast' is not allowed; allowed: a number"),
    ({"space": {"lr": -0.01}}, r"space\.lr=-0\.01 is not allowed; allowed: a finite number in \(0, inf\)"),
    ({"space": {"lr": [1e-3, 1e-2]}}, r"space\.lr=\[0\.001, 0\.01\]: a list is not allowed; allowed: a value, null"),
    ({"space": {"beta2": 1.0}}, r"space\.beta2=1\.0 is not allowed; allowed: a finite number in \[0, 1\)"),
    ({"space": {"eps": -1e-8}}, r"space\.eps=-1e-08 is not allowed; allowed: a finite number in \[0, inf\)"),
    ({"space": {"weight_decay": -0.1}}, r"space\.weight_decay=-0\.1 is not allowed"),
    ({"optimizers": ["momentum"], "space": {"momentum": 1.5}}, r"space\.momentum=1\.5 is not allowed; allowed: .*\[0, 1\)"),
    ({"space": {"warmup": 2.0}}, r"space\.warmup=2\.0 is not allowed; allowed: a finite number in \[0, 1\)"),
    ({"optimizers": [{"name": "lbfgs", "space": {"history_size": 0}}]},
     r"optimizers\.0\.space\.history_size=0 is not allowed; allowed: an integer in \[1, 1000\]"),
    ({"space": {"lr": {"low": math.nan, "high": 0.1}}}, r"space\.lr\.low=\.nan is not allowed; allowed: a finite number"),
    ({"space": {"lr": {"low": 1e-3, "high": math.inf}}}, r"space\.lr\.high=\.inf is not allowed; allowed: a finite number"),
    ({"space": {"lr": {"low": 1e-3, "high": 0.1, "log": "maybe"}}}, r"space\.lr\.log='maybe' is not allowed; allowed: true or false"),
    ({"space": {"lr": {"choices": [-1, "fast"]}}}, r"space\.lr\.choices\.0=-1 is not allowed"),
    ({"trials": True}, r"trials=true: Input should be a valid integer"),
    ({"task": {"name": "quadratic", "options": {"condition_number": math.inf}}},
     r"task\.options\.condition_number=\.inf is not allowed; allowed: a finite number"),
    ({"space": {"schedule": "exponential", "decay_to": -0.5}}, r"space\.decay_to=-0\.5 is not allowed; allowed: .*\(0, 1\]"),
    ({"space": {"schedule": "step", "step_every": 0}}, r"space\.step_every=0 is not allowed"),
    ({"space": {"schedule": "cosine", "cosine_floor": 2.0}}, r"space\.cosine_floor=2\.0 is not allowed; allowed: a finite number in \[0, 1\]"),
    ({"optimizers": [{"name": "adam", "space": {"amsgrad": "yes"}}]}, r"space\.amsgrad='yes' is not allowed; allowed: true or false"),
    ({"optimizers": [{"name": "adam", "space": {"beta1": {"low": 0.5, "high": 1.0}}}]},
     r"optimizers\.0\.space\.beta1\.high=1\.0 is not allowed"),
    ({"optimizers": [{"name": "adam", "space": {"eps": {"low": 0, "high": 1e-3}}}]},
     r"space\.eps\.low=0: a log-scale range needs low > 0"),
    ({"space": {"lr": {"choices": []}}}, r"space\.lr\.choices=\[\] is not allowed; allowed: a list of one or more"),
    ({"space": {"lr": {"choices": [0.1, 0.1]}}}, r"space\.lr\.choices=\[0\.1, 0\.1\]: each choice may appear once"),
    ({"space": {"lr": {"low": 0.1}}}, r"space\.lr=\{\"low\": 0\.1\} is not allowed; allowed: a value, null"),
    ({"budget": {"steps": 2.5}}, r"budget\.steps=2\.5: Input should be a valid integer"),
    ({"task": {"name": "quadratic", "options": {"dim": True}}}, r"task\.options\.dim=true: Input should be a valid integer"),
    ({"task": {"name": "quadratic", "options": {"problem_seed": -1}}},
     r"task\.options\.problem_seed=-1: Input should be greater than or equal to 0"),
    ({"task": {"name": "mlp", "options": {"hidden_sizes": [100_000, 100_000]}}, "budget": {"epochs": 1},
      "objective": "final_val_loss"}, r"^error: task\.options: hidden_sizes=\[100000, 100000\] on 1797 samples x 64 "
     r"features needs 10,007,400,000 weights; allowed: at most 20,000,000$"),
    ({"task": {"name": "mlp", "options": {"hidden_sizes": [4400] * 16}}, "budget": {"epochs": 1},
      "objective": "final_val_loss"}, r"features needs 290,725,600 weights; allowed: at most 20,000,000$"),
    ({"task": {"name": "softmax", "options": {"dataset": "synthetic", "n_samples": 10_000_000, "n_features": 100_000}},
      "budget": {"epochs": 1}, "objective": "final_val_loss"}, r"too large a data set; allowed: at most 20,000,000 values"),
    ({"task": {"name": "mlp", "options": {"hidden_sizes": [True]}}, "budget": {"epochs": 1}, "objective": "final_val_loss"},
     r"^error: task\.options\.hidden_sizes\.0=true: Input should be a valid integer$"),
    ({"optimizers": [{"name": "adamw", "space": {"schedule": "constant"}}], "samplers": [{"name": "grid", "grid_points": 100}]},
     r"samplers\.0 \(grid\) with optimizers\.0 \(adamw\): the grid has 10,000,000,000 points .*allowed: at most 100,000"),
]


@pytest.mark.parametrize(("changes", "pattern"), FIXED_VALUES, ids=[p for _, p in FIXED_VALUES])
def test_a_value_a_trial_would_refuse_is_refused_when_the_file_is_read(
        changes: dict, pattern: str, tmp_path: Path) -> None:
    line = assert_refused(write(tmp_path, {**BASE, **changes}), tmp_path, pattern)
    assert "{'" not in line, "no Python repr of a dict"


def test_the_cosine_floor_is_checked_against_the_constructor_not_the_default_range(tmp_path: Path) -> None:
    """The default range of a parameter is a search choice, not its rule: 0.5 is no default but runs."""
    spec = parse_experiment({**BASE, "space": {"schedule": "cosine", "cosine_floor": 0.5}})
    assert spec.search_space("adam")


# YAML safety ------------------------------------------------------------------------------------
BOMB = "\n".join(
    [f'l0: &l0 [{", ".join(["x"] * 9)}]']
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 1024
    line = assert_refused(path, tmp_path, r"expands to more than 100000 values")
    assert "x, x" not in line


@pytest.mark.parametrize(("content", "pattern"), [
    (b"name: a\ntrials: 3\nname: b\ntrials: 300\n", r"line 3, column 1: not valid YAML: duplicate key 'name'"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", r"nested too deeply; allowed: at most 50 levels"),
    (b"a: &a [1, *a]\n", r"an alias refers to a node that contains it"),
    ("name: x\n".encode("utf-16"), r"is encoded as UTF-16; save it as UTF-8"),
    ("name: caf\xe9\n".encode("latin-1"), r"line 1: byte 0xe9 is not UTF-8"),
    (b"name: x\x00\n", r"is a binary file, not a YAML study file"),
    (b"", r"the file is empty"),
    (b"# only a comment\n", r"the file is empty"),
    (b"- name: x\n", r"expected a mapping of fields .*; got a list"),
    (b"just words\n", r"expected a mapping of fields .*; got a string"),
    (b"name: [1, 2\ntrials: 3\n", r"^error: [^,]*study\.yaml, line 2, column 7: not valid YAML: expected ',' or ']'"),
    (b"a: 1\n---\nb: 2\n", r"expected a single document in the stream"),
    (b"x: !!python/object:os.system [ls]\n", r"not valid YAML: could not determine a constructor"),
    (yaml.safe_dump(BASE).encode() + b"1: 2\n", r"^error: 1: a key must be a name \(text\); got a number"),
    (yaml.safe_dump(BASE).encode() + b"~: 2\n", r"^error: null: a key must be a name \(text\); got null"),
    (b"trials: !!int abc\n", r"line 1, column 9: not valid YAML: 'abc' cannot be read as !!int$"),
    (b"trials: " + b"9" * 5000 + b"\n", r"line 1, column 9: not valid YAML: '9999.*\(5002 characters\) cannot be read as !!int"),
    (b"budget: {<<: {steps: 5, steps: 500}}\n", r"line 1, column 25: not valid YAML: duplicate key 'steps'"),
    (b"name: !!set {a, b}\n", r"^error: name: a value of YAML type set is not allowed; allowed: text, numbers"),
    (b"name: !!binary aGVsbG8=\n", r"^error: name: a value of YAML type bytes is not allowed"),
    ("name: x\n".encode("utf-16-le"), r"is encoded as UTF-16 \(LE\); save it as UTF-8"),
    ("name: x\n".encode("utf-32-be"), r"is encoded as UTF-32 \(BE\); save it as UTF-8"),
    (b"\x08name: x\n", r"line 1: character U\+0008 is not allowed in YAML"),
])
def test_a_broken_file_gives_one_line(content: bytes, pattern: str, tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    line = assert_refused(path, tmp_path, pattern)
    assert line.count("study.yaml") <= 1, "the file is named once"


def test_scalars_are_read_as_yaml_1_2_reads_them() -> None:
    """Base 60, yes/no and dates are YAML 1.1's: a user writing them means text."""
    data = parse_yaml("a: 1:30\nb: yes\nc: off\nd: 2001-12-14\ne: 1e-3\nf: 010\ng: 0x1F\nh: -.inf\ni: true\n", "s")
    assert data == {"a": "1:30", "b": "yes", "c": "off", "d": "2001-12-14", "e": 0.001, "f": "010", "g": 31,
                    "h": -math.inf, "i": True}
    with pytest.raises(ConfigError, match=r"^trials='1:30': Input should be a valid integer"):
        parse_experiment({**BASE, "trials": parse_yaml("t: 1:30", "s")["t"]})


def test_a_pipe_is_refused_instead_of_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    assert_refused(fifo, tmp_path, r"study\.yaml' is not a regular file \(a pipe or a device\)")


@pytest.mark.parametrize(("optimizer", "param", "choices"), [
    ("momentum", "momentum", [0.5, 0.9]), ("adam", "beta2", [0.9, 0.99]), ("sgd", "batch_size", [16, 32]),
])
def test_the_grid_sampler_searches_choices_of_any_parameter(optimizer: str, param: str, choices: list,
                                                          tmp_path: Path) -> None:
    """A choice is sampled under the user's name (``momentum``), never its numeric form (``one_minus_momentum``)."""
    data = {**BASE, "task": {"name": "softmax", "options": {"dataset": "synthetic", "n_samples": 200, "n_features": 8,
                                                              "n_classes": 3}},
            "budget": {"epochs": 1}, "objective": "final_val_loss", "samplers": ["grid"], "trials": 2,
            "optimizers": [{"name": optimizer, "space": {
                "lr": 0.1, "schedule": "constant", "batch_size": 32, "beta1": 0.9, "eps": 1e-8, param: {"choices": choices},
            }}]}
    data["optimizers"][0]["space"] = {k: v for k, v in data["optimizers"][0]["space"].items()
                                      if k in default_space(optimizer, data_task=True)}  # the grid: the choices alone
    path, db = write(tmp_path, data), tmp_path / "t.db"
    assert launch(path, db)[0] == 0
    store = Store.open(f"sqlite:///{db}", heartbeat=False)
    try:
        assert run_worker(store, "bad") == 2
    finally:
        store.close()
    engine = reader_engine(f"sqlite:///{db}")
    try:
        params = [row["params"] for row in queries.trials(engine, 1).to_dict("records")]
    finally:
        engine.dispose()
    key = "betas" if param == "beta2" else param
    assert sorted(p[key][1] if key == "betas" else p[key] for p in params) == choices


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    assert_refused(path, tmp_path, r"larger than 1 MB")


def test_a_database_given_as_the_study_file_is_named_as_such(tmp_path: Path) -> None:
    db = tmp_path / "tuner.db"
    Store.open(f"sqlite:///{db}", heartbeat=False).close()
    assert_refused(db, tmp_path, r"tuner\.db: is an SQLite database, not a study file")


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(BASE) + "budget: {<<: &b {steps: 5}, eval_every: 5}\n".replace("budget", "x"))
    with pytest.raises(ConfigError, match=r"^x: unknown field$"):
        load_experiment(path)  # parsed (the merge is fine); only the unknown field is refused


# messages ---------------------------------------------------------------------------------------
def test_a_long_value_is_shortened(tmp_path: Path) -> None:
    line = assert_refused(write(tmp_path, {**BASE, "name": "n" * 10_000}), tmp_path, r"at most 200 characters")
    assert len(line) < 300 and "(10002 characters)" in line


@pytest.mark.parametrize("name", ["a\x00b", "red \x1b[31mname", "two\nlines", "tab\there", "bidi\u202etxt", " padded"])
def test_names_with_control_characters_are_refused(name: str, tmp_path: Path) -> None:
    line = assert_refused(write(tmp_path, {**BASE, "name": name}), tmp_path, r"^error: name=")
    assert "\x1b" not in line and "\x00" not in line and "\u202e" not in line


def test_names_that_are_only_unusual_are_allowed() -> None:
    for name in ["mlp [baseline]", "sweep [/] v2", "größe-λ 🚀", "a/b"]:
        assert parse_experiment({**BASE, "name": name}).name == name


def test_the_grid_sampler_message_names_its_fields() -> None:
    data = {**BASE, "samplers": ["random", "grid"], "space": {"schedule": {"choices": ["constant", "step"]}}}
    with pytest.raises(ConfigError, match=r"^samplers\.1 \(grid\) with optimizers\.0 \(adam\): "):
        parse_experiment(data)


# property tests: whatever the file says, launch refuses it cleanly or every trial finishes ------
NUMBERS = st.sampled_from([-1, 0, 1, 2, 3, 16, 48, 64, 1e-12, 1e-8, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0, 1.5, 2.0,
                           1e3, 1e12, -0.5, math.nan, math.inf, -math.inf])
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.sampled_from(["fast", "", "cosine", "step", "constant"]))
RANGES = st.fixed_dictionaries({"low": SCALARS, "high": SCALARS}, optional={"log": SCALARS, "extra": SCALARS})
VALUES = st.one_of(
    SCALARS, RANGES,
    st.fixed_dictionaries({"choices": st.lists(SCALARS, max_size=3)}),
    st.lists(SCALARS, max_size=2),
)
SCHEDULE_CHOICES = st.one_of(st.sampled_from(["constant", "step", "exponential", "inverse_time", "cosine"]),
                             st.fixed_dictionaries({"choices": st.lists(
                                 st.sampled_from(["constant", "step", "cosine", "linear"]), min_size=1, max_size=3,
                                 unique=True)}))
PRINTABLE_NAMES = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=12).map(
    lambda name: name.strip() or "x")
TASKS = st.sampled_from([
    ({"name": "quadratic", "options": {"dim": 5}}, {"steps": 8}, "final_train_loss"),
    ({"name": "rosenbrock"}, {"steps": 8}, "final_train_loss"),
    ({"name": "saddle", "options": {"dim": 3}}, {"steps": 8}, "steps_to_target"),
    ({"name": "logistic", "options": {"dataset": "synthetic", "n_classes": 2, "n_samples": 200,
                                      "n_features": 5}}, {"epochs": 1}, "final_val_loss"),
    ({"name": "softmax", "options": {"dataset": "synthetic", "n_samples": 200, "n_features": 8, "n_classes": 3}},
     {"epochs": 1}, "best_val_loss"),
])


def plausible(param: Param) -> st.SearchStrategy:
    """Values of the kinds ``param`` takes, near its default range: most are valid, some not."""
    if param.choices is not None and param.low is None:
        return st.one_of(st.sampled_from(param.choices),
                         st.fixed_dictionaries({"choices": st.lists(st.sampled_from(param.choices), min_size=1,
                                                                    unique=True)}))
    ends = st.sampled_from([param.low, param.high, (param.low + param.high) / 2])
    return st.one_of(ends, st.fixed_dictionaries({"low": st.just(param.low), "high": ends}),
                     st.fixed_dictionaries({"choices": st.lists(ends, min_size=1, max_size=2, unique=True)}))


@st.composite
def study_files(draw: st.DrawFn, wild: bool = True) -> dict:
    """A study file drawn from the schema: real optimizers, parameters and fields; values of
    any kind (``wild``) or of the kinds each parameter takes, near its default range."""
    task, budget, objective = draw(TASKS)
    names = draw(st.lists(st.sampled_from(list(OPTIMIZERS)), min_size=1, max_size=2, unique=True))
    optimizers = []
    for name in names:
        params = default_space(name, data_task="epochs" in budget)
        space = {}
        for param in draw(st.lists(st.sampled_from(list(params.values())), max_size=2, unique=True)):
            space[param.name] = draw(st.one_of(plausible(param), plausible(param), VALUES) if wild else plausible(param))
        if "schedule" in params and draw(st.booleans()):
            space["schedule"] = draw(SCHEDULE_CHOICES)
        optimizers.append({"name": name, "space": space})
    data = {
        "name": draw(st.one_of(PRINTABLE_NAMES, st.text(max_size=12)) if wild else PRINTABLE_NAMES),
        "task": task, "optimizers": optimizers,
        "samplers": draw(st.lists(st.sampled_from(["random", "tpe", "qmc", "cmaes", "grid"]), min_size=1,
                                  max_size=2, unique=True)),
        "trials": 1, "budget": budget, "reevaluate": 0,
        "objective": {"name": "steps_to_target", "target": 1e-2} if objective == "steps_to_target" else objective,
        "pruner": draw(st.sampled_from(["none", "median", "hyperband"])),
    }
    if wild and draw(st.booleans()):  # a top-level field given a value of any kind
        field = draw(st.sampled_from(["trials", "repeats", "reevaluate", "pruner", "budget", "objective", "samplers"]))
        data[field] = draw(VALUES)
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(study_files(), study_files(wild=False)))
def test_launch_refuses_a_generated_study_file_cleanly_or_every_trial_finishes(data: dict) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        path, db = write(tmp, data), tmp / "t.db"
        code, output = launch(path, db)
        assert "Traceback" not in output
        event("refused" if code == 2 else "ran")
        if code == 2:
            lines = output.strip().splitlines()
            assert lines and all(line.strip() for line in lines) and lines[0].startswith("error: "), output
            assert not db.exists(), "a refused study file must not create the database"
            return
        assert code == 0, output
        store = Store.open(f"sqlite:///{db}", heartbeat=False)
        try:
            name = load_experiment(path).name
            run_worker(store, name)  # raises if a trial fails
        finally:
            store.close()
        engine = reader_engine(f"sqlite:///{db}")
        try:
            experiment_id, _ = queries.experiment(engine, name)
            states = queries.run_states(engine, experiment_id)
        finally:
            engine.dispose()
        finished = [state for counts in states.values() for state in counts.elements()]
        assert finished and set(finished) <= {COMPLETE, PRUNED, DIVERGED}, states


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.builds(yaml.safe_dump, VALUES), st.builds(yaml.safe_dump, study_files())))
def test_any_text_is_read_or_refused_with_a_config_error(text: str) -> None:
    """Only ConfigError escapes reading and validating, and its message is printable on one line each."""
    try:
        parse_experiment(parse_yaml(text, "study.yaml"))
    except ConfigError as exc:
        assert str(exc).strip()
        assert all(line.isprintable() for line in str(exc).splitlines()), str(exc)
