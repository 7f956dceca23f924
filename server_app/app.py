"""The ServerApp: validate the experiment, run the rounds, write the run directory."""

from __future__ import annotations

import time

import numpy as np
import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedtask.federation import build_federation
from fedtask.flower import experiment_config, record_to_state, state_to_record
from fedtask.models import build_model, get_device, num_parameters
from fedtask.plots import plot_label_mix, save_image_grid
from fedtask.rundir import RunDir
from fedtask.training import evaluate
from server_app.rounds import run_rounds, wait_for_nodes
from strategies import build_strategy

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run one federated experiment as configured by the run config."""
    cfg = experiment_config(context)  # validated once, before anything else
    fed = build_federation(cfg)  # impossible partitions fail here, before round 1
    run = RunDir(cfg)
    print(f"fedzda: run directory {run.path}", flush=True)
    plot_label_mix(fed.counts, fed.train.classes, run.path / "label_mix.png")
    run.write_json(
        "partitions.json",
        {
            "label_counts": fed.counts.tolist(),
            "client_test_sizes": [len(t) for t in fed.client_test],
        },
    )

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, fed.train.input_shape[0], fed.train.num_classes)
    print(
        f"fedzda: {cfg.algorithm} on {cfg.data.dataset}, {cfg.partition.num_partitions} "
        f"clients ({cfg.partition.name}), {cfg.model.name} with {num_parameters(model):,} "
        f"parameters, {cfg.rounds} rounds",
        flush=True,
    )
    device = get_device()
    strategy = build_strategy(cfg, fed.train)
    wait_for_nodes(grid, cfg.partition.num_partitions, timeout=cfg.server.connect_timeout)

    def on_round(server_round: int, arrays, seconds: float, train_metrics, eval_metrics) -> None:
        model.load_state_dict(record_to_state(arrays))
        ev = evaluate(model, fed.test, device=device)
        row = {
            "round": server_round,
            "global_accuracy": ev["accuracy"],
            "global_loss": ev["loss"],
            "round_seconds": seconds,
        }
        if train_metrics is not None:
            row |= {f"train_{k.replace('-', '_')}": v for k, v in train_metrics.items()}
        if eval_metrics is not None:
            acc = strategy.client_accuracy
            row |= dict(eval_metrics)
            row["client_accuracies"] = [acc.get(i, float("nan")) for i in range(fed.num_clients)]
        run.log_round(row)
        save_round_images(run, strategy, server_round, fed.train)
        print(progress_line(row, cfg.rounds), flush=True)

    t0 = time.perf_counter()
    final = run_rounds(
        grid,
        strategy,
        state_to_record(model.state_dict()),
        cfg.rounds,
        ConfigRecord({"seed": cfg.seed}),
        cfg.server.round_timeout,
        on_round,
    )
    run.save_model(record_to_state(final))
    total = time.perf_counter() - t0
    run.write_json(
        "summary.json",
        {
            "rounds": cfg.rounds,
            "seconds": total,
            "seconds_per_round": total / cfg.rounds,
            "final": run.rows[-1] if run.rows else None,
        },
    )
    print(
        f"fedzda: done in {total:.1f}s ({total / cfg.rounds:.1f}s/round); outputs in {run.path}",
        flush=True,
    )


def save_round_images(run: RunDir, strategy, server_round: int, train) -> None:
    """PNG grids of this round's synthetic samples: server pool and one client's preview."""
    shape = (-1, *train.input_shape)
    grid_args = (train.classes, train.mean, train.std)
    samples = getattr(strategy, "last_samples", None)
    if samples is not None:
        x, y = samples
        save_image_grid(
            x.numpy(), y.numpy(), *grid_args, run.images / f"round{server_round:03d}_server.png"
        )
    if strategy.client_preview is not None:
        pid, px, py = strategy.client_preview
        x = np.asarray(px, dtype=np.float32).reshape(shape)
        save_image_grid(
            x,
            np.asarray(py).astype(int),
            *grid_args,
            run.images / f"round{server_round:03d}_client{pid}.png",
            per_class=2,
        )


def progress_line(row: dict, rounds: int) -> str:
    """One line per round: global accuracy, client spread, seconds."""
    line = (
        f"[round {row['round']:>3}/{rounds}] global acc {row['global_accuracy']:.4f} "
        f"loss {row['global_loss']:.4f}"
    )
    if "client_acc_mean" in row:
        line += (
            f" | clients mean {row['client_acc_mean']:.4f} std {row['client_acc_std']:.4f}"
            f" worst10 {row['client_acc_worst10']:.4f}"
        )
    return line + f" | {row['round_seconds']:.1f}s"
