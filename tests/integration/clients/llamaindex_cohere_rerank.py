"""LlamaIndex's CohereRerank (llama-index-postprocessor-cohere-rerank, cohere<7) against rankfunnel.

Configured by base URL and key only. Run by tests/integration in the side venv: reads {"query", "documents",
"top_n"} on stdin, prints JSON.
"""

import json
import os
import sys

from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank

payload = json.load(sys.stdin)
post = CohereRerank(api_key=os.environ["RF_API_KEY"], base_url=os.environ["RF_BASE_URL"], top_n=payload["top_n"],
                    max_retries=1)
nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(payload["documents"])]
out = post.postprocess_nodes(nodes, query_str=payload["query"])
print(json.dumps({"results": [[int(n.node.node_id), n.score] for n in out]}))
