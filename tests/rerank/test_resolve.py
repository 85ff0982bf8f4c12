"""The one reranker resolver (``auto``) and calibration keyed by the model's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankfunnel.errors import RerankerUnavailableError
from rankfunnel.models import DEFAULT_CPU_RERANKER, DEFAULT_GPU_RERANKER
from rankfunnel.rerank import load_reranker, resolve
from rankfunnel.rerank.calibration import Calibration, load_calibration, model_identity, save_calibration
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.rerank.resolve import (
    TRAINED_RERANKER_DIR,
    apply_stored_calibration,
    resolve_reranker,
    trained_reranker_verdict,
)


def _on_disk(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setattr(resolve, "model_on_disk", lambda name: name in names)


def _on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "choose_device", lambda device=None: "cuda")


def _trained(folder: Path, domain: str | None, after: float = 0.70, before: float = 0.65) -> Path:
    from rankfunnel.train.card import write_model_card

    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    write_model_card(
        folder, title="t", base_model="b", model_licence="apache-2.0", data_name="some data", data_licence="x",
        summary="s", settings={}, metrics={"ndcg@10": after, "base_ndcg@10": before}, domain=domain,
    )
    return folder


def test_plain_specs_pass_through_and_none_switches_off() -> None:
    assert resolve_reranker("fake").spec == "fake"
    assert resolve_reranker("org/model:50,fake:10").spec == "org/model:50,fake:10"
    for off in ("none", "off", ""):
        res = resolve_reranker(off)
        assert res.spec is None and "switched off" in res.reason


def test_auto_online_is_the_device_default(monkeypatch: pytest.MonkeyPatch) -> None:
    _on_disk(monkeypatch)  # nothing on disk: online, the loader downloads it
    assert resolve_reranker("auto", device="cpu", offline=False).spec == DEFAULT_CPU_RERANKER
    assert resolve_reranker(None, device="cpu", offline=False).spec == DEFAULT_CPU_RERANKER
    _on_gpu(monkeypatch)
    res = resolve_reranker("auto", offline=False)
    assert res.spec == DEFAULT_GPU_RERANKER and "GPU default" in res.reason


def test_auto_offline_uses_only_models_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    _on_disk(monkeypatch, DEFAULT_CPU_RERANKER)
    res = resolve_reranker("auto", device="cpu", offline=True)
    assert res.spec == DEFAULT_CPU_RERANKER and "on disk" in res.reason
    _on_gpu(monkeypatch)  # a GPU without zerank-2 on disk: the CPU default that is
    assert resolve_reranker("auto", offline=True).spec == DEFAULT_CPU_RERANKER
    _on_disk(monkeypatch, DEFAULT_GPU_RERANKER, DEFAULT_CPU_RERANKER)
    assert resolve_reranker("auto", offline=True).spec == DEFAULT_GPU_RERANKER


def test_auto_offline_with_nothing_loadable_is_stage_1_with_a_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    _on_disk(monkeypatch)
    res = resolve_reranker("auto", device="cpu", offline=True)
    assert res.spec is None and res.requested == "auto"
    assert "stage 1" in res.reason and "make reranker" in res.reason and "--reranker PATH" in res.reason
    assert "connect to the model hub" in res.reason
    with pytest.raises(RerankerUnavailableError, match="make reranker"):
        load_reranker("auto", device="cpu", offline=True)
    model, reason = resolve.load_reranker_or_reason("auto", device="cpu", offline=True)
    assert model is None and reason == res.reason


def test_auto_never_reads_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _trained(tmp_path / TRAINED_RERANKER_DIR, "scifact")
    monkeypatch.chdir(tmp_path)
    _on_disk(monkeypatch)
    assert resolve_reranker("auto", device="cpu", offline=False, domain="scifact").spec == DEFAULT_CPU_RERANKER


def test_auto_uses_a_trained_model_only_for_its_declared_domain(tmp_path: Path, monkeypatch) -> None:
    _on_disk(monkeypatch)
    trained = _trained(tmp_path / "scifact-model", "scifact")
    assert resolve.card_domain(trained) == "scifact"  # read back from the ModelCard front matter
    res = resolve_reranker("auto", device="cpu", offline=False, trained=trained, domain="scifact")
    assert res.spec == str(trained)
    other = resolve_reranker("auto", device="cpu", offline=False, trained=trained, domain="nfcorpus")
    assert other.spec == DEFAULT_CPU_RERANKER and "trained for the domain 'scifact'" in other.reason
    assert resolve_reranker("auto", device="cpu", offline=False, trained=trained).spec == DEFAULT_CPU_RERANKER
    offline = resolve_reranker("auto", device="cpu", offline=True, trained=trained, domain="nfcorpus")
    assert offline.spec is None and "scifact" in offline.reason
    assert resolve_reranker(str(trained)).spec == str(trained)  # named: always used
    undeclared = _trained(tmp_path / "distilled", None)  # e.g. `rankfunnel distil` without --domain
    res = resolve_reranker("auto", device="cpu", offline=False, trained=undeclared, domain="some data")
    assert res.spec == DEFAULT_CPU_RERANKER and "'unknown'" in res.reason


def test_auto_skips_a_trained_model_that_lost_to_stage_1(tmp_path: Path, monkeypatch) -> None:
    _on_disk(monkeypatch)
    trained = _trained(tmp_path / "m", "scifact", after=0.40, before=0.65)
    usable, why = trained_reranker_verdict(trained, domain="scifact")
    assert not usable and why is not None and "below stage 1" in why and "make reranker" in why
    res = resolve_reranker("auto", device="cpu", offline=False, trained=trained, domain="scifact")
    assert res.spec == DEFAULT_CPU_RERANKER and "below stage 1" in res.reason
    assert trained_reranker_verdict(tmp_path / "empty") == (False, None)


def test_card_records_domain_and_licence_via_modelcard(tmp_path: Path) -> None:
    from rankfunnel.models import read_licence

    trained = _trained(tmp_path / "m", "nfcorpus")
    assert read_licence(str(trained)).licence == "apache-2.0"
    assert json.loads((trained / "rankfunnel_training.json").read_text())["domain"] == "nfcorpus"


def _model_folder(root: Path) -> Path:
    folder = root / "models" / "x"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    return folder


def test_a_stored_fit_is_found_however_the_folder_is_spelled(tmp_path: Path, monkeypatch) -> None:
    folder = _model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    idx = tmp_path / "idx"
    idx.mkdir()
    fit = Calibration(temperature=2.0, bias=0.5)
    save_calibration(idx, model_identity("models/x"), fit)
    for spelling in ("models/x", "./models/x", str(folder), str(folder) + "/", "models/../models/x"):
        reranker = FakeReranker(name=spelling)
        assert apply_stored_calibration(reranker, idx) == idx, spelling
        assert reranker.calibration == fit
    assert load_calibration(idx, model_identity(str(folder.resolve()))) == fit
    (folder / "model.safetensors").write_bytes(b"\1" * 1000)  # retrained weights: the old fit does not apply
    assert load_calibration(idx, model_identity("models/x")) is None


def test_a_fit_beside_the_model_survives_its_own_store(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    fit = Calibration(temperature=3.0)
    identity = model_identity(str(folder))
    save_calibration(folder, identity, fit)  # writing calibration.json must not change the folder's identity
    reranker = FakeReranker(name=str(folder))
    reranker.path = str(folder)  # type: ignore[attr-defined]
    assert apply_stored_calibration(reranker) == folder and reranker.calibration == fit


def test_hub_ids_are_their_own_identity(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert model_identity(DEFAULT_CPU_RERANKER, snapshot) == DEFAULT_CPU_RERANKER
    assert model_identity("fake") == "fake"
