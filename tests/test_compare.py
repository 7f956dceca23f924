"""README command 1's comparison: table, plot and refusal of a bad experiment."""

import json

import numpy as np

from fedcore.plots import plot_comparison
from scripts.compare import main, summarise, table


def _run_dir(path, accs, std, worst, secs, clients):
    path.mkdir(parents=True)
    rows = [
        {"round": i + 1, "global_accuracy": a, "client_acc_std": std,
         "client_acc_worst10": worst, "round_seconds": secs}
        for i, a in enumerate(accs)
    ]  # fmt: skip
    rows[-1]["client_accuracies"] = clients  # the last round scores every client
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_side_by_side_table_and_plot(tmp_path):
    results = {
        "fedavg": summarise(
            _run_dir(tmp_path / "fedavg", [0.5, 0.7], 0.18, 0.35, 9.0, [0.9, 0.3, None, 0.6])
        ),
        "zda": summarise(_run_dir(tmp_path / "zda", [0.6, 0.8], 0.08, 0.66, 13.5, [0.7, 0.8])),
    }
    assert results["fedavg"]["client_accuracies"] == [0.9, 0.3, None, 0.6]
    text = table(results)
    assert text.splitlines()[0].split() == ["algorithm", "final", "acc", "client", "std",
                                            "worst-10%", "s/round"]  # fmt: skip
    assert text.splitlines()[2].split() == ["fedavg", "0.7000", "0.1800", "0.3500", "9.0"]
    assert text.splitlines()[3].split() == ["zda", "0.8000", "0.0800", "0.6600", "13.5"]
    fig = plot_comparison(results, tmp_path / "compare.png", "t")
    assert (tmp_path / "compare.png").stat().st_size > 0
    curve, clients = fig.axes  # accuracy per round | last round's clients, worst to best
    assert [line.get_label() for line in curve.get_lines()] == ["fedavg", "zda"]
    assert [list(line.get_ydata()) for line in curve.get_lines()] == [[0.5, 0.7], [0.6, 0.8]]
    fedavg, zda = clients.get_lines()
    assert list(fedavg.get_ydata()) == [0.3, 0.6, 0.9]  # the client that did not report: out
    assert list(zda.get_ydata()) == [0.7, 0.8]
    assert np.allclose(fedavg.get_xdata(), [100 / 6, 50, 500 / 6])  # rank in % of the clients
    assert np.allclose(zda.get_xdata(), [25, 75])
    assert fedavg.get_label() == "fedavg (std 0.245)" and zda.get_label() == "zda (std 0.050)"


def test_bad_experiment_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["rounds=0", f"output.dir={tmp_path / 'out'}"]) == 1
    assert "rounds: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_readme_table_is_generated_from_the_published_compare_json():
    """README command 1's table comes from benchmarks/results/compare.json and names the
    platform that made it (``python -m scripts.compare --readme`` rewrites it)."""
    from scripts.compare import BEGIN, END, PUBLISHED, README, readme_block

    doc = json.loads(PUBLISHED.read_text())
    text = README.read_text()
    block = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END
    assert block == readme_block(doc)
    assert doc["platform"]["kind"] in block and set(doc["methods"]) == {
        "fedavg", "fedlc", "zdas+scaffold"}  # fmt: skip


def test_methods_parse_into_algorithms_and_their_settings():
    from scripts.compare import METHODS, parse_methods

    assert parse_methods("fedavg; fedlc fedlc.tau=16 ;") == {"fedavg": "", "fedlc": "fedlc.tau=16"}
    assert parse_methods(METHODS)["zdas+scaffold"] == "train.lr=0.003 zdas.finetune_lr=0.0003"
