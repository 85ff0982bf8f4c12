"""LangChain's CohereRerank (langchain-cohere, cohere<6) against rankfunnel, configured by base URL and key only.

Run by tests/integration in the side venv: reads {"query", "documents", "top_n"} on stdin, prints JSON.
"""

import json
import os
import sys

from langchain_cohere import CohereRerank
from langchain_core.documents import Document

payload = json.load(sys.stdin)
rerank = CohereRerank(base_url=os.environ["RF_BASE_URL"], cohere_api_key=os.environ["RF_API_KEY"],
                      model="rerank-v3.5", top_n=payload["top_n"])
docs = [Document(page_content=t, metadata={"pos": i}) for i, t in enumerate(payload["documents"])]
out = rerank.compress_documents(docs, payload["query"])
print(json.dumps({"results": [[d.metadata["pos"], d.metadata["relevance_score"]] for d in out]}))
