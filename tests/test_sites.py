"""Sites: a SuperNode's own files, what it reports, how the server takes sites in or refuses
them, and the tool that writes a simulated federation as site files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedcore.config import ConfigError, load_config
from fedcore.data import DatasetError
from fedcore.federation import build_federation
from fedcore.sites import client_data, read_site, site_summary
from fedcore.sitespec import SiteError, SiteReport, parse_floats, resolve
from scripts.make_sites import write_sites


def _npz(path, n=20, shape=(1, 8, 8), labels=3, **extra):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = np.arange(n) % labels
    np.savez(path, x=x, y=y, **extra)
    return path


def test_npz_site_holds_out_a_seeded_share(tmp_path):
    path = str(_npz(tmp_path / "a.npz"))
    read_site.cache_clear()
    s = read_site(path, "", 0.25, 7)
    assert s.name == "a" and len(s.y) == 15 and len(s.y_test) == 5
    read_site.cache_clear()
    again = read_site(path, "", 0.25, 7)
    assert np.array_equal(s.x_test, again.x_test)  # the same seed, the same split
    read_site.cache_clear()
    other = read_site(path, "", 0.25, 8)
    assert not np.array_equal(s.y_test, other.y_test) or not np.array_equal(s.x, other.x)


def test_npz_site_with_its_own_test_split(tmp_path):
    x_test = np.zeros((4, 8, 8), dtype=np.uint8)
    path = str(_npz(tmp_path / "b.npz", x_test=x_test, y_test=np.array([0, 1, 2, 0])))
    s = read_site(path, "site-b")
    assert s.name == "site-b" and len(s.y) == 20 and s.x_test.shape == (4, 1, 8, 8)


def test_image_folder_site(tmp_path):
    from PIL import Image

    for label in (0, 2):
        (tmp_path / "imgs" / str(label)).mkdir(parents=True)
        for i in range(3):
            img = np.full((6, 6), 40 * label + i, dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "imgs" / str(label) / f"{i}.png")
    s = read_site(str(tmp_path / "imgs"), "", 0.5, 0)
    assert s.input_shape == (1, 6, 6)
    assert sorted(np.concatenate([s.y, s.y_test]).tolist()) == [0, 0, 0, 2, 2, 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.npz"), "does not exist"),
        (lambda d: (d / "j.npz").write_bytes(b"not a zip") and str(d / "j.npz"), "not an .npz"),
        (lambda d: str(_npz(d / "empty.npz", n=0)), "no samples"),
        (lambda d: (np.savez(d / "flat.npz", x=np.zeros((5, 3)), y=np.zeros(5, int)),
                    str(d / "flat.npz"))[1], "not N images"),
        (lambda d: (np.savez(d / "neg.npz", x=np.zeros((5, 4, 4), np.uint8), y=-np.ones(5, int)),
                    str(d / "neg.npz"))[1], "negative labels"),
        (lambda d: (np.savez(d / "noy.npz", x=np.zeros((5, 4, 4), np.uint8)),
                    str(d / "noy.npz"))[1], "not x and y"),
        (lambda d: str(_npz(d / "half.npz", x_test=np.zeros((2, 8, 8), np.uint8))),
         "both x_test and y_test"),
        (lambda d: ((d / "named" / "cat").mkdir(parents=True), str(d / "named"))[1],
         "not label indices"),
    ],
    ids=["missing", "unreadable", "empty", "shape", "negative", "no-labels", "half-test",
         "folder-names"],
)  # fmt: skip
def test_bad_site_data_is_one_clear_error(tmp_path, make, message):
    read_site.cache_clear()
    with pytest.raises(DatasetError, match=message):
        read_site(make(tmp_path))


def test_labels_outside_the_federation_are_refused(tmp_path):
    s = read_site(str(_npz(tmp_path / "c.npz", labels=5)))
    with pytest.raises(DatasetError, match="outside the federation's 0..2"):
        client_data(s, (0.5,), (0.25,), 3)
    with pytest.raises(DatasetError, match="1 channels, the federation 3"):
        client_data(s, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), 5)
    data = client_data(s, (0.5,), (0.25,), 5)
    assert data.counts.tolist() == np.bincount(s.y, minlength=5).tolist()


def _report(node, name, shape=(1, 8, 8), top=2, n=10, pixels=None, **more):
    summary = {"num-examples": n, "num-test": 2, "input-shape": list(shape), "max-label": top}
    if pixels is not None:
        x = pixels.astype(np.float64) / 255.0
        summary |= {"pixel-count": int(x.shape[0] * x.shape[2] * x.shape[3]),
                    "channel-sum": x.sum((0, 2, 3)).tolist(),
                    "channel-sumsq": (x**2).sum((0, 2, 3)).tolist()}  # fmt: skip
    return SiteReport(node, name, summary | more)


def test_resolve_takes_in_fitting_sites_by_name_and_refuses_the_rest():
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (10, 1, 8, 8)).astype(np.uint8) for _ in range(2))
    reports = [
        _report(11, "site-b", pixels=b),
        _report(12, "site-a", pixels=a),
        _report(13, "site-rgb", shape=(3, 8, 8), pixels=a),
        SiteReport(14, "site-broken", {}, "cannot read /data/x.npz"),
        _report(15, "site-labels", top=9, pixels=a),
    ]
    fed = resolve(reports, num_classes=3)
    assert fed.names == ("site-a", "site-b") and fed.partitions == {12: 0, 11: 1}
    assert set(fed.refused) == {13, 14, 15}
    assert "(3, 8, 8)" in fed.refused[13] and "cannot read" in fed.refused[14]
    assert "label 9" in fed.refused[15]
    pooled = np.concatenate([a, b]).astype(np.float64) / 255.0
    assert fed.spec.mean[0] == pytest.approx(pooled.mean(), rel=1e-6)
    assert fed.spec.std[0] == pytest.approx(pooled.std(ddof=1), rel=1e-6)
    assert fed.counts is None  # no site shared its label counts


def test_resolve_takes_configured_spec_and_shared_counts():
    counts = [{"label-counts": [3, 7]}, {"label-counts": [5]}]
    reports = [_report(1, "x", **counts[0]), _report(2, "y", **counts[1])]
    fed = resolve(reports, (1, 8, 8), 4, (0.5,), (0.2,))
    assert fed.spec.mean == (0.5,) and fed.spec.num_classes == 4
    assert fed.counts.tolist() == [[3, 7, 0, 0], [5, 0, 0, 0]]


def test_resolve_fails_clearly_without_a_usable_site():
    with pytest.raises(SiteError, match="no site is usable"):
        resolve([SiteReport(1, "a", {}, "missing")])
    with pytest.raises(SiteError, match="give each a site-name"):
        resolve([_report(1, "a"), _report(2, "a")], mean=(0.5,), std=(0.2,))
    with pytest.raises(SiteError, match="data.mean"):
        resolve([_report(1, "a")])


def test_site_files_are_the_simulated_partitions_bit_for_bit(tmp_path):
    """The site tool's files, read as a SuperNode reads them and normalised with
    sites.toml's statistics, are the simulation's client data exactly."""
    keys = "data.train_subset=600 data.test_subset=200 partition.client_test_size=40"
    fed = build_federation(load_config(None, keys).with_clients(3))
    paths = write_sites(fed, tmp_path)
    toml = dict(line.split(" = ", 1) for line in (tmp_path / "sites.toml").read_text().splitlines())
    mean = parse_floats(toml["data.mean"].strip('"'))
    std = parse_floats(toml["data.std"].strip('"'))
    assert mean == fed.train.spec.mean and std == fed.train.spec.std
    for i, path in enumerate(paths):
        read_site.cache_clear()
        site = read_site(str(path))
        got, want = client_data(site, mean, std, 10), fed.client(i)
        assert torch.equal(got.train.x, want.train.x) and torch.equal(got.train.y, want.train.y)
        assert torch.equal(got.test.x, want.test.x) and np.array_equal(got.counts, want.counts)
    summary = site_summary(read_site(str(paths[0])), stats=False, counts=True)
    assert summary["label-counts"] == fed.counts[0][: len(summary["label-counts"])].tolist()
    cfg = load_config(None, " ".join(f"{k}={v}" for k, v in toml.items()))
    assert cfg.data.dataset == "sites" and cfg.data.num_sites == 3


def test_site_keys_are_checked_up_front():
    with pytest.raises(ConfigError) as e:
        load_config(None, "data.dataset=sites data.mean='0.5,0.5' data.std=0.2 "
                    "data.input_shape=1,28 output.leakage=true")  # fmt: skip
    text = str(e.value)
    for key in ("data.num_sites", "data.input_shape", "data.mean", "output.leakage"):
        assert key in text
    with pytest.raises(ConfigError, match="only for data.dataset='sites'"):
        load_config(None, "data.num_sites=3")


def test_a_site_refuses_itself_with_its_reason(tmp_path):
    """The ClientApp's answer to the site query: a summary, or the refusal (and its log)."""
    from client_app.app import site_answer
    from fedcore.protocol import SiteQuery, decode_site_report

    read_site.cache_clear()
    path = str(_npz(tmp_path / "s.npz", labels=5))
    name, summary, refusal = decode_site_report(
        site_answer({"data-path": path, "site-name": "s"}, SiteQuery(True, True))
    )
    assert (name, refusal) == ("s", "") and summary["num-examples"] == 16
    assert sum(summary["label-counts"]) == 16 and len(summary["label-counts"]) == 5
    assert len(summary["channel-sum"]) == 1 and summary["pixel-count"] == 16 * 64
    for query, reason in [
        (SiteQuery(input_shape="3,8,8"), "its images are (1, 8, 8)"),
        (SiteQuery(num_classes=3), "label 4 is outside"),
    ]:
        assert reason in decode_site_report(site_answer({"data-path": path}, query))[2]
    missing = decode_site_report(site_answer({"data-path": str(tmp_path / "no")}, SiteQuery()))
    assert "does not exist" in missing[2]
    assert "no data-path" in decode_site_report(site_answer({}, SiteQuery()))[2]
