from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "payload", "model_digest", "top_k", "names")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    model: str
    payload: bytes
    model_digest: bytes
    top_k: int
    names: bool
    def __init__(self, model: _Optional[str] = ..., payload: _Optional[bytes] = ..., model_digest: _Optional[bytes] = ..., top_k: _Optional[int] = ..., names: _Optional[bool] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("label", "probability", "class_name", "top_index", "top_probability", "top_name", "timings", "model", "payload_bytes")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TOP_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TOP_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    label: int
    probability: float
    class_name: str
    top_index: _containers.RepeatedScalarFieldContainer[int]
    top_probability: _containers.RepeatedScalarFieldContainer[float]
    top_name: _containers.RepeatedScalarFieldContainer[str]
    timings: Timings
    model: str
    payload_bytes: int
    def __init__(self, label: _Optional[int] = ..., probability: _Optional[float] = ..., class_name: _Optional[str] = ..., top_index: _Optional[_Iterable[int]] = ..., top_probability: _Optional[_Iterable[float]] = ..., top_name: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., model: _Optional[str] = ..., payload_bytes: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "batch_size")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    batch_size: int
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("model", "model_digest", "stream_id", "session", "top_k", "names", "timings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_digest: bytes
    stream_id: str
    session: bytes
    top_k: int
    names: bool
    timings: bool
    def __init__(self, model: _Optional[str] = ..., model_digest: _Optional[bytes] = ..., stream_id: _Optional[str] = ..., session: _Optional[bytes] = ..., top_k: _Optional[int] = ..., names: _Optional[bool] = ..., timings: _Optional[bool] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("header", "latent", "seq")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    header: StreamHeader
    latent: bytes
    seq: int
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., latent: _Optional[bytes] = ..., seq: _Optional[int] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("seq", "label", "probability", "top_index", "top_probability", "class_name", "top_name", "timings", "duplicate", "error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TOP_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TOP_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    label: int
    probability: float
    top_index: _containers.RepeatedScalarFieldContainer[int]
    top_probability: _containers.RepeatedScalarFieldContainer[float]
    class_name: str
    top_name: _containers.RepeatedScalarFieldContainer[str]
    timings: Timings
    duplicate: bool
    error: FrameError
    def __init__(self, seq: _Optional[int] = ..., label: _Optional[int] = ..., probability: _Optional[float] = ..., top_index: _Optional[_Iterable[int]] = ..., top_probability: _Optional[_Iterable[float]] = ..., class_name: _Optional[str] = ..., top_name: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., duplicate: _Optional[bool] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "task", "size", "points", "channels", "classes", "lmbda", "test_accuracy", "bits_mean", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    LMBDA_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    BITS_MEAN_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    task: str
    size: str
    points: int
    channels: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    lmbda: float
    test_accuracy: float
    bits_mean: float
    digest: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., task: _Optional[str] = ..., size: _Optional[str] = ..., points: _Optional[int] = ..., channels: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., lmbda: _Optional[float] = ..., test_accuracy: _Optional[float] = ..., bits_mean: _Optional[float] = ..., digest: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "max_message_bytes", "max_batch_size", "max_stream_id_bytes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_ID_BYTES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    max_message_bytes: int
    max_batch_size: int
    max_stream_id_bytes: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., max_message_bytes: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_stream_id_bytes: _Optional[int] = ...) -> None: ...

class PullModelRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("model", "version", "digest", "file", "size", "sha256", "offset", "data")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    digest: str
    file: str
    size: int
    sha256: str
    offset: int
    data: bytes
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., file: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
