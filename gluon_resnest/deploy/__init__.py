"""Deployment: symbol export."""
from .export import export_model
