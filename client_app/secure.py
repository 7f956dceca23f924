"""The client half of secure aggregation (SecAgg+) for algorithms whose server only averages.

Flower 1.42's ``secaggplus_mod`` speaks the legacy record format (``fitins.*`` in,
``fitres.*`` out). :func:`secure_aggregation_mod` puts it in front of this app's train
function only for SecAgg+ messages, with an adapter inside it that turns the legacy request
into this app's ``arrays``/``config`` train message and the reply back into a ``FitRes``.
Every other message reaches the app unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.client.mod import secaggplus_mod
from flwr.common import (
    Code,
    FitRes,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

from fedcore.protocol import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, STATE_KEYS


def secure_aggregation_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """SecAgg+ for train messages that carry its configuration; the rest pass through."""
    if (
        msg.metadata.message_type != MessageType.TRAIN
        or RECORD_KEY_CONFIGS not in msg.content.config_records
    ):
        return call_next(msg, ctxt)
    return secaggplus_mod(msg, ctxt, lambda m, c: _legacy_train(m, c, call_next))


def _legacy_train(msg: Message, ctxt: Context, call_next) -> Message:
    """``fitins.*`` -> this app's train request; its reply -> ``fitres.*``."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config: dict[str, ConfigRecordValues] = dict(fitins.config)  # dict is invariant
    names = str(config.pop(STATE_KEYS)).split(",")
    arrays = parameters_to_ndarrays(fitins.parameters)
    state = OrderedDict(
        (k, Array(np.ascontiguousarray(a))) for k, a in zip(names, arrays, strict=True)
    )
    msg.content = RecordDict({ARRAYS: ArrayRecord(state), CONFIG: ConfigRecord(config)})
    reply = call_next(msg, ctxt)
    if reply.has_error():
        return reply
    out = reply.content[ARRAYS].to_numpy_ndarrays()
    metrics = reply.content[METRICS]
    scalars: dict[str, Scalar] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    fitres = FitRes(
        Status(Code.OK, ""), ndarrays_to_parameters(out), int(metrics[NUM_EXAMPLES]), scalars
    )
    reply.content = compat.fitres_to_recorddict(fitres, keep_input=True)
    return reply
