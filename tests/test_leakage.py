"""The leakage measure: copies of a client's images are flagged, unrelated images are not."""

import torch

from fedcore.leakage import closeness, leakage, psnr, round_report, ssim_matrix, ssim_nearest
from fedcore.models import build_model


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 28, 28, generator=g)
    sim = ssim_matrix(a, torch.cat([a, torch.rand(2, 1, 28, 28, generator=g)]))
    assert torch.allclose(sim[:, :3].diagonal(), torch.ones(3), atol=1e-4)
    assert (sim[:, 3:] < 0.5).all()
    assert psnr(a, a).eq(100).all() and (psnr(a, 1 - a) < 20).all()


def test_memorised_synthetic_samples_stand_out_from_the_baseline():
    g = torch.Generator().manual_seed(1)
    own_x = torch.randn(40, 1, 28, 28, generator=g)
    own = (own_x, torch.zeros(40).long())
    others = (torch.randn(30, 1, 28, 28, generator=g), torch.zeros(30).long())
    model = build_model("cnn", 1, 2)
    copies = own_x[:10] + 0.01 * torch.randn(10, 1, 28, 28, generator=g)
    report, close = leakage(copies, torch.zeros(10).long(), own, others, model, (0.5,), (0.25,))
    assert report["synthetic_ssim_mean"] > 0.95 > report["baseline_ssim_mean"]
    assert report["synthetic_psnr_mean"] > report["baseline_psnr_mean"] + 10
    assert close.nearest.tolist() == list(range(10))
    fresh = torch.randn(10, 1, 28, 28, generator=g)
    report, _ = leakage(fresh, torch.zeros(10).long(), own, others, model, (0.5,), (0.25,))
    assert abs(report["synthetic_ssim_mean"] - report["baseline_ssim_mean"]) < 0.1
    assert report["baseline_samples"] == 30


def test_candidate_search_finds_the_exhaustive_ssim_nearest():
    g = torch.Generator().manual_seed(2)
    ref = torch.rand(300, 1, 28, 28, generator=g)
    query = (ref[:20] + 0.2 * torch.rand(20, 1, 28, 28, generator=g)).clamp(0, 1)
    best, idx = ssim_nearest(query, ref, candidates=16)
    full = ssim_matrix(query, ref)
    assert torch.equal(idx, full.argmax(1)) and torch.allclose(best, full.max(1).values)


def test_baseline_falls_back_to_held_out_images_when_no_other_client_has_the_class():
    g = torch.Generator().manual_seed(3)
    own = (torch.randn(20, 1, 28, 28, generator=g), torch.zeros(20).long())
    others = (torch.randn(20, 1, 28, 28, generator=g), torch.ones(20).long())  # class 1 only
    holdout = (torch.randn(30, 1, 28, 28, generator=g), torch.arange(30) % 2)
    model = build_model("cnn", 1, 2)
    syn = torch.randn(5, 1, 28, 28, generator=g)
    rep, _ = leakage(syn, torch.zeros(5).long(), own, others, model, (0.5,), (0.25,))
    assert rep["baseline_samples"] == 0 and "baseline_ssim_mean" not in rep
    rep, _ = leakage(syn, torch.zeros(5).long(), own, others, model, (0.5,), (0.25,),
                     holdout=holdout)  # fmt: skip
    assert rep["baseline_samples"] == 15 and rep["baseline_from_holdout"] == 1.0


def test_round_report_finds_a_copied_client_image_and_its_owner():
    """What ``output.leakage`` writes each round (round_report, as the ServerApp calls it):
    a synthetic set holding an exact copy of one of client 1's images scores SSIM 1 for
    client 1 only, and the closest pair of the round is that copy beside its original."""
    g = torch.Generator().manual_seed(4)
    mean, std = (0.5,), (0.25,)

    def normalised(n: int) -> torch.Tensor:  # pixels in [0, 1], as the clients' images are
        return (torch.rand(n, 1, 28, 28, generator=g) - 0.5) / 0.25

    clients = {pid: (normalised(30), torch.arange(30) % 3) for pid in range(3)}
    x, y = normalised(12), torch.arange(12) % 3
    sources = torch.arange(12) // 4  # four synthetic samples per client model
    x[5], y[5] = clients[1][0][7], clients[1][1][7]  # client 1's second sample: a copy
    torch.manual_seed(0)
    model = build_model("cnn", 1, 3)
    holdout = (normalised(9), torch.arange(9) % 3)
    report, pairs = round_report(
        x, y, sources, clients.__getitem__, range(3), model, mean, std, holdout=holdout, pairs=3
    )
    per = report["clients"]
    assert sorted(per) == ["0", "1", "2"]
    assert abs(per["1"]["synthetic_ssim_max"] - 1.0) < 1e-4
    assert per["0"]["synthetic_ssim_max"] < 0.5 and per["2"]["synthetic_ssim_max"] < 0.5
    assert per["1"]["synthetic_ssim_mean"] > per["1"]["baseline_ssim_mean"] + 0.15
    syn, real, sim = pairs[0]
    assert torch.equal(syn, x[5]) and torch.equal(real, clients[1][0][7])
    assert abs(sim - 1.0) < 1e-4 and all(p[2] < 0.5 for p in pairs[1:])
    for rep in (*per.values(), report["mean"]):  # what the end-to-end test bounds
        for key in ("synthetic_ssim_mean", "baseline_ssim_mean", "synthetic_cosine_mean"):
            assert -1.0 <= rep[key] <= 1.0, (key, rep[key])
    # per sample: the copy's nearest image is its original, in pixels and in features
    close = closeness(x[sources == 1], clients[1][0], model, mean, std)
    assert close.nearest[1] == 7 and close.psnr[1] == 100.0
    assert abs(float(close.cosine[1]) - 1.0) < 1e-4
    assert (close.ssim[[0, 2, 3]] < 0.5).all()


def test_membership_auc_is_half_without_signal_and_one_for_copies():
    from fedcore.membership import auc, client_membership, matched_sets

    assert auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.5  # ties count half
    g = torch.Generator().manual_seed(0)
    members = torch.rand(200, 1, 8, 8, generator=g)
    my = torch.arange(200) % 4
    pool_x, pool_y = torch.rand(400, 1, 8, 8, generator=g), torch.arange(400) % 4
    mi, ni = matched_sets(my, pool_y, g, limit=100)
    assert torch.equal(torch.bincount(pool_y[ni]), torch.bincount(my[mi]))  # one class mix
    assert len(mi) == 100
    flat = lambda t: t.flatten(1)  # noqa: E731
    copies = client_membership(members[:100], (members, my), (pool_x, pool_y), flat)
    assert copies["auc_pixel"] > 0.65 and copies["auc_feature"] > 0.65  # half are copies
    fresh = client_membership(torch.rand(50, 1, 8, 8, generator=g), (members, my),
                              (pool_x, pool_y), flat)  # fmt: skip
    assert abs(fresh["auc_pixel"] - 0.5) < 0.1  # unrelated samples: no signal
