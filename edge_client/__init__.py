"""The edge half of splitinfer: ``splitinfer stream`` and the ``EdgeClient`` API.

Point clouds are read (``splitinfer.pointcloud.io``), preprocessed, encoded by the model's ONNX
encoder, range-coded with constriction and streamed to the cloud server over gRPC. No torch.

Importing this package is cheap (no grpc): ``EdgeClient`` and friends load on first use.
"""
__all__ = ["ClassifyError", "EdgeClient", "Report", "Result", "StreamError"]


def __getattr__(name):
    if name in __all__:
        from . import client
        return getattr(client, name)
    raise AttributeError(name)
