"""One-off studies: each answers one question; its numbers go to ``benchmarks/results/NAME.json``.

Run one with ``.venv/bin/python -m benchmarks.studies.NAME`` (``--help`` for its options;
``inversion_speed`` and ``torch_builds`` write their JSON only with ``--out``).

- ``client_cpus``: the same runs with 1 and with 2 CPUs per simulated ClientApp.
- ``client_floor``: per-client accuracy of a centrally trained model, the floor of the spread.
- ``inversion_speed``: training vs inversion throughput; cold vs warm-started inversion.
- ``leakage``: how close ZDAS's synthetic samples come to each client's real images.
- ``reproducible``: reproducible mode's numbers under other kernel settings, and its cost.
- ``pools``: warm starts under client sampling, server-side banks vs per-client pools.
- ``sample_quality``: inversion settings judged by a student trained on their samples.
- ``secagg``: ZDAC's seconds per round with and without SecAgg+.
- ``torch_builds``: ``inversion_speed``'s throughput under two torch builds, side by side.
"""
