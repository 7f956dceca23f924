"""One-off studies: each answers one question; its numbers go to ``benchmarks/results/NAME.json``.

Run one with ``.venv/bin/python -m benchmarks.studies.NAME`` (``--help`` for its options;
``inversion_speed`` and ``torch_builds`` write their JSON only with ``--out``;
``membership`` writes the ``membership`` section of ``leakage.json``; ``paired_timing``
takes the methods, e.g. ``fedavg,fedlc``).

- ``client_cpus``: the same runs with 1 and with 2 CPUs per simulated ClientApp.
- ``client_floor``: per-client accuracy of a centrally trained model, the floor of the spread.
- ``inversion_speed``: training vs inversion throughput; cold vs warm-started inversion.
- ``leakage``: how close ZDAS's synthetic samples come to each client's real images.
- ``membership``: does the nearest ZDAS sample tell a client's training images from unseen ones?
- ``ray_cluster``: a two-node Ray cluster on one host under ``flwr run .``.
- ``reproducible``: reproducible mode's numbers under other kernel settings, and its cost.
- ``paired_timing``: the paired comparison's methods back to back, seconds per round.
- ``paths``: every algorithm path's numbers (and model hash), recorded before a refactor.
- ``aggregation_cost``: what each robust rule adds to a round.
- ``head_alignment``: a label-flip signal for ZDAS's screen, measured before it is built.
- ``pools``: warm starts under client sampling, server-side banks vs per-client pools.
- ``scale``: FedAvg and ZDA on 10 to 10,000 simulated clients: memory, seconds per round.
- ``speed``: training vs inversion throughput, FedAvg vs ZDA rounds, distillation quality.
- ``sample_quality``: inversion settings judged by a student trained on their samples.
- ``secagg``: ZDAC's seconds per round with and without SecAgg+.
- ``torch_builds``: ``inversion_speed``'s throughput under two torch builds, side by side.
"""
