"""Counting and timing: FLOPs and parameters from the symbol graph, speed benchmarks,
per-operator profiles."""
from .benchmark import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE, inference_step,
                        peak_rss_mb, rss_mb, time_inference, time_training, training_step)
from .profile import profile_operators
from .flops import count_flops, count_params, symbol_of
