"""Derived builds: precision changes and quantization of ONNX models."""
