"""README command 1's comparison: table, plot and refusal of a bad experiment."""

import json

from scripts.compare import main, plot, summarise, table


def _run_dir(path, accs, std, worst, secs):
    path.mkdir(parents=True)
    rows = [
        {"round": i + 1, "global_accuracy": a, "client_acc_std": std,
         "client_acc_worst10": worst, "round_seconds": secs}
        for i, a in enumerate(accs)
    ]  # fmt: skip
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_side_by_side_table_and_plot(tmp_path):
    results = {
        "fedavg": summarise(_run_dir(tmp_path / "fedavg", [0.5, 0.7], 0.18, 0.35, 9.0)),
        "zda": summarise(_run_dir(tmp_path / "zda", [0.6, 0.8], 0.08, 0.66, 13.5)),
    }
    text = table(results)
    assert text.splitlines()[0].split() == ["algorithm", "final", "acc", "client", "std",
                                            "worst-10%", "s/round"]  # fmt: skip
    assert text.splitlines()[2].split() == ["fedavg", "0.7000", "0.1800", "0.3500", "9.0"]
    assert text.splitlines()[3].split() == ["zda", "0.8000", "0.0800", "0.6600", "13.5"]
    plot(results, tmp_path / "compare.png", "t")
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_bad_experiment_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["rounds=0", f"output.dir={tmp_path / 'out'}"]) == 1
    assert "rounds: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
