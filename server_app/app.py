"""The ServerApp: validate the experiment, learn the federation's data, run the rounds,
write the run directory."""

from __future__ import annotations

import time

import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedcore.config import ExperimentConfig, experiment_config
from fedcore.data import DataSpec
from fedcore.federation import Federation
from fedcore.leakage import round_report
from fedcore.models import get_device, num_parameters
from fedcore.plots import plot_label_mix, save_image_grid, save_pairs
from fedcore.protocol import SEED, record_to_state, state_to_record
from fedcore.round import build_server
from fedcore.rundir import RunDir
from fedcore.sampling import Rounds, Sampling
from fedcore.seeds import OFFSET, derive_seed
from fedcore.training import evaluate
from server_app.checkpoint import load_checkpoint, save_checkpoint
from server_app.data import ServerData, server_data
from server_app.rounds import RoundOutcome, run_flower_rounds
from server_app.secure import run_secure_rounds
from strategies import AlgorithmStrategy, TrainResult

app = ServerApp()


def rounds_of(cfg) -> Rounds:
    """The run's sampling and evaluation cadence."""
    s = cfg.server
    return Rounds(
        Sampling(s.fraction_train, s.min_train_nodes),
        Sampling(s.fraction_evaluate, s.min_evaluate_nodes),
        s.evaluate_every,
        cfg.rounds,
        cfg.seed,
        s.final_evaluate,
    )


def open_run(
    cfg: ExperimentConfig, data: ServerData, model, strategy: AlgorithmStrategy
) -> tuple[RunDir, int]:
    """A new run directory (with the label mix when known), or the resumed one and the
    round to start from."""
    if cfg.resume:
        run = RunDir(cfg, existing=cfg.resume)
        ckpt = load_checkpoint(run.path, cfg.to_dict())
        model.load_state_dict(ckpt["state"])
        strategy.load_state_dict(ckpt["strategy"])
        run.restore_rows(ckpt["rows"])
        print(f"fedzda: resuming {run.path} at round {ckpt['round'] + 1}", flush=True)
        return run, ckpt["round"] + 1
    run = RunDir(cfg)
    print(f"fedzda: run directory {run.path}", flush=True)
    if data.counts is not None:
        plot_label_mix(data.counts, data.spec.classes, run.path / "label_mix.png")
    run.write_json("partitions.json", {
        "label_counts": None if data.counts is None else data.counts.tolist(),
        "client_test_sizes": data.client_test_sizes,
        "sites": list(data.names) or None,
    })  # fmt: skip
    return run, 1


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) one federated experiment as configured by the run config."""
    base = experiment_config(context.run_config)  # validated once, before anything else
    data = server_data(grid, base)
    cfg, spec, device = data.cfg, data.spec, get_device()
    model, algorithm = build_server(cfg, spec, device)
    strategy = AlgorithmStrategy(algorithm, data.nodes, rounds_of(cfg), data.max_examples,
                                 data.names_partitions, data.static_nodes,
                                 state=algorithm.init(model.state_dict()))  # fmt: skip
    run, start_round = open_run(cfg, data, model, strategy)
    print(
        f"fedzda: {cfg.algorithm} on {cfg.data.dataset}, {cfg.num_clients} "
        f"clients ({cfg.partition.name if data.federation else 'sites'}), {cfg.model.name} "
        f"with {num_parameters(model):,} parameters, {cfg.rounds} rounds",
        flush=True,
    )

    def on_round(out: RoundOutcome) -> None:
        record_round(run, out, cfg, data, model, device)
        save_checkpoint(run.path, round=out.server_round, state=model.state_dict(),
                        rows=run.rows, strategy=strategy.state_dict(),
                        config=cfg.to_dict())  # fmt: skip
        print(progress_line(run.rows[-1], cfg.rounds), flush=True)

    last = cfg.rounds
    if cfg.faults.stop_after_round > 0:
        last = min(last, cfg.faults.stop_after_round)
    t0 = time.perf_counter()
    initial = state_to_record(model.state_dict())
    if cfg.server.secure_aggregation:
        final = run_secure_rounds(grid, context, cfg, strategy, initial, data.largest, on_round)
    else:
        config = ConfigRecord({SEED: cfg.seed, **data.message})
        final = run_flower_rounds(grid, strategy, initial, last, config, cfg.server.round_timeout,
                           on_round, start_round=start_round)  # fmt: skip
    total = time.perf_counter() - t0
    if last < cfg.rounds:
        print(
            f"fedzda: stopped after round {last} (faults.stop_after_round); resume with "
            f"--run-config resume='{run.path}'",
            flush=True,
        )
        return
    run.save_model(record_to_state(final))
    finish(run, cfg, data, start_round, total)


def finish(run: RunDir, cfg: ExperimentConfig, data: ServerData, start: int, total: float) -> None:
    """The run's ``summary.json`` (rounds, start-up, seconds, the last row) and its last line."""
    done = cfg.rounds - start + 1
    run.write_json(
        "summary.json",
        {
            "rounds": cfg.rounds,
            "resumed_at": start if cfg.resume else None,
            "partition_map": "assign" if data.static_nodes else "query",
            **data.startup,
            "seconds": total,
            "seconds_per_round": total / max(done, 1),
            "final": run.rows[-1] if run.rows else None,
        },
    )
    print(
        f"fedzda: done in {total:.1f}s ({total / max(done, 1):.1f}s/round); outputs in {run.path}",
        flush=True,
    )


def record_round(
    run: RunDir, out: RoundOutcome, cfg: ExperimentConfig, data: ServerData, model, device
) -> None:
    """One round's row (central test when there is one, federated evaluation), images and
    leakage report; the global model is loaded into ``model``."""
    server_round = out.server_round
    model.load_state_dict(record_to_state(out.arrays))
    row: dict = {"round": server_round}
    if data.test is not None:
        central = evaluate(model, data.test, device=device)
        row |= {"global_accuracy": central["accuracy"], "global_loss": central["loss"]}
    row["round_seconds"] = out.seconds
    row |= {f"train_{k.replace('-', '_')}": v for k, v in out.train.metrics.items()}
    if out.evaluation is not None:
        row |= out.evaluation.metrics
        acc = out.evaluation.client_accuracy
        row["client_accuracies"] = [acc.get(i, float("nan")) for i in range(cfg.num_clients)]
    row["train_partitions"] = out.train_partitions
    row["eval_partitions"] = out.eval_partitions
    run.log_round(row)
    save_round_images(run, out.train, server_round, data.spec)
    if cfg.output.leakage and out.train.sources is not None and data.federation is not None:
        save_leakage(run, out.train, server_round, data.federation, model, cfg.seed, cfg.rounds)


def save_round_images(run: RunDir, train: TrainResult, server_round: int, spec: DataSpec) -> None:
    """PNG grids of this round's synthetic samples: server pool and one client's preview."""
    if train.samples is not None:
        x, y = train.samples
        path = run.images / f"round{server_round:03d}_server.png"
        save_image_grid(x.numpy(), y.numpy(), spec.classes, spec.mean, spec.std, path)
    if train.preview is not None:
        pid, x, y = train.preview
        path = run.images / f"round{server_round:03d}_client{pid}.png"
        save_image_grid(
            x.numpy(), y.numpy().astype(int), spec.classes, spec.mean, spec.std, path, per_class=2
        )


def save_leakage(
    run: RunDir,
    train: TrainResult,
    server_round: int,
    fed: Federation,
    model,
    seed: int,
    last_round: int,
) -> None:
    """``output.leakage``: how close this round's ZDAS samples come to each client's images
    (``leakage.jsonl``, one line per round, and a PNG of the closest pairs); the first and
    the last round's samples are kept (``synthetic_roundNNN.pt``: x, y, sources) for the
    membership test. The server reads the clients' partitions to measure it, so this is for
    simulation, not deployment."""
    assert train.samples is not None and train.sources is not None
    x, y = train.samples
    if server_round in (1, last_round):
        kept = {"x": x, "y": y, "sources": train.sources}
        torch.save(kept, run.path / f"synthetic_round{server_round:03d}.pt")
    spec = fed.train.spec

    def images(pid: int):
        ds = fed.client_datasets(pid)[0]
        return ds.x, ds.y

    report, pairs = round_report(
        x, y, train.sources, images, range(fed.num_clients), model, spec.mean, spec.std,
        holdout=(fed.test.x, fed.test.y), seed=derive_seed(seed, server_round, OFFSET),
    )  # fmt: skip
    run.append_jsonl("leakage.jsonl", {"round": server_round, **report})
    pairs_np = [(a.numpy(), b.numpy(), s) for a, b, s in pairs]
    save_pairs(pairs_np, spec.mean, spec.std, run.images / f"round{server_round:03d}_leakage.png")


def progress_line(row: dict, rounds: int) -> str:
    """One line per round: global accuracy, client spread, seconds."""
    line = f"[round {row['round']:>3}/{rounds}]"
    if "global_accuracy" in row:
        line += f" global acc {row['global_accuracy']:.4f} loss {row['global_loss']:.4f}"
    if "client_acc_mean" in row:
        line += (
            f" | clients mean {row['client_acc_mean']:.4f} std {row['client_acc_std']:.4f}"
            f" worst10 {row['client_acc_worst10']:.4f}"
        )
    return line + f" | {row['round_seconds']:.1f}s"
