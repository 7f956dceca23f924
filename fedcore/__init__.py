"""The transport-free core of fedzda: data, partitions, models, the SGD loop, the algorithms
(one module each, in :mod:`fedcore.algorithms`), the wire protocol, configuration and the
run directory. Plain PyTorch that tests call without running Flower; the one module that
imports Flower is :mod:`fedcore.protocol` (its record types), whose keys the algorithms use."""
