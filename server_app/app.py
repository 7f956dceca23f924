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
from server_app.checkpoint import load_checkpoint, save_checkpoint
from server_app.rounds import run_rounds, wait_for_nodes
from strategies import build_strategy

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) one federated experiment as configured by the run config."""
    cfg = experiment_config(context)  # validated once, before anything else
    fed = build_federation(cfg)  # impossible partitions fail here, before round 1
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, fed.train.input_shape[0], fed.train.num_classes)
    strategy = build_strategy(cfg, fed.train)
    start_round = 1
    if cfg.resume:
        run = RunDir(cfg, existing=cfg.resume)
        ckpt = load_checkpoint(run.path, cfg.to_dict())
        model.load_state_dict(ckpt["state"])
        strategy.load_state_dict(ckpt["strategy"])
        run.restore_rows(ckpt["rows"])
        start_round = ckpt["round"] + 1
        print(f"fedzda: resuming {run.path} at round {start_round}", flush=True)
    else:
        run = RunDir(cfg)
        print(f"fedzda: run directory {run.path}", flush=True)
        plot_label_mix(fed.counts, fed.train.classes, run.path / "label_mix.png")
        counts = {
            "label_counts": fed.counts.tolist(),
            "client_test_sizes": [len(t) for t in fed.client_test],
        }
        run.write_json("partitions.json", counts)
    print(
        f"fedzda: {cfg.algorithm} on {cfg.data.dataset}, {cfg.partition.num_partitions} "
        f"clients ({cfg.partition.name}), {cfg.model.name} with {num_parameters(model):,} "
        f"parameters, {cfg.rounds} rounds",
        flush=True,
    )
    device = get_device()
    wait_for_nodes(grid, cfg.partition.num_partitions, timeout=cfg.server.connect_timeout)

    def on_round(server_round: int, arrays, seconds: float, train_metrics, eval_metrics) -> None:
        state = record_to_state(arrays)
        model.load_state_dict(state)
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
        save_checkpoint(
            run.path,
            round=server_round,
            state=state,
            rows=run.rows,
            strategy=strategy.state_dict(),
            config=cfg.to_dict(),
        )
        print(progress_line(row, cfg.rounds), flush=True)

    last = cfg.rounds
    if cfg.faults.stop_after_round is not None:
        last = min(last, cfg.faults.stop_after_round)
    t0 = time.perf_counter()
    final = run_rounds(
        grid,
        strategy,
        state_to_record(model.state_dict()),
        last,
        ConfigRecord({"seed": cfg.seed}),
        cfg.server.round_timeout,
        on_round,
        start_round=start_round,
    )
    total = time.perf_counter() - t0
    if last < cfg.rounds:
        print(
            f"fedzda: stopped after round {last} (faults.stop_after_round); resume with "
            f'overrides="resume={run.path}"',
            flush=True,
        )
        return
    run.save_model(record_to_state(final))
    done = cfg.rounds - start_round + 1
    run.write_json(
        "summary.json",
        {
            "rounds": cfg.rounds,
            "resumed_at": start_round if cfg.resume else None,
            "seconds": total,
            "seconds_per_round": total / max(done, 1),
            "final": run.rows[-1] if run.rows else None,
        },
    )
    print(
        f"fedzda: done in {total:.1f}s ({total / max(done, 1):.1f}s/round); outputs in {run.path}",
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
