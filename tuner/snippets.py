"""Ready-to-paste forms of a tuned configuration: PyTorch code and a study-file entry."""

from typing import Any

import yaml

from tuner.optim import OPTIMIZERS, TECHNIQUES
from tuner.schedules import SCHEDULES
from tuner.space import from_config


def _literal(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


def torch_snippet(config: dict[str, Any]) -> str:
    """``torch.optim`` code that trains with ``config`` (as stored by tuner): the optimizer's torch
    class with the options its name fixes (``nesterov=True``), the scheduler (stepped once per
    optimizer step), gradient clipping and weight averaging, and the batch size as a comment."""
    entry = OPTIMIZERS[config["optimizer"]]
    arguments = {k: v for k, v in config.items()
                 if k not in ("optimizer", "schedule", "batch_size", *TECHNIQUES)}
    arguments = {**entry.variant, **arguments}
    reference = f"{entry.package}.{entry.torch}"  # torch.optim, or the package that defines the optimizer
    lines = ["import torch", *([f"import {entry.package}"] if entry.package != "torch.optim" else []), ""]
    if entry.full_batch:
        lines.append("# tuner runs scipy's L-BFGS-B; torch's LBFGS with a strong-Wolfe line search is the nearest kin")
        arguments["line_search_fn"] = "strong_wolfe"
    parts = ["model.parameters()", *(f"{k}={_literal(v)}" for k, v in arguments.items())]
    call = f"optimizer = {reference}({', '.join(parts)})"
    if len(call) > 100:
        call = f"optimizer = {reference}(\n" + "".join(f"    {p},\n" for p in parts) + ")"
    lines.append(call)
    if entry.package == "schedulefree":
        lines += ["optimizer.train()  # schedule-free: train at y; call optimizer.eval() before evaluating or saving",
                  "# (evaluation at the average x) and optimizer.train() again before the next step"]
    schedule = config.get("schedule")
    if schedule:
        lines += _scheduler_lines(schedule, config["lr"])
    lines += _technique_lines(config)
    if "batch_size" in config:
        lines.append(f"# batch size: {config['batch_size']}")
    return "\n".join(lines) + "\n"


def _technique_lines(config: dict[str, Any]) -> list[str]:
    """torch code for ``config``'s gradient clipping (before every ``optimizer.step()``) and weight
    averaging (an AveragedModel updated after every step, or after step ``polyak_start``)."""
    lines = []
    nn, swa = "torch.nn.utils", "torch.optim.swa_utils"
    if "clip_grad_norm" in config:
        lines += ["# before every optimizer.step():",
                  f"#     {nn}.clip_grad_norm_(model.parameters(), max_norm={_literal(config['clip_grad_norm'])})"]
    if "clip_grad_value" in config:
        lines += ["# before every optimizer.step():",
                  f"#     {nn}.clip_grad_value_(model.parameters(), clip_value={_literal(config['clip_grad_value'])})"]
    if "ema_decay" in config:
        lines += [f"averaged = {swa}.AveragedModel(model, multi_avg_fn={swa}.get_ema_multi_avg_fn("
                  f"{_literal(config['ema_decay'])}))",
                  "# after every optimizer.step(): averaged.update_parameters(model); evaluate `averaged`"]
    if "polyak_start" in config:
        lines += [f"averaged = {swa}.AveragedModel(model)  # uniform (Polyak) average",
                  f"# after optimizer step k (counted from 1): if k > {config['polyak_start']}: "
                  "averaged.update_parameters(model); evaluate `averaged`"]
    return lines


def _scheduler_lines(schedule: dict[str, Any], lr: float) -> list[str]:
    kind, warmup = schedule["kind"], schedule.get("warmup_steps", 0)
    sched = "torch.optim.lr_scheduler"
    entry = SCHEDULES[kind]
    main = f"{sched}." + entry.torch.format(
        **{name: _literal(value) for name, value in entry.torch_fields(lr, schedule).items()})
    notes = [f"# {entry.note}"] if entry.note else []
    if warmup:
        start = _literal(schedule.get("warmup_start_factor", 0.1))
        lines = [f"warmup = {sched}.LinearLR(optimizer, start_factor={start}, end_factor=1.0, total_iters={warmup})",
                 f"decay = {main}",
                 f"scheduler = {sched}.SequentialLR(optimizer, [warmup, decay], milestones=[{warmup}])"]
    elif kind == "constant":
        return ["# constant learning rate: no scheduler needed"]
    else:
        lines = [f"scheduler = {main}"]
    return [*notes, *lines, "# call scheduler.step() after every optimizer.step()"]


def study_snippet(config: dict[str, Any], total_steps: int) -> str:
    """The ``optimizers:`` entry of a study file that fixes every parameter to ``config``."""
    values = {k: (float(f"{v:.6g}") if isinstance(v, float) else v)
              for k, v in from_config(config, total_steps).items()}
    entry = {"name": config["optimizer"], "space": values}
    return yaml.safe_dump({"optimizers": [entry]}, sort_keys=False, default_flow_style=None, width=100)
