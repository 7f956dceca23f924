"""Which partition each SuperNode trains (``server.partition_map``), without Flower's
engine: a grid that only lists node ids and answers queries."""

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.app.message_type import MessageType

from fedcore.config import ConfigError, load_config
from fedcore.data import DataSpec
from fedcore.experiment import ServerConfig
from fedcore.protocol import (
    CONFIG,
    NUM_PARTITIONS,
    PARTITION_ID,
    assigned_partition,
    encode_partition,
)
from fedcore.round import build_server
from fedcore.sampling import Rounds, Sampling
from server_app.rounds import assign_partitions, partition_map
from strategies import AlgorithmStrategy, FederationError

NODES = [907, 13, 4242, 58]  # node ids, not in partition order


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Messages are built inside a run: give this process the identity a ServerApp has."""
    from flwr.supercore.task_identity import TaskIdentity

    for key, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, key, value)


class Grid:
    """Lists ``NODES``; a query to node n is answered with partition ``own[n]``."""

    def __init__(self) -> None:
        self.own = {n: i for i, n in enumerate(NODES)}
        self.asked: list[int] = []

    def get_node_ids(self):
        return list(NODES)

    def send_and_receive(self, messages, timeout=None):
        out = []
        for m in messages:
            node = m.metadata.dst_node_id
            self.asked.append(node)
            out.append(Reply(encode_partition(self.own[node], len(NODES)), node))
        return out


class Reply:
    """What discover_federation reads of a reply: its content, sender and error state."""

    def __init__(self, content: RecordDict, src: int) -> None:
        self.content = content
        self.metadata = type("Metadata", (), {"src_node_id": src})()

    def has_error(self) -> bool:
        return False


def test_assign_asks_one_node_and_maps_nodes_in_id_order():
    grid = Grid()
    nodes, assigned = partition_map(grid, ServerConfig(partition_map="assign"))
    assert assigned and grid.asked == [13]  # one query, whatever the federation's size
    assert nodes == {13: 0, 58: 1, 907: 2, 4242: 3}


class Joining(Grid):
    """Nodes still registering: the first listings show only some of them."""

    def __init__(self, listings: list[list[int]]) -> None:
        super().__init__()
        self.listings = listings

    def get_node_ids(self):
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]


def test_assign_waits_for_the_whole_federation():
    grid = Joining([[907], [907, 13], NODES])
    assert assign_partitions(grid, 5.0, poll=0.01) == {13: 0, 58: 1, 907: 2, 4242: 3}


def test_assign_refuses_more_nodes_than_partitions():
    grid = Joining([[*NODES, 77]])
    with pytest.raises(FederationError, match="5 SuperNodes are connected"):
        assign_partitions(grid, 1.0, poll=0.01)


def test_auto_queries_outside_simulation():
    grid = Grid()
    nodes, assigned = partition_map(grid, ServerConfig(partition_map="auto"))
    assert not assigned and sorted(grid.asked) == sorted(NODES)
    assert nodes == grid.own


def _strategy(assigned: bool) -> AlgorithmStrategy:
    cfg = load_config(None, "algorithm=fedavg")
    spec = DataSpec((1, 28, 28), (0.5,), (0.5,), tuple("abcdefghij"))
    model, algorithm = build_server(cfg, spec, torch.device("cpu"))
    rounds = Rounds(Sampling(0.5, 0), Sampling(1.0, 0), 1, 3, 0)
    parts = {13: 0, 58: 1, 907: 2, 4242: 3}
    state = algorithm.init(model.state_dict())
    return AlgorithmStrategy(algorithm, parts, rounds, assigned=assigned, state=state)


def test_assigned_messages_name_their_nodes_partition():
    s = _strategy(assigned=True)
    arrays = ArrayRecord({})
    msgs = list(s.configure_train(1, arrays, ConfigRecord({"seed": 0}), Grid()))
    assert len(msgs) == 2
    for m in msgs:
        pid, n = assigned_partition(m.content)
        assert n == 4 and pid == s.partition_of(m)
        assert m.content.array_records["arrays"] is arrays  # the model is not copied
    evals = list(s.configure_evaluate(3, arrays, ConfigRecord({"seed": 0}), Grid()))
    assert sorted(assigned_partition(m.content)[0] for m in evals) == [0, 1, 2, 3]


def test_queried_messages_name_no_partition():
    s = _strategy(assigned=False)
    msgs = list(s.configure_train(1, ArrayRecord({}), ConfigRecord({"seed": 0}), Grid()))
    assert msgs and all(assigned_partition(m.content) is None for m in msgs)


def test_an_assignment_outside_the_federation_is_refused():
    content = RecordDict({CONFIG: ConfigRecord({PARTITION_ID: 4, NUM_PARTITIONS: 4})})
    with pytest.raises(ValueError, match="not in 0..3"):
        assigned_partition(content)


def test_partition_map_is_checked_up_front():
    with pytest.raises(ConfigError, match="server.partition_map: 'everyone'"):
        load_config(None, "server.partition_map=everyone")
    with pytest.raises(ConfigError, match="under server.secure_aggregation"):
        load_config(None, "server.partition_map=assign server.secure_aggregation=true")


def test_message_type_is_kept():
    s = _strategy(assigned=True)
    msgs = list(s.configure_train(1, ArrayRecord({}), ConfigRecord({"seed": 0}), Grid()))
    assert {m.metadata.message_type for m in msgs} == {MessageType.TRAIN}
