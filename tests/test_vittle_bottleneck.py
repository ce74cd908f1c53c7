"""Vittle bottleneck on a tiny random LLaVA built in-process (offline, CPU, seconds)."""

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import pytest
import torch
from safetensors import safe_open
from torch.distributions import Normal, kl_divergence
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from vittle_bench.vittle import (
    FixedGaussianPrior,
    LearnableGaussianPrior,
    VittleConfig,
    attach_bottleneck,
    bottleneck_parameter_fraction,
    count_bottleneck_parameters,
    gaussian_kl,
    get_vittle_handle,
    load_vittle_if_present,
    resolve_decoder_layers,
    resolve_layer_index,
    save_vittle,
)

torch.set_num_threads(1)
IMAGE, PAD, N_IMG = 60, 0, 4  # image token id, pad id, image tokens per image (16 px / 8 px patches)


def tiny_llava_config() -> LlavaConfig:
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=64, pad_token_id=PAD, max_position_embeddings=64)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE, image_seq_length=N_IMG,
                       vision_feature_layer=-1)


@pytest.fixture
def model() -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(tiny_llava_config()).eval()


def batch(labels_from: int | None = None, image: bool = True) -> dict:
    """2 rows: [bos, 4 image tokens, 5 text tokens]; row 1 left-padded by 2. Labels mark tokens from
    ``labels_from`` on as the response (the rest -100)."""
    body = [1] + [IMAGE] * N_IMG + [5, 6, 7, 8, 9] if image else [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    ids = torch.tensor([body, [PAD, PAD] + body[:-2]])
    attn = torch.tensor([[1] * 10, [0, 0] + [1] * 8])
    out = {"input_ids": ids, "attention_mask": attn}
    if image:
        g = torch.Generator().manual_seed(1)
        out["pixel_values"] = torch.randn(2, 3, 16, 16, generator=g)
    if labels_from is not None:
        labels = ids.clone()
        labels[:, :labels_from] = -100
        labels[attn == 0] = -100
        out["labels"] = labels
    return out


def capture(layer: torch.nn.Module, store: dict, key: str):
    def hook(module, args, output):
        store[key] = (output[0] if isinstance(output, tuple) else output).detach().clone()
    return layer.register_forward_hook(hook)


@pytest.mark.parametrize("prior_cls", [FixedGaussianPrior, LearnableGaussianPrior])
def test_kl_matches_torch_distributions(prior_cls):
    torch.manual_seed(0)
    d = 16
    prior = prior_cls(d)
    mu_p, logvar_p = torch.zeros(d), torch.zeros(d)
    if prior_cls is LearnableGaussianPrior:
        with torch.no_grad():
            prior.mu_p.normal_()
            prior.logvar_p.uniform_(-2.0, 2.0)
        mu_p, logvar_p = prior.mu_p.detach(), prior.logvar_p.detach()
    mu, logvar = torch.randn(3, 5, d), torch.empty(3, 5, d).uniform_(-2.3, 2.3)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(mu_p, (0.5 * logvar_p).exp()))
    torch.testing.assert_close(prior.kl(mu, logvar), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prior", ["fixed", "learnable"])
def test_gradients_reach_heads_and_prior(model, prior):
    handle = attach_bottleneck(model, VittleConfig(prior=prior, visual_layer=0, text_layer=1))
    assert get_vittle_handle(model) is handle
    assert any(n.startswith("vittle_bottleneck.") for n, _ in model.named_parameters())
    model.train()
    handle.set_progress(0.5)
    assert handle.bottleneck.alpha() == pytest.approx(0.25)
    out = model(**batch(labels_from=7))
    kl_v, kl_t = handle.kl_terms()
    assert kl_v > 0 and kl_t > 0
    (out.loss + handle.regularizer()).backward()
    b = handle.bottleneck
    for head in (b.visual_head, b.text_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    if prior == "learnable":
        for p in (b.visual_prior.mu_p, b.visual_prior.logvar_p, b.text_prior.mu_p, b.text_prior.logvar_p):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_learnable_prior_pushed_past_the_bound_comes_back_as_the_reference_does(model):
    """Issue 19 (g). The reference (deeplearning-wisc/vittle, vittle_llama.py::vib_kld_loss_lp) runs
    ``logsigma_sq_prior.data.clamp_(min=-2.3025, max=2.3025)`` before each KL: a prior log-variance that a step
    pushed past the bound restarts from the bound and follows the KL's gradient back. Replayed here step by step
    with the same KL, so the only thing compared is how the bound acts."""
    bound, d = 2.3025, 4
    mu, logvar = torch.zeros(d), torch.full((d,), 0.8)  # the posterior: the KL is smallest at logvar_p = 0.8
    ours = LearnableGaussianPrior(d, logvar_clamp=bound)
    reference = torch.nn.Parameter(torch.zeros(d))
    with torch.no_grad():
        ours.logvar_p.fill_(3.0)  # pushed past the bound
        reference.fill_(3.0)
    opt_ours, opt_reference = torch.optim.SGD([ours.logvar_p], lr=1.0), torch.optim.SGD([reference], lr=1.0)
    path = []
    for _ in range(40):
        opt_ours.zero_grad()
        ours.kl(mu, logvar).sum().backward()
        opt_ours.step()
        reference.data.clamp_(min=-bound, max=bound)
        opt_reference.zero_grad()
        gaussian_kl(mu, logvar, torch.zeros(d), reference).sum().backward()
        opt_reference.step()
        torch.testing.assert_close(ours.logvar_p.detach(), reference.detach())
        path.append(ours.logvar_p[0].item())
    assert path[0] < bound and abs(path[19] - 0.8) < 1e-3  # leaves the bound at the first step
    torch.testing.assert_close(ours.logvar_p.detach(), torch.full((d,), 0.8))

    # Evaluation reads an out-of-range value through the bound and never rewrites it.
    with torch.no_grad():
        ours.logvar_p.fill_(3.0)
    ours.eval()
    torch.testing.assert_close(ours.kl(mu, logvar), gaussian_kl(mu, logvar, torch.zeros(d), torch.full((d,), bound)))
    assert ours.logvar_p[0].item() == 3.0

    # Attached to a model and trained: the prior past the bound still gets a gradient from the model's loss.
    handle = attach_bottleneck(model, VittleConfig(prior="learnable", visual_layer=0, text_layer=1))
    prior = handle.bottleneck.text_prior
    with torch.no_grad():
        prior.logvar_p.fill_(3.0)
    model.train()
    (model(**batch(labels_from=7)).loss + handle.regularizer()).backward()
    assert prior.logvar_p.max().item() == pytest.approx(2.3) and (prior.logvar_p.grad > 0).all()


def test_gradient_checkpointing_gives_same_gradients(model):
    """The recompute in backward must see the same masks and (RNG restored) the same noise."""
    handle = attach_bottleneck(model, VittleConfig(prior="learnable"))
    model.train()

    def grads() -> dict:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        out = model(**batch(labels_from=7))
        (out.loss + handle.regularizer()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and any(k.startswith("vittle_bottleneck") for k in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_inference_is_deterministic_and_mixes_with_mu(model):
    store: dict = {}
    layer = resolve_decoder_layers(model)[1]
    capture(layer, store, "h")  # registered first: sees the layer's own output
    handle = attach_bottleneck(model, VittleConfig(visual_layer=1, text_layer=1))
    capture(layer, store, "out")  # registered after: sees the bottleneck's replacement
    inputs = batch()
    with torch.no_grad():
        logits1 = model(**inputs).logits
        logits2 = model(**inputs).logits
    torch.testing.assert_close(logits1, logits2, rtol=0, atol=0)
    h, a, b = store["h"], 0.5, handle.bottleneck
    image = inputs["input_ids"] == IMAGE
    with torch.no_grad():
        mu_v, _ = b.visual_head(h)
        mu_t, _ = b.text_head(h)
    expected = torch.where(image[..., None], (1 - a) * h + a * mu_v, (1 - a) * h + a * mu_t)
    torch.testing.assert_close(store["out"], expected)


def test_alpha_zero_leaves_logits_unchanged(model):
    inputs = batch(labels_from=7)
    with torch.no_grad():
        base = model(**inputs).logits
    handle = attach_bottleneck(model, VittleConfig(alpha_max=0.0))
    for mode in (model.eval, model.train):
        mode()
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs).logits, base, rtol=0, atol=0)
    handle.remove()
    assert not hasattr(model, "vittle_bottleneck") and get_vittle_handle(model) is None


def test_text_only_batch_has_zero_visual_kl(model):
    handle = attach_bottleneck(model, VittleConfig(prior="learnable"))
    model.train()
    out = model(**batch(labels_from=6, image=False))
    kl_v, kl_t = handle.kl_terms()
    loss = out.loss + handle.regularizer()
    assert torch.isfinite(loss) and kl_v.item() == 0.0 and torch.isfinite(kl_t) and kl_t > 0
    loss.backward()  # the empty visual branch must not poison the gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # inputs_embeds only: every position is text
    embeds = model.get_input_embeddings()(batch(image=False)["input_ids"])
    model(inputs_embeds=embeds)
    assert handle.kl_terms()[0].item() == 0.0 and handle.kl_terms()[1] > 0


def test_text_kl_excludes_response_tokens(model):
    store: dict = {}
    layer = resolve_decoder_layers(model)[1]
    capture(layer, store, "h")
    handle = attach_bottleneck(model, VittleConfig(visual_layer=1, text_layer=1))
    b = handle.bottleneck

    def kl_text(labels_from: int) -> tuple[float, float]:
        inputs = batch(labels_from=labels_from)
        with torch.no_grad():
            model(**inputs)
            mu, logvar = b.text_head(store["h"])
            mask = (inputs["input_ids"] != IMAGE) & (inputs["attention_mask"] == 1) & (inputs["labels"] == -100)
            expected = b.text_prior.kl(mu[mask], logvar[mask]).mean().item()
        return handle.kl_terms()[1].item(), expected

    got_short, expected_short = kl_text(labels_from=6)  # instruction = bos + row text up to column 6
    got_long, expected_long = kl_text(labels_from=9)
    assert got_short == pytest.approx(expected_short, rel=1e-5)
    assert got_long == pytest.approx(expected_long, rel=1e-5)
    assert got_short != pytest.approx(got_long, rel=1e-4)


def test_layer_fraction_resolution(model):
    assert resolve_layer_index(0.75, 32) == 24  # the paper's layer 24 of 32
    assert resolve_layer_index(1.0, 32) == 31 and resolve_layer_index(0.5, 2) == 1
    assert resolve_layer_index(3, 32) == 3 and resolve_layer_index(-1, 32) == 31
    for bad in (0.0, 1.5, 32, -33, True):
        with pytest.raises((ValueError, TypeError)):
            resolve_layer_index(bad, 32)
    handle = attach_bottleneck(model, VittleConfig(visual_layer=0.5, text_layer=0))
    assert (handle.visual_layer_index, handle.text_layer_index) == (1, 0)
    assert handle.config.image_token_id == IMAGE  # read from model.config


def test_save_reload_identical_logits(model, tmp_path):
    inputs = batch()
    with torch.no_grad():
        base = model(**inputs).logits
    handle = attach_bottleneck(model, VittleConfig(prior="learnable", visual_layer=0, text_layer=1))
    with torch.no_grad():
        handle.bottleneck.text_prior.mu_p.normal_()
        with_vittle = model(**inputs).logits
    assert not torch.allclose(base, with_vittle)
    model.save_pretrained(tmp_path)
    save_vittle(handle, tmp_path)
    assert {"vittle_config.json", "vittle_bottleneck.safetensors"} <= set(os.listdir(tmp_path))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("vittle_bottleneck") for k in f.keys())

    reloaded = LlavaForConditionalGeneration.from_pretrained(tmp_path)
    new_handle = load_vittle_if_present(reloaded, tmp_path)
    assert new_handle is not None and not new_handle.bottleneck.training
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, with_vittle, rtol=0, atol=0)
    torch.testing.assert_close(new_handle.bottleneck.text_prior.mu_p, handle.bottleneck.text_prior.mu_p)

    plain = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert not hasattr(plain, "vittle_bottleneck")
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, base, rtol=0, atol=0)
    assert load_vittle_if_present(plain, tmp_path / "missing") is None


def test_greedy_generate_with_kv_cache(model):
    store: dict = {}
    capture(resolve_decoder_layers(model)[1], store, "h")
    handle = attach_bottleneck(model, VittleConfig(visual_layer=0, text_layer=1))
    # image tokens first, so a cache step that misaligned its masks would treat new tokens as image
    body = [IMAGE] * N_IMG + [1, 5, 6, 7, 8, 9]
    inputs = {"input_ids": torch.tensor([body, [PAD, PAD] + body[:-2]]),
              "attention_mask": torch.tensor([[1] * 10, [0, 0] + [1] * 8]),
              "pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))}
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=PAD)
    with torch.no_grad():
        cached = model.generate(**inputs, **kwargs)
        assert store["h"].shape[1] == 1  # the last step ran on the cache with one new token per row
        assert handle.kl_terms()[0].item() == 0.0  # ... which is text, not image
        # both rows' new tokens are attended: the growing attention_mask is aligned on its last column
        b = handle.bottleneck
        expected = b.text_prior.kl(*b.text_head(store["h"])).mean()
        torch.testing.assert_close(handle.kl_terms()[1], expected)
        uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert cached.shape == (2, 15)
    # the cache path sees only new tokens per step; masks must line up so both decodes agree
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


def test_llava_7b_parameter_fraction():
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, patch_size=14, image_size=336),
        text_config=LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, vocab_size=32064),
    )
    assert count_bottleneck_parameters(4096) == 2 * (3 * 4096**2 + 3 * 4096)
    fraction = bottleneck_parameter_fraction(config)
    print(f"Vittle extra parameters on LLaVA-1.5-7B shape: {100 * fraction:.2f}%")
    assert 0.013 < fraction < 0.017


def test_kl_position_counts_are_what_the_hooks_average_over(model):
    """A trainer divides kl_sums by counts it takes from the batch before the forward (kl_position_counts x
    hidden size); they must be the positions the hooks select: attended image tokens for the visual KL, attended
    unsupervised non-image tokens for the text KL (row 1 is left-padded by 2; tokens 7.. are the answer)."""
    from vittle_bench.vittle import kl_position_counts

    handle = attach_bottleneck(model, VittleConfig(visual_layer=0, text_layer=1))
    inputs = batch(labels_from=7)
    n_visual, n_text = kl_position_counts(inputs, IMAGE)
    # text: row 0 its BOS and the 2 text tokens before position 7; row 1, shifted right by 2, only its BOS
    assert (n_visual, n_text) == (2 * N_IMG, 3 + 1)
    model.train()
    model(**inputs)
    for total, mean, n in zip(handle.kl_sums(), handle.kl_terms(), (n_visual, n_text)):
        torch.testing.assert_close(total / (n * 32), mean)
