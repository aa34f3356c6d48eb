"""Counting and timing: FLOPs and parameters from the symbol graph, speed benchmarks."""
from .benchmark import peak_rss_mb, rss_mb, time_inference, time_training
from .flops import count_flops, count_params, symbol_of
