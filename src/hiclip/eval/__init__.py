"""Evaluation: zero-shot classification, retrieval, linear probe, compositional tests."""
from .compositional import compositional_metrics
from .interop import patch_clip_benchmark
from .linear_probe import fit_linear_probe
from .results import compare, format_results, read_result, write_result
from .retrieval import recall_at_k
from .run import TASKS, evaluate_model, run_eval
from .zeroshot import build_zero_shot_classifier, classification_metrics

__all__ = ["TASKS", "build_zero_shot_classifier", "classification_metrics", "compare",
           "compositional_metrics", "evaluate_model", "fit_linear_probe", "format_results",
           "patch_clip_benchmark", "read_result", "recall_at_k", "run_eval", "write_result"]
