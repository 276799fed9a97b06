"""PyTorch backward functions (tensors in, tensors out): route 4, torch.float64 tensors."""

import torch


def bn_backward(dy, x, gamma, eps):
    """Right: vectorised torch."""
    n = x.shape[0]
    mu = x.mean(dim=0)
    inv = torch.rsqrt(x.var(dim=0, unbiased=False) + eps)
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(dim=0) - xhat * (g * xhat).sum(dim=0))
    return dx, (dy * xhat).sum(dim=0), dy.sum(dim=0)


def bn_diagonal(dy, x, gamma, eps):
    """Wrong: the Jacobian's diagonal only."""
    n = x.shape[0]
    sigma = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    xhat = (x - x.mean(dim=0)) / sigma
    return gamma * dy * (1 - 1 / n - xhat ** 2 / n) / sigma


class LayerNormFn(torch.autograd.Function):
    """A custom LayerNorm with a hand-written backward."""

    @staticmethod
    def forward(ctx, x, w, b, eps):
        mu = x.mean(dim=-1, keepdim=True)
        rstd = torch.rsqrt(x.var(dim=-1, unbiased=False, keepdim=True) + eps)
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, rstd, w)
        return xhat * w + b

    @staticmethod
    def backward(ctx, dy):
        xhat, rstd, w = ctx.saved_tensors
        g = dy * w
        dx = rstd * (g - g.mean(dim=-1, keepdim=True)
                     - xhat * (g * xhat).mean(dim=-1, keepdim=True))
        return dx, (dy * xhat).sum(dim=0), dy.sum(dim=0), None


class LayerNormWrongFn(LayerNormFn):
    """The same with dgamma summed over the wrong axis (and no keepdim on the mean)."""

    @staticmethod
    def backward(ctx, dy):
        dx, _, db, _ = LayerNormFn.backward(ctx, dy)
        xhat = ctx.saved_tensors[0]
        return dx, (dy * xhat).sum(dim=-1), db, None


def _through_autograd(fn, dy, x, w, eps):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    b = torch.zeros_like(w, requires_grad=True)
    fn.apply(x, w, b, eps).backward(dy)
    return x.grad, w.grad, b.grad


def ln_autograd(dy, x, w, eps):
    """Right: the custom autograd.Function's backward, run by autograd."""
    return _through_autograd(LayerNormFn, dy, x, w, eps)


def ln_autograd_wrong_axis(dy, x, w, eps):
    """Wrong dgamma (B = N, so that the shapes agree)."""
    return _through_autograd(LayerNormWrongFn, dy, x, w, eps)


def rms_from_numpy(dy, x, gamma, eps):
    """Right RMSNorm that converts its (NumPy) inputs with torch.as_tensor first: the exact
    trace fails at the conversion, and the function is detected as torch code."""
    dy, x, gamma = (torch.as_tensor(a, dtype=torch.float64) for a in (dy, x, gamma))
    rstd = torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    g = dy * gamma
    dx = rstd * g - x * rstd ** 3 * (g * x).mean(dim=-1, keepdim=True)
    return dx, (dy * x * rstd).sum(dim=0)


def ln_through_torch_from_numpy(dy, x, gamma, eps):
    """Right: NumPy arrays in and out, autograd of torch's layer_norm inside."""
    xt = torch.from_numpy(x).requires_grad_()
    gt = torch.from_numpy(gamma).requires_grad_()
    bt = torch.zeros_like(gt, requires_grad=True)
    y = torch.nn.functional.layer_norm(xt, (xt.shape[-1],), gt, bt, eps=eps)
    y.backward(torch.from_numpy(dy))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()
