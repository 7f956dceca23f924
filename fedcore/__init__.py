"""The transport-free core of fedzda: data, partitions, models, the SGD loop, the algorithms
(one module each, in :mod:`fedcore.algorithms`), the wire protocol, configuration and the
run directory, and one round without transport (:mod:`fedcore.round`). Plain PyTorch that
imports without Flower: :mod:`fedcore.protocol` imports Flower's record types only when it
builds records. With ``FEDZDA_REPRODUCIBLE=1`` the import pins torch's kernels and threads
(:mod:`fedcore.reproducible`)."""

from fedcore import reproducible

if reproducible.enabled():
    reproducible.apply()
