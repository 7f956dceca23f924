"""The inversion engine, class allocation, pools and ZDAS, on real Fashion-MNIST (CPU, fast)."""

import warnings

import numpy as np
import pytest
import torch

from fedcore.algorithms.fedavg import weighted_average
from fedcore.algorithms.zdas import ZdasConfig, zdas_round
from fedcore.data import DataSpec
from fedcore.datasets import load_dataset
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.partition import pathological
from fedcore.training import TrainConfig, evaluate
from inversion import InversionConfig, OwnBanks, SyntheticBank, allocate, invert
from inversion.allocation import budget_size, labels_for
from inversion.bank import invert_with_bank, nearest_rms
from inversion.engine import BNStatsLoss, js_divergence


@pytest.fixture(scope="module")
def fmnist():
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="module")
def teacher(fmnist):
    torch.manual_seed(0)
    m = build_model("cnn", 1, 10)
    train_local(m, fmnist.train.subset(range(4000)), TrainConfig(), seed=0)
    return m


def _invert(model, ds, labels, **kw):
    return invert(model, labels, InversionConfig(**kw), ds.spec)


def test_inverted_samples_are_classified_as_targets_and_match_bn_stats(teacher, fmnist):
    labels = torch.arange(10).repeat(10)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    res = _invert(teacher, fmnist.train, labels, steps=100)
    assert res.x.shape == (100, 1, 28, 28) and torch.equal(res.y, labels)
    assert res.teacher_accuracy >= 0.9
    assert res.bn_loss_end < 0.3 * res.bn_loss_start
    lo = (0 - fmnist.train.mean[0]) / fmnist.train.std[0]
    assert float(res.x.min()) >= lo - 1e-5  # stays a valid image
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_warm_start_reaches_cold_quality_in_few_steps(teacher, fmnist):
    labels = torch.arange(10).repeat(5)
    cold = _invert(teacher, fmnist.train, labels, steps=100)
    short_cold = _invert(teacher, fmnist.train, labels, steps=10)
    warm = invert(
        teacher,
        labels,
        InversionConfig(warm_steps=10),
        fmnist.train.spec,
        init=cold.x,
    )
    assert warm.steps == 10
    assert warm.teacher_accuracy >= 0.9
    assert warm.bn_loss_end < short_cold.bn_loss_end


def test_bn_hooks_match_the_reference_loss_and_keep_eval_outputs(teacher):
    """The fast hooks (sums of x - running_mean, BN as an affine map) compute exactly the
    textbook statistics loss, and leave the eval-mode forward pass unchanged."""
    teacher.eval()
    x = torch.randn(16, 1, 28, 28)
    ref_terms = []

    def ref_hook(module, inputs, _out):
        z = inputs[0]
        mu, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
        ref_terms.append(
            torch.linalg.vector_norm(mu - module.running_mean)
            + torch.linalg.vector_norm(var - module.running_var)
        )

    bns = [m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    handles = [m.register_forward_hook(ref_hook) for m in bns]
    with torch.no_grad():
        ref_out = teacher(x)
    for h in handles:
        h.remove()
    ref_loss = 10.0 * ref_terms[0] + sum(ref_terms[1:])
    hooks = BNStatsLoss(teacher, first_multiplier=10.0)
    try:
        xg = x.clone().requires_grad_(True)
        out = teacher(xg)
        loss = hooks.pop()
        loss.backward()
    finally:
        hooks.remove()
    assert len(hooks.layers) == len(bns) == 2
    torch.testing.assert_close(out.detach(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss.detach(), ref_loss, rtol=1e-4, atol=1e-4)
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    with torch.no_grad():  # the hooks are gone: the model is back to plain BatchNorm
        torch.testing.assert_close(teacher(x), ref_out)


def test_model_without_batchnorm_warns_and_runs():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with pytest.warns(UserWarning, match="no BatchNorm"):
        res = invert(
            model,
            torch.tensor([0, 1, 2, 0]),
            InversionConfig(steps=30, jitter=0),
            DataSpec((1, 4, 4), (0.0,), (1.0,), ("a", "b", "c")),
        )
    assert res.teacher_accuracy == 1.0 and res.bn_loss_end == 0.0


def test_adi_term_runs_and_moves_samples_toward_student_teacher_disagreement(teacher, fmnist):
    """The competition (ADI) term rewards the Jensen–Shannon divergence between teacher and
    student: from the same seed (same noise, same jitter), samples inverted with adi > 0 are
    ones a different student disagrees on more than those inverted without it, and the
    teacher still labels them as their targets. Without a student the term is off."""
    student = build_model("cnn", 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _invert(teacher, fmnist.train, torch.arange(10), steps=5, adi=1.0)
    res2 = invert(
        teacher,
        torch.arange(10),
        InversionConfig(steps=5, adi=1.0),
        fmnist.train.spec,
        student=student,
    )
    assert res.x.shape == res2.x.shape == (10, 1, 28, 28)
    # without a student the competition term is off: the same samples as adi=0
    assert torch.equal(res.x, _invert(teacher, fmnist.train, torch.arange(10), steps=5).x)

    torch.manual_seed(1)
    student = build_model("cnn", 1, 10)  # a different model: 500 other images, other seed
    train_local(student, fmnist.train.subset(range(4000, 4500)), TrainConfig(), seed=1)
    labels, spec = torch.arange(10).repeat(2), fmnist.train.spec

    def disagreement(x: torch.Tensor) -> float:
        was = teacher.training
        teacher.eval()
        student.eval()
        try:
            with torch.no_grad():
                return float(js_divergence(teacher(x), student(x), 3.0))
        finally:
            teacher.train(was)

    for seed in (0, 1):
        cfgs = [InversionConfig(steps=40, adi=w, adi_temperature=3.0) for w in (0.0, 5.0)]
        plain, adi = (invert(teacher, labels, c, spec, student=student, seed=seed) for c in cfgs)
        assert not torch.equal(plain.x, adi.x)
        # measured 1.38-1.55x over seeds 0-7; 1.2x leaves room for other CPUs' rounding
        js_plain, js_adi = disagreement(plain.x), disagreement(adi.x)
        assert js_adi > 1.2 * js_plain, (seed, js_plain, js_adi)
        assert adi.teacher_accuracy >= 0.9 and plain.teacher_accuracy >= 0.9


def test_complement_allocation_arithmetic():
    counts = np.array([100, 0, 50, 100, 90])
    # deficits to the largest class: [0, 100, 50, 0, 10] (sum 160)
    assert allocate("complement", counts, 160).tolist() == [0, 100, 50, 0, 10]
    assert allocate("complement", counts, 1000).tolist() == [0, 100, 50, 0, 10]  # capped
    assert allocate("complement", counts, 16).tolist() == [0, 10, 5, 0, 1]
    # 5% of 340 = 17: exact shares 10.625, 5.3125, 1.0625; the spare one goes to class 1
    assert allocate("complement", counts, 0.05).tolist() == [0, 11, 5, 0, 1]
    real_plus_syn = counts + allocate("complement", counts, 160)
    assert (real_plus_syn == 100).all()  # enough budget: exactly uniform
    assert allocate("complement", np.array([5, 5, 5]), 30).sum() == 0  # already balanced
    assert allocate("uniform", counts, 23).tolist() == [5, 5, 5, 4, 4]
    assert budget_size(0.1, 340) == 34 and budget_size(7, 340) == 7
    assert labels_for(np.array([2, 0, 1])).tolist() == [0, 2, 0]
    with pytest.raises(ValueError, match="unknown allocation"):
        allocate("balanced", counts, 10)


def test_pool_warm_starts_by_class_and_goes_stale():
    pool = SyntheticBank()
    gen = torch.Generator().manual_seed(0)
    _, warm = pool.init_for(torch.tensor([0, 1]), (1, 2, 2), 3, 5, gen)
    assert not warm.any()
    pool.update(torch.ones(2, 1, 2, 2), torch.tensor([0, 0]), server_round=3)
    init, warm = pool.init_for(torch.tensor([0, 1]), (1, 2, 2), 4, 5, gen)
    assert warm.tolist() == [True, False] and torch.equal(init[0], torch.ones(1, 2, 2))
    _, warm = pool.init_for(torch.tensor([0]), (1, 2, 2), 9, 5, gen)
    assert not warm.any()  # six rounds old: stale
    again = SyntheticBank.from_state(pool.state())
    assert again.round == 3 and torch.equal(again.x, pool.x)


def test_spread_draws_skip_this_rounds_samples_and_repeat_none_while_others_are_left():
    """Round 4 of a shared bank: the first draw takes the newest earlier-round samples; a
    sample merged in round 4 is never drawn in round 4; a second draw takes other samples
    first, and only then repeats."""
    bank, gen = SyntheticBank(), torch.Generator().manual_seed(0)
    ids = torch.arange(4, dtype=torch.float).view(4, 1, 1, 1)  # sample i holds the value i
    bank.merge(ids[:2], torch.tensor([0, 0]), server_round=2, per_class=8)
    bank.merge(ids[2:], torch.tensor([0, 0]), server_round=3, per_class=8)  # newest first
    first, warm = bank.init_for(torch.tensor([0]), (1, 1, 1), 4, 5, gen, spread=True)
    assert warm.all() and first.flatten().tolist() == [2.0]
    bank.merge(torch.full((1, 1, 1, 1), 9.0), torch.tensor([0]), server_round=4, per_class=8)
    second, _ = bank.init_for(torch.tensor([0, 0, 0, 0]), (1, 1, 1), 4, 5, gen, spread=True)
    assert second.flatten().tolist() == [3.0, 0.0, 1.0, 2.0]  # 9 is this round's; 2 last
    plain, _ = bank.init_for(torch.tensor([0]), (1, 1, 1), 4, 5, gen)
    assert plain.flatten().tolist() == [9.0]  # without spread: this round's newest first
    bank.merge(torch.full((2, 1, 1, 1), 7.0), torch.tensor([0, 0]), 4, per_class=4)
    assert bank.x.flatten().tolist() == [7.0, 7.0, 9.0, 2.0]  # 3, 0, 1 evicted
    assert bank.drawn is not None and bank.drawn.tolist() == [-1, -1, -1, 4]  # still aligned
    bank.update(ids[:1], torch.tensor([0]), server_round=4)
    assert bank.drawn is None


def test_nearest_rms_is_zero_for_copies_and_grows_with_spread():
    x = torch.zeros(4, 1, 2, 2)
    assert nearest_rms(x, torch.tensor([0, 0, 1, 1])) == 0.0
    x[1] += 2.0  # class 0: two samples 2 apart in every value
    x[3] += 1.0
    assert nearest_rms(x, torch.tensor([0, 0, 1, 1])) == pytest.approx(1.5)
    assert nearest_rms(x, torch.tensor([0, 1, 2, 3])) == 0.0  # no class has two samples


def test_only_new_samples_pay_the_cold_start(teacher, fmnist):
    """A pool covering class 0 but not class 1: class-0 samples are refined for warm_steps,
    the class-1 ones start from noise with the full steps; output follows the label order."""
    t = fmnist.train
    pool = SyntheticBank()
    cfg = InversionConfig(steps=40, warm_steps=3)
    first, warm = invert_with_bank(
        teacher, torch.zeros(6, dtype=torch.long), cfg, pool, 1, 5, t.spec
    )
    assert warm == 0.0 and first.steps == 40
    labels = torch.tensor([1, 0, 1, 0, 0, 0, 0, 1])
    res, warm = invert_with_bank(teacher, labels, cfg, pool, 2, 5, t.spec)
    assert warm == 5 / 8 and torch.equal(res.y, labels) and torch.equal(pool.y, labels)
    spent = res.sample_steps_per_s * res.seconds
    assert spent == pytest.approx(5 * 3 + 3 * 40, rel=1e-6)  # not 8 * 40
    assert res.teacher_accuracy >= 0.75


def test_zdas_gate_keeps_the_average_when_it_already_labels_the_samples(teacher, fmnist):
    """The average is the client model here, so it labels nearly all samples right: a gate at
    0.5 keeps it unchanged; without a gate the round fine-tunes and moves it."""

    def make():
        return build_model("cnn", 1, 10)

    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    fresh = make().state_dict()  # an untrained average labels about a tenth of them
    before = {k: v.clone() for k, v in state.items()}
    inv = InversionConfig(steps=30, warm_steps=2)

    def run(average, gate):
        cfg = ZdasConfig(samples_per_client=20, gate_accuracy=gate, inversion=inv)
        return zdas_round(make, average, [(0, state, None)], cfg, OwnBanks(), 1, fmnist.train.spec)

    kept, tuned, opened = run(state, 0.5), run(state, 0.0), run(fresh, 0.5)
    assert kept.metrics["zdas-average-acc"] >= 0.5 and kept.metrics["zdas-gated"] == 1.0
    assert kept.metrics["zdas-finetune-steps"] == 0.0
    assert all(torch.equal(kept.state[k], v) for k, v in before.items())
    assert tuned.metrics["zdas-gated"] == 0.0 and tuned.metrics["zdas-finetune-steps"] > 0
    assert not torch.equal(tuned.state["classifier.3.weight"], before["classifier.3.weight"])
    assert opened.metrics["zdas-average-acc"] < 0.5 and opened.metrics["zdas-gated"] == 0.0
    assert opened.metrics["zdas-finetune-steps"] > 0
    assert len(kept.y) == len(tuned.y) == len(opened.y) == 20


def test_zdas_gate_accuracy_must_be_a_share():
    assert ZdasConfig(gate_accuracy=1.5).problems("zdas.") == [
        "zdas.gate_accuracy: must be in [0, 1] (0: fine-tune every round), got 1.5"
    ]


@pytest.mark.slow(seconds=65)
def test_zdas_beats_plain_average_on_c1(fmnist):
    """#C=1: 10 single-class clients; fine-tuning on inverted samples must beat the average."""
    rng = np.random.default_rng(0)
    sub = fmnist.train.subset(np.sort(rng.choice(len(fmnist.train), 3000, replace=False)))
    test = fmnist.test.subset(range(2000))
    parts = pathological(sub.y.numpy(), 10, 1, seed=0)
    torch.manual_seed(0)

    def make():
        return build_model("cnn", 1, 10)

    global_state = make().state_dict()
    for rnd in (1, 2):
        states, counts = [], []
        for i, p in enumerate(parts):
            m = make()
            m.load_state_dict(global_state)
            train_local(m, sub.subset(p), TrainConfig(), seed=100 * rnd + i)
            states.append(m.state_dict())
            counts.append(np.bincount(sub.y[p].numpy(), minlength=10))
        averaged = weighted_average(states, [len(p) for p in parts])
        global_state = averaged
    cfg = ZdasConfig(
        samples_per_client=50, share_label_counts=True, inversion=InversionConfig(steps=200)
    )
    clients = list(zip(range(10), states, counts, strict=True))
    out = zdas_round(make, averaged, clients, cfg, OwnBanks(), 2, fmnist.train.spec)
    plain, tuned = make(), make()
    plain.load_state_dict(averaged)
    tuned.load_state_dict(out.state)
    acc_plain = evaluate(plain, test)["accuracy"]
    acc_tuned = evaluate(tuned, test)["accuracy"]
    assert acc_tuned > acc_plain + 0.05, (acc_plain, acc_tuned)
    for k, v in averaged.items():  # averaged BN running statistics are kept
        if k.endswith(("running_mean", "running_var")):
            assert torch.equal(out.state[k], v)


def test_context_rows_join_the_bn_statistics_only(teacher, fmnist):
    """Real rows given as ``context`` count in the BatchNorm statistics of every batch (scaled
    to the batch's share), are never optimised or labelled, and must match the input shape."""
    spec, labels = fmnist.train.spec, torch.tensor([0, 2, 4, 6] * 2)
    ctx = fmnist.train.rows(slice(0, 12)).clone()
    x0 = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    cfg = InversionConfig(batch_size=8, jitter=0)
    res = invert(teacher, labels, cfg, spec, init=x0, steps=0, context=ctx)
    hooks = BNStatsLoss(teacher, cfg.first_bn_multiplier)
    try:
        teacher.eval()
        with torch.no_grad():
            teacher(torch.cat([x0, ctx]))
            union = float(hooks.pop())
            teacher(x0)
            alone = float(hooks.pop())
    finally:
        hooks.remove()
    assert res.bn_loss_end == pytest.approx(union, rel=1e-4) and union != pytest.approx(alone)
    half = invert(teacher, labels[:4], cfg, spec, init=x0[:4], steps=0, context=ctx)
    hooks = BNStatsLoss(teacher, cfg.first_bn_multiplier)
    try:
        with torch.no_grad():
            teacher(torch.cat([x0[:4], ctx[:6]]))  # half a batch takes half the context
        assert half.bn_loss_end == pytest.approx(float(hooks.pop()), rel=1e-4)
    finally:
        hooks.remove()
    moved = invert(teacher, labels, InversionConfig(batch_size=8), spec, context=ctx, steps=30)
    assert moved.teacher_accuracy >= 0.9 and torch.equal(ctx, fmnist.train.rows(slice(0, 12)))
    with pytest.raises(ValueError, match="context rows"):
        invert(teacher, labels, cfg, spec, context=torch.zeros(3, 1, 14, 14))
