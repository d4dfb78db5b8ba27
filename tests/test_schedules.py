"""Schedules against hand-written arrays and, where present, torch.optim.lr_scheduler."""

import math

import numpy as np
import optuna
import pytest

from tests.conftest import optional_torch
from tuner import ConfigError
from tuner.schedules import SCHEDULES, make_schedule
from tuner.space import from_config, instantiate, resolve, schedule_config, suggest, to_config

R = math.sqrt(0.5)
HAND = [
    (("constant", 0.5), {}, [0.5, 0.5, 0.5, 0.5]),
    (("step", 1.0), {"step_size": 2, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5, 0.25]),
    (("exponential", 2.0), {"gamma": 0.5}, [2.0, 1.0, 0.5, 0.25]),
    (("inverse_time", 1.0), {"rate": 1.0}, [1.0, 1 / 2, 1 / 3, 1 / 4]),
    (("cosine", 1.0), {"total_steps": 4, "lr_min": 0.2}, [1.0, 0.2 + 0.8 * (1 + np.sqrt(0.5)) / 2, 0.6,
                                                           0.2 + 0.8 * (1 - np.sqrt(0.5)) / 2, 0.2, 0.2]),
    # warm-up from .25 to 1 over 3 steps, then the decay restarts at its own step 0
    (("step", 1.0), {"step_size": 2, "gamma": 0.5, "warmup_steps": 3, "warmup_start_factor": 0.25},
     [0.25, 0.5, 0.75, 1.0, 1.0, 0.5]),
    (("inverse_sqrt", 1.0), {"flat_steps": 2}, [1.0, 1.0, 1.0, math.sqrt(2 / 3), R, math.sqrt(2 / 5)]),
    (("polynomial", 2.0), {"total_steps": 4, "power": 2.0}, [2.0, 2 * 0.75**2, 2 * 0.5**2, 2 * 0.25**2, 0.0, 0.0]),
    # rise from 1/10 to 1 until step 0.6 * 5 - 1 = 2, fall to 1/10/100 at step 4, held there after
    (("one_cycle", 1.0), {"total_steps": 5, "pct_start": 0.6, "div_factor": 10.0, "final_div_factor": 100.0},
     [0.1, 0.55, 1.0, 0.5005, 0.001, 0.001]),
    (("one_cycle", 1.0), {"total_steps": 10, "pct_start": 0.3, "anneal_strategy": "linear", "div_factor": 10.0,
                          "final_div_factor": 100.0},
     [0.1, 0.55, 1.0, *(1 - 0.999 * np.arange(1, 8) / 7), 0.001]),
    # cycles of 2, 4, 8 steps
    (("cosine_restarts", 1.0), {"period": 2, "period_mult": 2}, [1.0, 0.5, 1.0, (1 + R) / 2, 0.5, (1 - R) / 2, 1.0]),
    (("cosine_restarts", 1.0), {"period": 3, "lr_min": 0.1},
     [1.0, 0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.25, 1.0, 0.1 + 0.9 * 0.75]),
    (("wsd", 1.0), {"total_steps": 6, "cooldown_steps": 4}, [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]),
    (("wsd", 1.0), {"total_steps": 6, "cooldown_steps": 4, "cooldown": "1-sqrt"},
     [1.0, 1.0, 1.0, 0.5, 1 - R, 1 - math.sqrt(0.75), 0.0]),
    (("wsd", 1.0), {"total_steps": 3, "cooldown_steps": 2, "warmup_steps": 2, "warmup_start_factor": 0.5},
     [0.5, 0.75, 1.0, 1.0, 0.5, 0.0]),
]


@pytest.mark.parametrize(("head", "params", "expected"), HAND, ids=lambda v: str(v))
def test_schedule_against_hand_written_values(head: tuple, params: dict, expected: list) -> None:
    schedule = make_schedule(*head, **params)
    np.testing.assert_allclose(schedule.values(len(expected)), expected, rtol=1e-15, atol=1e-15)
    assert schedule(len(expected) - 1) == pytest.approx(expected[-1], rel=1e-15, abs=1e-15)


def torch_lrs(make, steps: int, lr: float) -> np.ndarray:
    """The lr of each of ``steps`` optimizer steps under torch's scheduler ``make(lr_scheduler, optimizer)``."""
    torch = optional_torch()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make(torch.optim.lr_scheduler, opt)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(seen)


TORCH = [
    (lambda s, o: s.StepLR(o, step_size=7, gamma=0.3), ("step", 0.1), {"step_size": 7, "gamma": 0.3}, 60),
    (lambda s, o: s.ExponentialLR(o, gamma=0.97), ("exponential", 0.1), {"gamma": 0.97}, 60),
    (lambda s, o: s.CosineAnnealingLR(o, T_max=50, eta_min=1e-3), ("cosine", 0.1),
     {"total_steps": 50, "lr_min": 1e-3}, 51),
    (lambda s, o: s.LinearLR(o, start_factor=0.1, total_iters=10), ("constant", 0.1),
     {"warmup_steps": 10, "warmup_start_factor": 0.1}, 30),
    (lambda s, o: s.SequentialLR(o, [s.LinearLR(o, start_factor=0.2, total_iters=5),
                                     s.CosineAnnealingLR(o, T_max=20)], milestones=[5]),
     ("cosine", 0.1), {"total_steps": 20, "warmup_steps": 5, "warmup_start_factor": 0.2}, 26),
    # the defaults of the new kinds are torch's
    (lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=40, cycle_momentum=False), ("one_cycle", 0.1),
     {"total_steps": 40}, 40),
    (lambda s, o: s.PolynomialLR(o, total_iters=30), ("polynomial", 0.1), {"total_steps": 30}, 40),
    (lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=7), ("cosine_restarts", 0.1), {"period": 7}, 40),
]


@pytest.mark.parametrize(("make", "head", "params", "steps"), TORCH, ids=lambda v: "torch" if callable(v) else str(v))
def test_schedule_matches_torch(make, head: tuple, params: dict, steps: int) -> None:
    np.testing.assert_allclose(
        make_schedule(*head, **params).values(steps), torch_lrs(make, steps, head[1]), rtol=1e-12, atol=1e-15
    )


def _random_kind(kind: str, rng: np.random.Generator, lr: float) -> tuple[dict, object, int]:
    """Random settings of ``kind``: its parameters, torch's scheduler (a reference written here, not
    tuner's torch code) and how many steps to compare (past the schedule's end where torch allows)."""
    total = int(rng.choice([1, 2, 3, 5, *rng.integers(6, 400, size=6)]))
    if kind == "inverse_sqrt":
        k0 = int(rng.integers(1, total + 1))
        return {"flat_steps": k0}, lambda s, o: s.LambdaLR(o, lambda k: math.sqrt(k0 / max(k, k0))), total + 20
    if kind == "polynomial":
        power = float(rng.choice([1.0, 2.0, rng.uniform(0.2, 4.0)]))
        return ({"total_steps": total, "power": power},
                lambda s, o: s.PolynomialLR(o, total_iters=total, power=power), total + 20)
    if kind == "one_cycle":
        pct = float(rng.uniform(0.01, 0.99))
        while pct * total - 1 == 0:
            pct = float(rng.uniform(0.01, 0.99))
        anneal = str(rng.choice(["cos", "linear"]))
        div, final = float(10 ** rng.uniform(0, 3)), float(10 ** rng.uniform(0, 5))
        params = {"total_steps": total, "pct_start": pct, "anneal_strategy": anneal, "div_factor": div,
                  "final_div_factor": final}
        return params, lambda s, o: s.OneCycleLR(o, max_lr=lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
                                                 div_factor=div, final_div_factor=final, cycle_momentum=False), total
    if kind == "cosine_restarts":
        period, mult = int(rng.integers(1, max(total // 3, 1) + 1)), int(rng.choice([1, 2, 3]))
        lr_min = float(rng.choice([0.0, rng.uniform(0.0, lr)]))
        return ({"period": period, "period_mult": mult, "lr_min": lr_min},
                lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=period, T_mult=mult, eta_min=lr_min), total)
    cooldown, shape = int(rng.integers(1, total + 1)), str(rng.choice(["linear", "1-sqrt"]))
    decay = (lambda x: x) if shape == "linear" else math.sqrt
    stable = total - cooldown
    return ({"total_steps": total, "cooldown_steps": cooldown, "cooldown": shape},
            lambda s, o: s.LambdaLR(o, lambda k: 1.0 - decay(min(max(k - stable, 0) / cooldown, 1.0))), total + 20)


RANDOM_KINDS = ("inverse_sqrt", "polynomial", "one_cycle", "cosine_restarts", "wsd")
RANDOM = [(kind, seed) for kind in RANDOM_KINDS for seed in range(8)]


@pytest.mark.parametrize(("kind", "seed"), RANDOM, ids=[f"{kind}-{seed}" for kind, seed in RANDOM])
def test_new_schedules_match_torch_on_random_settings(kind: str, seed: int) -> None:
    """A whole run of torch's scheduler (its recursive form, as it steps) against the closed form,
    after a random linear warm-up (SequentialLR) on odd seeds for every kind that takes one."""
    rng = np.random.default_rng([RANDOM_KINDS.index(kind), seed])
    lr = float(10 ** rng.uniform(-4, 0))
    params, main, steps = _random_kind(kind, rng, lr)
    warmup, start = 0, 0.1
    if seed % 2 and SCHEDULES[kind].warmup:
        warmup, start = int(rng.integers(1, 30)), float(rng.uniform(0.01, 1.0))

    def make(s, o):
        if not warmup:
            return main(s, o)
        ramp = s.LinearLR(o, start_factor=start, total_iters=warmup)
        return s.SequentialLR(o, [ramp, main(s, o)], milestones=[warmup])

    schedule = make_schedule(kind, lr, warmup_steps=warmup, warmup_start_factor=start, **params)
    expected = torch_lrs(make, warmup + steps, lr)
    np.testing.assert_allclose(schedule.values(warmup + steps), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (("linear", 0.1), {}, r"schedule='linear' is unknown; allowed: constant, step"),
        (("constant", 0.0), {}, r"lr=0.0 .*\(0, inf\)"),
        (("step", 0.1), {"step_size": 0, "gamma": 0.5}, r"step_size=0 .*integer in \[1, inf\)"),
        (("step", 0.1), {"gamma": 0.5}, r"schedule 'step' needs 'step_size'"),
        (("exponential", 0.1), {"gamma": 1.5}, r"gamma=1.5 .*\(0, 1\]"),
        (("cosine", 0.1), {"total_steps": 10, "lr_min": 0.5}, r"lr_min=0.5 .*\[0, 0.1\]"),
        (("cosine", 0.1), {"total_steps": 10, "gamma": 0.5}, r"unknown option 'gamma' for schedule 'cosine'"),
        (("constant", 0.1), {"warmup_steps": -1}, r"warmup_steps=-1"),
        (("constant", 0.1), {"warmup_steps": 5, "warmup_start_factor": 0.0}, r"warmup_start_factor=0.0 .*\(0, 1\]"),
        (("inverse_sqrt", 0.1), {"flat_steps": 0}, r"flat_steps=0 .*integer in \[1, inf\)"),
        (("inverse_sqrt", 0.1), {}, r"schedule 'inverse_sqrt' needs 'flat_steps'"),
        (("polynomial", 0.1), {"total_steps": 10, "power": 0.0}, r"power=0.0 .*\(0, inf\)"),
        (("polynomial", 0.1), {"total_steps": 2.5}, r"total_steps=2.5 .*integer in \[1, inf\)"),
        (("one_cycle", 0.1), {"pct_start": 0.3}, r"schedule 'one_cycle' needs 'total_steps'"),
        (("one_cycle", 0.1), {"total_steps": 10, "pct_start": 1.0}, r"pct_start=1.0 .*\(0, 1\)"),
        (("one_cycle", 0.1), {"total_steps": 10, "pct_start": 0.1}, r"pct_start=0.1 .*other than 1/total_steps = 1/10"),
        (("one_cycle", 0.1), {"total_steps": 10, "anneal_strategy": "cosine"},
         r"anneal_strategy='cosine' is not allowed; allowed: 'cos', 'linear'"),
        (("one_cycle", 0.1), {"total_steps": 10, "div_factor": 0.5}, r"div_factor=0.5 .*\[1, inf\)"),
        (("one_cycle", 0.1), {"total_steps": 10, "final_div_factor": 0}, r"final_div_factor=0 .*\[1, inf\)"),
        (("one_cycle", 0.1), {"total_steps": 10, "warmup_steps": 2}, r"warmup_steps=2 .*0 \(schedule 'one_cycle' warms up itself\)"),
        (("cosine_restarts", 0.1), {"period": 0}, r"period=0 .*integer in \[1, inf\)"),
        (("cosine_restarts", 0.1), {"period": 5, "period_mult": 1.5}, r"period_mult=1.5 .*integer in \[1, inf\)"),
        (("cosine_restarts", 0.1), {"period": 5, "lr_min": 0.2}, r"lr_min=0.2 .*\[0, 0.1\]"),
        (("wsd", 0.1), {"total_steps": 10, "cooldown_steps": 11}, r"cooldown_steps=11 .*integer in \[1, 10\]"),
        (("wsd", 0.1), {"total_steps": 10, "cooldown_steps": 0}, r"cooldown_steps=0 .*integer in \[1, 10\]"),
        (("wsd", 0.1), {"total_steps": 10, "cooldown_steps": 2, "cooldown": "cosine"},
         r"cooldown='cosine' is not allowed; allowed: 'linear', '1-sqrt'"),
    ],
)
def test_bad_schedules_are_rejected(args: tuple, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_schedule(*args, **params)


# The new kinds in the search space: opened by a study file, relative to the run's length.

NEW = {"inverse_sqrt": {"inverse_sqrt_flat"}, "polynomial": {"poly_power"},
       "one_cycle": {"cycle_rise", "cycle_div", "cycle_final_div", "cycle_anneal"},
       "cosine_restarts": {"restart_period", "restart_mult", "restart_floor"}, "wsd": {"wsd_decay", "wsd_cooldown"}}


def test_the_default_space_leaves_the_new_kinds_to_study_files() -> None:
    space = {p.name: p for p in resolve("adam", {}, data_task=True, where="space")}
    assert set(space["schedule"].choices).isdisjoint(NEW)
    assert not set().union(*NEW.values()) & set(space)
    opened = {p.name: p for p in resolve("adam", {"schedule": {"choices": ["cosine", "wsd"]}, "wsd_cooldown": "1-sqrt"},
                                         data_task=True, where="space")}
    assert {"cosine_floor", "wsd_decay"} <= set(opened) and opened["wsd_cooldown"].fixed == "1-sqrt"
    assert not NEW["one_cycle"] & set(opened)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wsd_decay": 0.2}, r"space.wsd_decay is a parameter of schedule 'wsd', which is not chosen"),
        ({"schedule": "wsd", "wsd_decay": 1.5}, r"space.wsd_decay=1.5 is not allowed; allowed: .*\(0, 1\]"),
        ({"schedule": "wsd", "wsd_cooldown": "cosine"}, r"space.wsd_cooldown='cosine' is not allowed; allowed: 'linear', '1-sqrt'"),
        ({"schedule": "cosine_restarts", "restart_mult": {"choices": [1, 1.5]}},
         r"space.restart_mult.choices.1=1.5 is not allowed; allowed: an integer in \[1, inf\)"),
        ({"schedule": "one_cycle", "cycle_div": {"low": 0.5, "high": 10}}, r"space.cycle_div.low=0.5 is not allowed"),
        ({"schedule": {"choices": ["cosine", "cosine_warm"]}}, r"space.schedule.choices.1='cosine_warm' is not allowed"),
    ],
)
def test_bad_new_kind_settings_in_a_study_file_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve("sgd", overrides, data_task=True, where="space")


def test_every_kind_once_opened_samples_its_own_parameters_and_builds_for_any_run_length() -> None:
    space = resolve("momentum", {"schedule": {"choices": list(SCHEDULES)}, "warmup": {"low": 0.0, "high": 0.2}},
                    data_task=False, where="space")
    conditional = {p.name: p.schedule for p in space if p.schedule}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(120):
        trial = study.ask()
        values = suggest(trial, space)
        study.tell(trial, 0.0)
        seen.add(values["schedule"])
        assert {name for name in values if name in conditional} == {n for n, s in conditional.items()
                                                                     if s == values["schedule"]}
        for total in (1, 2, 3, 7, 10, 100, 1001):  # what passes the study file cannot fail a trial
            config = to_config("momentum", values, total)
            _, schedule = instantiate(config)
            lrs = schedule.values(total)
            assert np.all(np.isfinite(lrs)) and np.all(lrs > 0), (values, total)
            assert config["schedule"].get("warmup_steps", 0) == 0 or values["schedule"] != "one_cycle"
    assert seen == set(SCHEDULES)


@pytest.mark.parametrize(
    ("values", "step", "expected"),
    [
        ({"schedule": "inverse_sqrt", "inverse_sqrt_flat": 0.04}, 400, math.sqrt(16 / 400)),
        ({"schedule": "inverse_sqrt", "inverse_sqrt_flat": 0.04}, 16, 1.0),
        ({"schedule": "polynomial", "poly_power": 2.0}, 300, 0.25**2),
        ({"schedule": "one_cycle", "cycle_rise": 0.25, "cycle_div": 20.0, "cycle_final_div": 1e3}, 0, 1 / 20),
        ({"schedule": "one_cycle", "cycle_rise": 0.25, "cycle_div": 20.0, "cycle_final_div": 1e3}, 99, 1.0),
        ({"schedule": "one_cycle", "cycle_rise": 0.25, "cycle_div": 20.0, "cycle_final_div": 1e3}, 399, 1 / 20 / 1e3),
        # cycles of 80, 160, 320 steps: step 400 is halfway through the third
        ({"schedule": "cosine_restarts", "restart_period": 0.2, "restart_mult": 2, "restart_floor": 0.1}, 400, 0.55),
        ({"schedule": "cosine_restarts", "restart_period": 0.25, "restart_mult": 1}, 300, 1.0),
        ({"schedule": "wsd", "wsd_decay": 0.25, "wsd_cooldown": "linear"}, 300, 1.0),
        ({"schedule": "wsd", "wsd_decay": 0.25, "wsd_cooldown": "1-sqrt"}, 350, 1 - math.sqrt(0.5)),
        # the warm-up fraction comes first; the other fractions are of the steps after it
        ({"schedule": "wsd", "wsd_decay": 0.25, "warmup": 0.2}, 80 + 240, 1.0),
        ({"schedule": "wsd", "wsd_decay": 0.25, "warmup": 0.2}, 80 + 280, 0.5),
    ],
    ids=lambda v: str(v),
)
def test_relative_parameters_of_the_new_kinds_mean_what_they_say(values: dict, step: int, expected: float) -> None:
    config = schedule_config(values, lr=1.0, total_steps=400)
    schedule = make_schedule(config.pop("kind"), 1.0, **config)
    assert schedule(step) == pytest.approx(expected, rel=1e-12)


def test_one_cycle_keeps_its_own_warm_up() -> None:
    config = schedule_config({"schedule": "one_cycle", "warmup": 0.1}, lr=1.0, total_steps=100)
    assert "warmup_steps" not in config and config["total_steps"] == 100
    recovered = from_config({"optimizer": "sgd", "lr": 1.0, "schedule": config}, 100)
    assert "warmup" not in recovered and recovered["cycle_rise"] == 0.3


def test_a_rise_ending_at_step_zero_is_moved_off_torchs_division_by_zero() -> None:
    """0.1 x 10 steps ends OneCycleLR's rise at step 0.0, where torch divides 0 by 0; the space's
    fraction moves up by an ulp, which torch runs and the closed form matches."""
    config = schedule_config({"schedule": "one_cycle", "cycle_rise": 0.1}, lr=0.5, total_steps=10)
    assert config["pct_start"] == pytest.approx(0.1, rel=1e-15) and config["pct_start"] * 10 - 1 > 0
    params = {k: v for k, v in config.items() if k != "kind"}
    expected = torch_lrs(lambda s, o: s.OneCycleLR(o, max_lr=0.5, cycle_momentum=False, **params), 10, 0.5)
    np.testing.assert_allclose(make_schedule("one_cycle", 0.5, **params).values(10), expected, rtol=1e-12, atol=0)
