"""Digits MLP (64-128-10, Adam lr 1e-3, batch 32, float32): tuner's numpy loop vs PyTorch on CPU.

Runs alternate (tuner, torch, tuner, ...); both are pinned to one thread, as tuner's workers
are. Prints the median epoch time of each and their ratio, then the Adam step time on 1e7
float32 parameters as a fraction of the memory bandwidth measured with an in-place a += b.

    python bench/mlp_vs_torch.py [--repeats 5] [--epochs 20]
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from tuner.optim import make_optimizer
from tuner.schedules import make_schedule
from tuner.tasks import make_task
from tuner.train import train

LR, BATCH = 1e-3, 32


def tuner_epochs(task, epochs: int, seed: int) -> list[float]:
    stamps = [time.perf_counter()]

    def on_eval(epoch, step, metrics):
        stamps.append(time.perf_counter())
        return False

    run = train(task, make_optimizer("adam"), make_schedule("constant", LR), epochs=epochs,
                batch_size=BATCH, seed=seed, on_eval=on_eval)
    assert run.evals["val_accuracy"][-1] > 0.9, run.evals["val_accuracy"][-1]
    return list(np.diff(stamps))


def torch_epochs(torch, task, epochs: int, seed: int) -> list[float]:
    torch.manual_seed(seed)
    x = torch.from_numpy(task.data.x_train)
    y = torch.from_numpy(task.data.y_train)
    xv = torch.from_numpy(task.data.x_val)
    yv = torch.from_numpy(task.data.y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(0, len(y), BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = model(xv)
            loss_fn(logits, yv).item()
            (logits.argmax(1) == yv).float().mean().item()
        times.append(time.perf_counter() - start)
    return times


def adam_bandwidth(n: int = 10_000_000, repeats: int = 7) -> tuple[float, float, float]:
    """(Adam step seconds, a += b bandwidth in GB/s, Adam's minimal traffic / time / bandwidth)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    copy_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a += b
        copy_times.append(time.perf_counter() - start)
    bandwidth = 3 * a.nbytes / statistics.median(copy_times)  # read a, read b, write a
    adam = make_optimizer("adam")
    state = adam.init(a)
    step_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        adam.update(a, b, 1e-3, state)
        step_times.append(time.perf_counter() - start)
    step = statistics.median(step_times)
    minimal = 7 * a.nbytes  # read p, g, m, v; write p, m, v
    return step, bandwidth / 1e9, minimal / step / bandwidth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
        print("torch is not installed: timing tuner only")
    task = make_task("mlp", {"hidden_sizes": [128], "dtype": "float32"})
    ours: list[float] = []
    theirs: list[float] = []
    with threadpool_limits(1):
        for r in range(args.repeats):
            ours += tuner_epochs(task, args.epochs, seed=r)
            if torch is not None:
                theirs += torch_epochs(torch, task, args.epochs, seed=r)
        step, bandwidth, fraction = adam_bandwidth()
    per_epoch = task.steps_per_epoch(BATCH)
    print(f"digits MLP 64-128-10, Adam, batch {BATCH}, {args.epochs} epochs x {args.repeats} runs, "
          f"{per_epoch} steps/epoch, one thread")
    print(f"tuner  median epoch: {statistics.median(ours) * 1e3:8.2f} ms "
          f"({statistics.median(ours) / per_epoch * 1e6:.1f} us/step)")
    if theirs:
        print(f"torch  median epoch: {statistics.median(theirs) * 1e3:8.2f} ms "
              f"({statistics.median(theirs) / per_epoch * 1e6:.1f} us/step)")
        print(f"speed-up tuner vs torch: {statistics.median(theirs) / statistics.median(ours):.2f}x (target >= 4x)")
    print(f"Adam step on 1e7 float32: {step * 1e3:.1f} ms; a += b bandwidth {bandwidth:.1f} GB/s; "
          f"Adam moves its minimal 7 x 40 MB at {fraction:.0%} of that bandwidth")


if __name__ == "__main__":
    main()
