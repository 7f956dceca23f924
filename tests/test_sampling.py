"""Client sampling: seeded per round, recorded in the run directory, replayed on resume."""

from fedcore.sampling import EVALUATE, TRAIN, Rounds, Sampling, sample_partitions


def test_sample_sizes_and_seeded_draws():
    assert Sampling(0.1).size(1000) == 100 and Sampling(0.01).size(1000) == 10
    assert Sampling(0.1, minimum=20).size(100) == 20 and Sampling(0.001).size(10) == 1
    assert Sampling(1.0).size(7) == 7
    draw = sample_partitions(range(100), Sampling(0.1), seed=3, server_round=5, purpose=TRAIN)
    assert len(draw) == 10 and draw == sorted(set(draw))
    assert draw == sample_partitions(range(99, -1, -1), Sampling(0.1), 3, 5, TRAIN)  # replayable
    assert draw != sample_partitions(range(100), Sampling(0.1), 3, 6, TRAIN)  # per round
    assert draw != sample_partitions(range(100), Sampling(0.1), 3, 5, EVALUATE)  # per purpose
    gone = draw[0]  # a sampled client is down: the others keep their slots, one more joins
    without = sample_partitions(
        range(100), Sampling(0.1), 3, 5, TRAIN, connected=set(range(100)) - {gone}
    )
    assert len(without) == 10 and set(draw) - {gone} < set(without) and gone not in without
    final = Rounds(evaluate=Sampling(0.01), last_round=4, final_clients=1000)
    assert final.evaluation(3, 10_000).size(10_000) == 100  # fraction_evaluate
    assert final.evaluation(4, 10_000).size(10_000) == 1000  # last round: a seeded 1000
    assert final.evaluation(4, 800).size(800) == 800  # a smaller federation: everyone
    assert Rounds(last_round=4).evaluation(4, 10_000).size(10_000) == 10_000  # 0: all
    rounds = Rounds(evaluate_every=3, last_round=7)
    assert [r for r in range(1, 8) if rounds.evaluates(r)] == [3, 6, 7]
