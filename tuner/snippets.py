"""Ready-to-paste forms of a tuned configuration: PyTorch code and a study-file entry."""

from typing import Any

import yaml

from tuner.optim import OPTIMIZERS
from tuner.schedules import SCHEDULES
from tuner.space import from_config


def _literal(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


def torch_snippet(config: dict[str, Any]) -> str:
    """``torch.optim`` code that trains with ``config`` (as stored by tuner): the optimizer's torch
    class with the options its name fixes (``nesterov=True``), the scheduler (stepped once per
    optimizer step) and the batch size as a comment."""
    entry = OPTIMIZERS[config["optimizer"]]
    arguments = {k: v for k, v in config.items() if k not in ("optimizer", "schedule", "batch_size")}
    arguments.update(entry.variant)
    lines = ["import torch", ""]
    if entry.full_batch:
        lines.append("# tuner runs scipy's L-BFGS-B; torch's LBFGS with a strong-Wolfe line search is the nearest kin")
        arguments["line_search_fn"] = "strong_wolfe"
    parts = ["model.parameters()", *(f"{k}={_literal(v)}" for k, v in arguments.items())]
    call = f"optimizer = torch.optim.{entry.torch}({', '.join(parts)})"
    if len(call) > 100:
        call = f"optimizer = torch.optim.{entry.torch}(\n" + "".join(f"    {p},\n" for p in parts) + ")"
    lines.append(call)
    schedule = config.get("schedule")
    if schedule:
        lines += _scheduler_lines(schedule, config["lr"])
    if "batch_size" in config:
        lines.append(f"# batch size: {config['batch_size']}")
    return "\n".join(lines) + "\n"


def _scheduler_lines(schedule: dict[str, Any], lr: float) -> list[str]:
    kind, warmup = schedule["kind"], schedule.get("warmup_steps", 0)
    sched = "torch.optim.lr_scheduler"
    main = f"{sched}." + SCHEDULES[kind].torch.format(
        **{name: _literal(schedule.get(name)) for name in SCHEDULES[kind].params})
    if warmup:
        start = _literal(schedule.get("warmup_start_factor", 0.1))
        lines = [f"warmup = {sched}.LinearLR(optimizer, start_factor={start}, end_factor=1.0, total_iters={warmup})",
                 f"decay = {main}",
                 f"scheduler = {sched}.SequentialLR(optimizer, [warmup, decay], milestones=[{warmup}])"]
    elif kind == "constant":
        return ["# constant learning rate: no scheduler needed"]
    else:
        lines = [f"scheduler = {main}"]
    return [*lines, "# call scheduler.step() after every optimizer.step()"]


def study_snippet(config: dict[str, Any], total_steps: int) -> str:
    """The ``optimizers:`` entry of a study file that fixes every parameter to ``config``."""
    values = {k: (float(f"{v:.6g}") if isinstance(v, float) else v)
              for k, v in from_config(config, total_steps).items()}
    entry = {"name": config["optimizer"], "space": values}
    return yaml.safe_dump({"optimizers": [entry]}, sort_keys=False, default_flow_style=None, width=100)
