"""A trivial Flower app: each round the ServerApp sends an empty train message to a seeded
sample of ``per-round`` nodes (of every connected one) and each ClientApp answers at once.
One line per round goes to ``out`` (JSON: round, round_seconds, replies), as fedzda's
``metrics.jsonl`` does, so that `benchmarks.scale` measures both the same way."""

import json
import random
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    """``rounds`` rounds of one empty message to each of ``per-round`` sampled nodes."""
    rounds, k = int(context.run_config["rounds"]), int(context.run_config["per-round"])
    out = Path(str(context.run_config["out"]))
    nodes = sorted(grid.get_node_ids())
    rng = random.Random(0)
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        asks = [
            Message(RecordDict({"config": ConfigRecord({"round": rnd})}), dst_node_id=n,
                    message_type=MessageType.TRAIN)
            for n in rng.sample(nodes, min(k, len(nodes)))
        ]  # fmt: skip
        replies = list(grid.send_and_receive(asks))
        row = {"round": rnd, "round_seconds": time.perf_counter() - t0, "replies": len(replies)}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


@client.train()
def train(msg: Message, context: Context) -> Message:
    """Answer at once, with no model."""
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)
