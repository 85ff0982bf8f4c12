"""Train and distil small, permissively licensed cross-encoder rerankers.

- :func:`train_reranker`: fine-tune from labelled queries (qrels) with hard negatives mined by stage 1.
- :func:`distil_reranker`: learn a teacher reranker's scores on stage-1 candidates of unlabelled queries.

Both write a standard sentence-transformers ``CrossEncoder`` folder with a model card (README.md).
"""

from rankfunnel.train.callbacks import WallClockCallback
from rankfunnel.train.data import LabelledData, load_labelled, read_query_file, split_queries
from rankfunnel.train.distil import DistilConfig, DistilResult, distil_reranker
from rankfunnel.train.mining import MiningConfig, mine_hard_negatives
from rankfunnel.train.stage1 import corpus_stage1, default_embedder
from rankfunnel.train.trainer import TrainConfig, TrainResult, train_reranker

__all__ = [
    "DistilConfig",
    "DistilResult",
    "LabelledData",
    "MiningConfig",
    "TrainConfig",
    "TrainResult",
    "WallClockCallback",
    "corpus_stage1",
    "default_embedder",
    "distil_reranker",
    "load_labelled",
    "mine_hard_negatives",
    "read_query_file",
    "split_queries",
    "train_reranker",
]
