from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "payload", "stream_id", "seq")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    model: str
    payload: bytes
    stream_id: str
    seq: int
    def __init__(self, model: _Optional[str] = ..., payload: _Optional[bytes] = ..., stream_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("index", "name", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    probability: float
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("seq", "label", "class_name", "top5", "decode_ms", "inference_ms", "queue_ms", "batch_size", "model", "stream_id", "duplicate", "payload_bytes", "error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TOP5_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    label: int
    class_name: str
    top5: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    decode_ms: float
    inference_ms: float
    queue_ms: float
    batch_size: int
    model: str
    stream_id: str
    duplicate: bool
    payload_bytes: int
    error: FrameError
    def __init__(self, seq: _Optional[int] = ..., label: _Optional[int] = ..., class_name: _Optional[str] = ..., top5: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., decode_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., batch_size: _Optional[int] = ..., model: _Optional[str] = ..., stream_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., payload_bytes: _Optional[int] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "task", "size", "points", "channels", "classes", "lmbda", "test_accuracy", "bits_mean")
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
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., task: _Optional[str] = ..., size: _Optional[str] = ..., points: _Optional[int] = ..., channels: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., lmbda: _Optional[float] = ..., test_accuracy: _Optional[float] = ..., bits_mean: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "max_message_bytes", "max_batch_size")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    max_message_bytes: int
    max_batch_size: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., max_message_bytes: _Optional[int] = ..., max_batch_size: _Optional[int] = ...) -> None: ...
