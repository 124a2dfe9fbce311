"""splitinfer: edge-cloud split inference with learned compression."""
__version__ = "0.1.0"
