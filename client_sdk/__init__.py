"""Thin Python SDK for HERMES co-simulation clients and external schedulers.

Imports only grpc and the generated stubs (hermes.v1), never the server or the
simulator, so a scheduler author needs nothing else:

    from client_sdk import Client, RoundRobinScheduler
    with Client("127.0.0.1:50051") as client:
        with client.create_session("hetero-demo", seed=1) as session:
            session.inject([{"prompt_tokens": 512, "output_tokens": 64}])
            print(RoundRobinScheduler().run(session))
"""

from hermes.v1 import common_pb2 as pb

from .client import Client, spec_source
from .errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    HermesError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .scheduler import (
    Batch,
    BatchScheduler,
    Defer,
    Drop,
    ExternalScheduler,
    LeastKvScheduler,
    RoundRobinScheduler,
)
from .session import Session, answer, request_input

__all__ = [
    "AlreadyExists", "Batch", "BatchScheduler", "Client", "DeadlineExceeded", "Defer", "Drop", "ExternalScheduler", "FailedPrecondition",
    "HermesError", "Internal", "InvalidArgument", "LeastKvScheduler", "NotFound", "OutOfRange",
    "ResourceExhausted", "RoundRobinScheduler", "Session", "Unauthenticated", "Unavailable", "answer", "pb",
    "request_input", "spec_source",
]
