"""Vision-language fine-tuning: VQA and visual entailment on the towers' token states.

``finetune(FinetuneConfig(...))`` trains a head (``fusion`` or ``mlp``) on a task
(``world-vqa``, ``world-ve``, ``vqa2:ROOT``, ``snli-ve:ROOT``); ``evaluate_checkpoint``
scores a fine-tuned checkpoint; ``run_vl_study`` fine-tunes several pretrained models
alike and adds question-only / hypothesis-only baselines. ``hiclip finetune`` and
``hiclip finetune-eval`` wrap the first two.
"""
from .config import FinetuneConfig
from .finetune import finetune
from .model import HeadCfg, VLModel
from .run import evaluate_checkpoint, load_finetuned
from .study import VLStudyConfig, format_study, run_vl_study
from .tasks import VLTask, load_task
from .vqa_eval import normalize_answer, vqa_accuracy

__all__ = ["FinetuneConfig", "HeadCfg", "VLModel", "VLTask", "evaluate_checkpoint", "finetune", "load_finetuned",
           "load_task", "normalize_answer", "vqa_accuracy", "VLStudyConfig", "format_study", "run_vl_study"]
