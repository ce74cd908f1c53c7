"""Gaussian priors for the Vittle KL regulariser.

Both priors expose ``kl(mu, logvar)``: the element-wise KL(N(mu, exp(logvar)) || prior). It is the
standard closed form ``0.5 * (logvar_p - logvar + (exp(logvar) + (mu - mu_p)^2) / exp(logvar_p) - 1)``.
The public Vittle code halves the log-variance term; the paper's objective uses the standard KL, so the
value here equals ``torch.distributions.kl_divergence`` of the two Normals (checked in the tests).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FixedGaussianPrior", "LearnableGaussianPrior", "build_prior", "gaussian_kl"]


def gaussian_kl(
    mu: torch.Tensor, logvar: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """Element-wise KL(N(mu, e^logvar) || N(mu_p, e^logvar_p)), computed in float32 for bf16/fp16 safety."""
    mu, logvar = mu.float(), logvar.float()
    mu_p, logvar_p = mu_p.float(), logvar_p.float()
    return 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0)


class FixedGaussianPrior(nn.Module):
    """Vittle(F): the fixed standard normal N(0, I). No parameters."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(0, I)) per element (float32)."""
        mu, logvar = mu.float(), logvar.float()
        return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)


class LearnableGaussianPrior(nn.Module):
    """Vittle(L): a per-dimension Gaussian N(mu_p, diag(e^logvar_p)) trained with the model.

    Initialised at N(0, I) so training starts from Vittle(F). ``logvar_p`` is kept inside
    ``[-logvar_clamp, logvar_clamp]`` (the posterior's range): without a bound the prior can shrink its
    variance towards zero and the KL explodes.

    How the bound acts follows the reference (deeplearning-wisc/vittle,
    ``vittle/model/language_model/vittle_llama.py::vib_kld_loss_lp``): before each KL it clamps the
    parameter's *data* (``logsigma_sq_prior.data.clamp_(-2.3025, 2.3025)``), outside autograd, so an
    optimizer step that pushed ``logvar_p`` past the bound is undone at the next forward and the gradient
    is taken at the bound, where it is not zero: a prior pushed out comes back to where the KL pulls it.
    A clamp inside the graph would instead give zero gradient past the bound and leave the parameter
    stuck there. What differs from the reference: the bound is ``logvar_clamp`` (2.3 by default; the
    reference's 2.3025 is ln 10), and the data is clamped only in training mode: an evaluation never
    rewrites loaded weights, it reads the parameter through the same bounds.
    """

    def __init__(self, hidden_size: int, logvar_clamp: float = 2.3) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.logvar_clamp = float(logvar_clamp)
        self.mu_p = nn.Parameter(torch.zeros(hidden_size))
        self.logvar_p = nn.Parameter(torch.zeros(hidden_size))

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(mu_p, e^logvar_p)) per element (float32), broadcast over leading dims."""
        logvar_p: torch.Tensor
        if self.training:
            with torch.no_grad():  # the reference's data clamp: outside autograd, before each KL
                self.logvar_p.clamp_(-self.logvar_clamp, self.logvar_clamp)
            logvar_p = self.logvar_p
        else:
            logvar_p = self.logvar_p.clamp(-self.logvar_clamp, self.logvar_clamp)
        return gaussian_kl(mu, logvar, self.mu_p, logvar_p)


def build_prior(kind: str, hidden_size: int, logvar_clamp: float = 2.3) -> FixedGaussianPrior | LearnableGaussianPrior:
    """Make the prior named by ``VittleConfig.prior`` ("fixed" -> Vittle(F), "learnable" -> Vittle(L))."""
    if kind == "fixed":
        return FixedGaussianPrior(hidden_size)
    if kind == "learnable":
        return LearnableGaussianPrior(hidden_size, logvar_clamp)
    raise ValueError(f"unknown Vittle prior {kind!r}; expected 'fixed' or 'learnable'")
