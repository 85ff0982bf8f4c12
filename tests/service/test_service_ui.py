"""The browser pages without a browser: the playground and /docs are served locally, and public under API keys.

The headless-Chromium test of the same pages is tests/browser (``make browser``).
"""

from __future__ import annotations

import asyncio
import re

from svc_helpers import served

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig

KEY = "ui-test-key-123456"


def _external_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", html)


def test_pages_are_local_and_public_while_the_api_needs_a_key():
    async def body():
        async with served(ServiceConfig(api_keys=(KEY,)), rerankers=[FakeReranker()]) as c:
            page = await c.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert 'id="query"' in page.text and not _external_urls(page.text)
            for asset in re.findall(r'(?:src|href)="(static/playground/[^"]+)"', page.text):
                r = await c.get("/" + asset)
                assert r.status_code == 200 and r.content, asset
                assert "http://" not in r.text and "https://" not in r.text, asset

            docs = await c.get("/docs")
            assert docs.status_code == 200 and not _external_urls(docs.text)
            assert "/static/docs/swagger-ui-bundle.js" in docs.text and '"validatorUrl": null' in docs.text
            js = await c.get("/static/docs/swagger-ui-bundle.js")
            assert js.status_code == 200 and "SwaggerUIBundle" in js.text[:2000]
            assert (await c.get("/static/docs/swagger-ui.css")).status_code == 200
            assert (await c.get("/openapi.json")).status_code == 200

            search = await c.post("/v1/search", json={"query": "gene cells"})
            assert search.status_code == 401
            auth = {"Authorization": f"Bearer {KEY}"}
            assert (await c.post("/v1/search", json={"query": "gene cells"}, headers=auth)).status_code == 200
            assert (await c.get("/redoc", headers=auth)).status_code == 404
            assert (await c.get("/static/playground/../app.py")).status_code in (401, 404)

    asyncio.run(body())


def test_docs_page_says_what_to_install_without_the_bundled_assets(monkeypatch):
    from rankfunnel.service import ui

    monkeypatch.setattr(ui, "docs_assets_dir", lambda: None)

    async def body():
        async with served(rerankers=[FakeReranker()]) as c:
            r = await c.get("/docs")
            assert r.status_code == 501 and "pip install 'rankfunnel[server]'" in r.text
            assert (await c.get("/")).status_code == 200

    asyncio.run(body())
