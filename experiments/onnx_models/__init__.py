"""Researchers' own models as ONNX files: upload, validation on a worker, detector `onnx:<name>`."""
