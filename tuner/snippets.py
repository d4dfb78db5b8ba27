"""Ready-to-paste forms of a tuned configuration: PyTorch code and a study-file entry."""

import re
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
    optimizers = ["optimizer"]
    if entry.torch == "Muon":
        own = {name: arguments.pop(name, entry.option_default(name))
               for name in ("adamw_beta1", "adamw_beta2", "adamw_eps")}
        adamw = {"lr": arguments["lr"], "betas": (own["adamw_beta1"], own["adamw_beta2"]), "eps": own["adamw_eps"],
                 "weight_decay": arguments.get("weight_decay", entry.option_default("weight_decay"))}
        lines += ["# Muon trains the 2-D weights and AdamW the rest, as torch's documentation pairs them (tuner",
                  "# also orthogonalises conv kernels, flattened to (out, in * k * k); torch's Muon takes 2-D only)",
                  "matrices = [p for p in model.parameters() if p.ndim == 2]",
                  "others = [p for p in model.parameters() if p.ndim != 2]",
                  _call("optimizer", reference, "matrices", arguments),
                  _call("adamw", "torch.optim.AdamW", "others", adamw),
                  "# step both: optimizer.step(); adamw.step()"]
        optimizers.append("adamw")
    else:
        if entry.torch == "Adafactor":
            lines.append("# tuner factors a conv kernel as its (out, in * k * k) matrix; torch factors the 4-D "
                         "kernel's last two dims")
        lines.append(_call("optimizer", reference, "model.parameters()", arguments))
    if entry.package == "schedulefree":
        lines += ["optimizer.train()  # schedule-free: train at y; call optimizer.eval() before evaluating or saving",
                  "# (evaluation at the average x) and optimizer.train() again before the next step"]
    schedule = config.get("schedule")
    if schedule:
        for name in optimizers:
            lines += _scheduler_lines(schedule, config["lr"], name)
    lines += _technique_lines(config)
    if "batch_size" in config:
        lines.append(f"# batch size: {config['batch_size']}")
    return "\n".join(lines) + "\n"


def _call(name: str, reference: str, params: str, arguments: dict[str, Any]) -> str:
    """``name = reference(params, key=value, ...)``, one argument per line when it is long."""
    parts = [params, *(f"{k}={_literal(v)}" for k, v in arguments.items())]
    call = f"{name} = {reference}({', '.join(parts)})"
    if len(call) > 100:
        call = f"{name} = {reference}(\n" + "".join(f"    {p},\n" for p in parts) + ")"
    return call


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


def _scheduler_lines(schedule: dict[str, Any], lr: float, optimizer: str = "optimizer") -> list[str]:
    """The scheduler of ``optimizer`` (the variable's name); its variables are prefixed with the
    optimizer's name unless it is the main ``optimizer``."""
    kind, warmup = schedule["kind"], schedule.get("warmup_steps", 0)
    prefix = "" if optimizer == "optimizer" else f"{optimizer}_"
    sched = "torch.optim.lr_scheduler"
    entry = SCHEDULES[kind]
    main = f"{sched}." + entry.torch.format(
        **{name: _literal(value) for name, value in entry.torch_fields(lr, schedule).items()})
    main = re.sub(r"\((\s*)optimizer,", rf"(\g<1>{optimizer},", main)  # every template's first argument
    notes = [f"# {entry.note}"] if entry.note and not prefix else []
    if warmup:
        start = _literal(schedule.get("warmup_start_factor", 0.1))
        lines = [f"{prefix}warmup = {sched}.LinearLR({optimizer}, start_factor={start}, end_factor=1.0, "
                 f"total_iters={warmup})",
                 f"{prefix}decay = {main}",
                 f"{prefix}scheduler = {sched}.SequentialLR({optimizer}, [{prefix}warmup, {prefix}decay], "
                 f"milestones=[{warmup}])"]
    elif kind == "constant":
        return [] if prefix else ["# constant learning rate: no scheduler needed"]
    else:
        lines = [f"{prefix}scheduler = {main}"]
    return [*notes, *lines, f"# call {prefix}scheduler.step() after every {optimizer}.step()"]


def study_snippet(config: dict[str, Any], total_steps: int) -> str:
    """The ``optimizers:`` entry of a study file that fixes every parameter to ``config``."""
    values = {k: (float(f"{v:.6g}") if isinstance(v, float) else v)
              for k, v in from_config(config, total_steps).items()}
    entry = {"name": config["optimizer"], "space": values}
    return yaml.safe_dump({"optimizers": [entry]}, sort_keys=False, default_flow_style=None, width=100)
