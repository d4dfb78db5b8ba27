"""The cnn, autoencoder and rnn_adding tasks: tuner's numpy loop vs the same model in PyTorch on CPU.

Same sizes (each task's default options), same data, same batch size, Adam at a constant learning
rate, float32, the same number of threads (BLAS via threadpoolctl, torch.set_num_threads). Runs
alternate (tuner, torch, tuner, ...); an epoch is the training pass plus the validation
evaluation. Prints each side's median epoch time and their ratio, task by task.

    python bench/tasks_vs_torch.py [--repeats 3] [--epochs 4] [--threads 1] [--batch-size 32]
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

LR = 1e-3


def tuner_epochs(task, epochs: int, batch: int, seed: int) -> list[float]:
    stamps = [time.perf_counter()]

    def on_eval(epoch, step, metrics):
        stamps.append(time.perf_counter())
        return False

    run = train(task, make_optimizer("adam"), make_schedule("constant", LR), epochs=epochs, batch_size=batch,
                seed=seed, on_eval=on_eval)
    assert not run.diverged and np.isfinite(run.evals["val_loss"][-1]), run.evals
    return list(np.diff(stamps))


def torch_model(torch, name: str, task):
    """The task's model in torch (default init; the numbers trained do not matter here, the work does)."""
    nn = torch.nn
    if name == "cnn":
        layers, c_in, k = [], 1, task.k
        for c_out in task.options.channels:
            pool = nn.MaxPool2d(2) if task.options.pool == "max" else nn.AvgPool2d(2)
            layers += [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(), pool]
            c_in = c_out
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), *layers, nn.Flatten(), nn.Linear(task.n_features, 10))
    if name == "autoencoder":
        act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[task.options.activation]
        sizes, layers = task.sizes, []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
            layers += [nn.Linear(n_in, n_out)] + ([act()] if i < len(sizes) - 2 else [])
        return nn.Sequential(*layers)

    class AddingRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(2, task.options.hidden_size, batch_first=True)
            self.out = nn.Linear(task.options.hidden_size, 1)

        def forward(self, x):
            return self.out(self.rnn(x)[0][:, -1])

    return AddingRNN()


def torch_data(torch, name: str, task):
    """(x_train, targets, x_val, val targets, loss function)."""
    t = torch.from_numpy
    if name == "cnn":
        return (t(task.data.x_train), t(task.data.y_train), t(task.data.x_val), t(task.data.y_val),
                torch.nn.CrossEntropyLoss())
    if name == "autoencoder":
        x, xv = t(task.data.x_train), t(task.data.x_val)
        return x, x, xv, xv, torch.nn.MSELoss()
    x, y = task.full_batch()
    return t(x), t(y), t(task.x_val), t(task.y_val), torch.nn.MSELoss()


def torch_epochs(torch, name: str, task, epochs: int, batch: int, seed: int) -> list[float]:
    torch.manual_seed(seed)
    model = torch_model(torch, name, task)
    x, y, xv, yv, loss_fn = torch_data(torch, name, task)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        with torch.no_grad():
            loss_fn(model(xv), yv).item()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("torch is not installed: timing tuner only")
    batch = args.batch_size
    print(f"Adam lr {LR}, batch {batch}, float32, {args.epochs} epochs x {args.repeats} runs, "
          f"{args.threads} thread(s); median epoch (train + validation)")
    print(f"{'task':<12} {'params':>7} {'steps':>6} {'tuner ms':>9} {'torch ms':>9} {'torch/tuner':>12}")
    for name in ("cnn", "autoencoder", "rnn_adding"):
        task = make_task(name, {"dtype": "float32"})
        ours: list[float] = []
        theirs: list[float] = []
        with threadpool_limits(args.threads):
            for r in range(args.repeats):
                ours += tuner_epochs(task, args.epochs, batch, seed=r)
                if torch is not None:
                    theirs += torch_epochs(torch, name, task, args.epochs, batch, seed=r)
        mine = statistics.median(ours) * 1e3
        other = ""
        if theirs:
            other = f"{statistics.median(theirs) * 1e3:9.1f} {statistics.median(theirs) * 1e3 / mine:11.2f}x"
        print(f"{name:<12} {task.dim:>7} {task.steps_per_epoch(batch):>6} {mine:9.1f} {other}")


if __name__ == "__main__":
    main()
