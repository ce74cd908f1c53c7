"""Gaussian priors for the Vittle KL regulariser.

Both priors expose ``kl(mu, logvar)``: the element-wise KL(N(mu, exp(logvar)) || prior). It is the
standard closed form ``0.5 * (logvar_p - logvar + (exp(logvar) + (mu - mu_p)^2) / exp(logvar_p) - 1)``.
The public Vittle code halves the log-variance term; PAPER.md tells us not to copy that, so the value
here equals ``torch.distributions.kl_divergence`` of the two Normals (checked in the tests).
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

    Initialised at N(0, I) so training starts from Vittle(F). ``logvar_p`` is clamped to
    ``[-logvar_clamp, logvar_clamp]`` inside ``kl`` (the same range as the posterior): without it the
    prior can shrink its variance towards zero and the KL explodes. Clamping in the forward pass
    (rather than editing ``.data`` as the public code does) keeps the parameter itself untouched.
    """

    def __init__(self, hidden_size: int, logvar_clamp: float = 2.3) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.logvar_clamp = float(logvar_clamp)
        self.mu_p = nn.Parameter(torch.zeros(hidden_size))
        self.logvar_p = nn.Parameter(torch.zeros(hidden_size))

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(mu_p, e^logvar_p)) per element (float32), broadcast over leading dims."""
        logvar_p = self.logvar_p.clamp(-self.logvar_clamp, self.logvar_clamp)
        return gaussian_kl(mu, logvar, self.mu_p, logvar_p)


def build_prior(kind: str, hidden_size: int, logvar_clamp: float = 2.3) -> nn.Module:
    """Make the prior named by ``VittleConfig.prior`` ("fixed" -> Vittle(F), "learnable" -> Vittle(L))."""
    if kind == "fixed":
        return FixedGaussianPrior(hidden_size)
    if kind == "learnable":
        return LearnableGaussianPrior(hidden_size, logvar_clamp)
    raise ValueError(f"unknown Vittle prior {kind!r}; expected 'fixed' or 'learnable'")
