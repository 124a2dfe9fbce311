"""splitinfer: edge-cloud split inference with learned compression."""
__version__ = "0.2.0"
