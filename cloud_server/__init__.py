"""The cloud half of splitinfer: ``splitinfer serve``, a torch-free gRPC inference server.

container bytes -> range decoding (constriction) -> dynamic batching -> ONNX classifier
(onnxruntime) -> label and top-5, with gRPC health checking, reflection, Prometheus metrics,
optional TLS and token auth. See ``cloud_server.server`` for the service and its semantics.

Importing this package is cheap (no grpc), so the ``splitinfer`` command can register ``serve``
on an edge-only install.
"""
__all__ = ["ServerOptions", "serve"]


def __getattr__(name):  # lazy: ``from cloud_server import serve`` imports grpc only then
    if name in __all__:
        from . import server
        return getattr(server, name)
    raise AttributeError(name)
