"""The leakage measure: copies of a client's images are flagged, unrelated images are not."""

import torch

from fedcore.leakage import leakage, psnr, ssim_matrix, ssim_nearest
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
