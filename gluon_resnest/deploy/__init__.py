"""Deployment: symbol and ONNX export."""
from .export import Preprocessed, export_model, export_onnx
from .optimize import BACKENDS, convert_to_bfloat16, default_backend, optimize_for_cpu
