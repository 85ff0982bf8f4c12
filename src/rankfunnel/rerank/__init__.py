"""Rerankers: see rerank.base; load_reranker lives here (rerank-core)."""
