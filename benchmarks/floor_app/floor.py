"""A trivial Flower app: once all ``nodes`` SuperNodes are connected, each round the ServerApp
sends an empty train message to a seeded sample of ``per-round`` nodes, then an empty
evaluate message to another sample (the two round trips of a fedzda round), and each
ClientApp answers at once. One line per round goes to ``out`` (JSON: round, round_seconds,
replies), as fedzda's ``metrics.jsonl`` does, so that `benchmarks.studies.scale` measures both the
same way."""

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
    """``rounds`` rounds of one empty train and one empty evaluate message to each of
    ``per-round`` sampled nodes."""
    rounds, k = int(context.run_config["rounds"]), int(context.run_config["per-round"])
    want, out = int(context.run_config["nodes"]), Path(str(context.run_config["out"]))
    while len(nodes := sorted(grid.get_node_ids())) < want:
        time.sleep(0.5)
    rng = random.Random(0)
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        replies = 0
        for kind in (MessageType.TRAIN, MessageType.EVALUATE):
            asks = [
                Message(RecordDict({"config": ConfigRecord({"round": rnd})}), dst_node_id=n,
                        message_type=kind)
                for n in rng.sample(nodes, min(k, len(nodes)))
            ]  # fmt: skip
            replies += len(list(grid.send_and_receive(asks)))
        row = {"round": rnd, "round_seconds": time.perf_counter() - t0, "replies": replies}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _answer(msg: Message) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)


@client.train()
def train(msg: Message, context: Context) -> Message:
    """Answer at once, with no model."""
    return _answer(msg)


@client.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Answer at once, with no model."""
    return _answer(msg)
