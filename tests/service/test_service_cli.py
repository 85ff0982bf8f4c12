"""`rankfunnel serve` wiring: loopback default, API keys from the env, config checks (uvicorn stubbed)."""

from __future__ import annotations

from typer.testing import CliRunner

from rankfunnel.cli import app


def _capture(monkeypatch):
    import uvicorn

    seen = {}

    def fake_run(application, **kwargs):
        seen.update(kwargs)
        seen["app"] = application

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_serve_defaults_to_loopback_and_reads_keys_from_env(monkeypatch):
    seen = _capture(monkeypatch)
    monkeypatch.setenv("RANKFUNNEL_API_KEYS", "key-one-12345, key-two-12345")
    result = CliRunner().invoke(app, ["serve", "--reranker", "fake", "--max-wait-ms", "1"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    cfg = seen["app"].state.config
    assert cfg.api_keys == ("key-one-12345", "key-two-12345")
    assert cfg.max_wait_ms == 1 and cfg.trust_remote_code is False and cfg.fail_open is True


def test_serve_rejects_bad_config_with_a_message(monkeypatch, tmp_path):
    _capture(monkeypatch)
    result = CliRunner().invoke(app, ["serve", "--reranker", "fake", "--max-queue-pairs", "0"])
    assert result.exit_code == 2 and "max_queue_pairs" in result.output
    missing = CliRunner().invoke(app, ["serve", "--index-dir", str(tmp_path / "nope"), "--reranker", "fake"])
    assert missing.exit_code == 2 and "rankfunnel index" in missing.output


def test_serve_shadow_and_variants_are_parsed_and_checked(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    log = tmp_path / "s.jsonl"
    ok = CliRunner().invoke(app, ["serve", "--reranker", "fake", "--shadow", "fake:0.25", "--shadow-log", str(log),
                                  "--variant", "control=primary:9", "--variant", "new=fake:1"])
    assert ok.exit_code == 0, ok.output
    t = seen["app"].state.traffic
    assert (t.shadow_spec, t.shadow_rate, t.shadow_log) == ("fake", 0.25, log)
    assert [(v.name, v.spec, v.weight) for v in t.variants] == [("control", "primary", 9.0), ("new", "fake", 1.0)]
    for bad, says in [
        (["--variant", "new=fake"], "NAME=SPEC:WEIGHT"),
        (["--variant", "new=fake:0"], "WEIGHT"),
        (["--variant", "a=fake:1", "--variant", "a=fake:2"], "unique"),
        (["--shadow", "fake:0.5", "--shadow-queue", "0"], "--shadow-queue"),
    ]:
        res = CliRunner().invoke(app, ["serve", "--reranker", "fake", *bad])
        assert res.exit_code == 2 and says in res.output, (bad, res.output)
