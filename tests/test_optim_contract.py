"""The torch.optim contract held on every parameter (issue 27, items 13-19): frozen and
gradient-less parameters stay put, per-group hyperparameters are validated, zero-size and
low-precision parameters work, unsupported inputs get errors that say what to do, L-BFGS tells a
stall from convergence, and the curvature tools find repeated eigenvalues."""

from __future__ import annotations

import pytest
import torch

import neuralsolve as ns
from neuralsolve.optim import LBFGS, MFAC, AdaHessian, DCTLowRank, Sophia, Trainer, TrainerConfig
from neuralsolve.optim.curvature import top_eigenvalues

# every optimizer of ours that takes parameter groups (L-BFGS takes one group: tested apart)
GROUPED = ["muon", "mfac", "sophia", "adahessian", "adamp", "diffgrad", "dct-lowrank"]
# and torch's, as the registry (so the Trainer and the CLI) hands them out
TORCH = ["adam", "adamw", "sgd"]


def _backward(loss: torch.Tensor, params: list[torch.Tensor], create_graph: bool) -> None:
    """``loss.backward(create_graph=...)`` without backward's parameter-gradient cycle."""
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = g


def _loss_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad()
    params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
    _backward(loss, params, bool(getattr(opt, "requires_create_graph", False)))
    opt.step()


# ----------------------------------------------------------------------------- item 13
def test_mfac_weight_decay_leaves_frozen_and_gradient_less_parameters_alone() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    idle = torch.nn.Parameter(torch.ones(3))  # in the group, but the loss does not use it
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    opt = MFAC([w, idle, frozen], lr=1.0, weight_decay=0.1, damp=1e-4, num_grads=4)
    for _ in range(3):
        _loss_step(opt, ((w - 3.0) ** 2).sum())
    # before the fix: idle and frozen moved by lr * wd * theta / damp = -999 after one step
    assert torch.equal(idle.detach(), torch.ones(3))
    assert torch.equal(frozen, torch.ones(2))
    assert not torch.equal(w.detach(), torch.tensor([1.0, 2.0]))


def test_mfac_weight_decay_still_decays_the_parameters_that_have_a_gradient() -> None:
    # one parameter, no curvature in the window beyond g itself: u = F^{-1} (g + wd theta)
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = MFAC([w], lr=0.1, weight_decay=0.5, damp=1.0, num_grads=1)
    _loss_step(opt, 0.0 * w.sum())  # zero gradient: only the decay acts, F = damp I
    assert float(w.detach()) == pytest.approx(2.0 - 0.1 * 0.5 * 2.0, rel=1e-12)


# ----------------------------------------------------------------------------- item 14
def test_top_eigenvalues_finds_every_copy_of_a_repeated_eigenvalue() -> None:
    torch.manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([5.0, 5.0, 5.0, 3.0], dtype=torch.float64),
                          torch.linspace(-1.0, 1.0, 56, dtype=torch.float64)])  # fmt: skip
    A = Q @ torch.diag(spectrum) @ Q.T
    got = top_eigenvalues(A, 4, generator=torch.Generator().manual_seed(1))
    # single-vector Lanczos sees one copy of 5: it returned [5, 3, 1, 0.96]
    torch.testing.assert_close(got, torch.tensor([5.0, 5.0, 5.0, 3.0], dtype=torch.float64))
    low = top_eigenvalues(-A, 3, which="smallest", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(low, torch.full((3,), -5.0, dtype=torch.float64))
    mag = top_eigenvalues(A, 3, which="magnitude", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mag, torch.full((3,), 5.0, dtype=torch.float64))


def test_top_eigenvalues_of_a_multiple_of_the_identity_needs_no_other_generator() -> None:
    A = 2.0 * torch.eye(30, dtype=torch.float64)
    # before: "Lanczos found an invariant subspace of dimension 1 < k = 3; use another generator"
    got = top_eigenvalues(A, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, torch.full((3,), 2.0, dtype=torch.float64))


# ----------------------------------------------------------------------------- item 15
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dct_lowrank_keeps_its_integer_indices_on_resume_in_low_precision(
    dtype: torch.dtype,
) -> None:
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(4, 3000).to(dtype))
    opt = DCTLowRank([W], rank=8, update_gap=100)
    W.grad = torch.randn(4, 3000).to(dtype)
    opt.step()
    indices = opt.state[W]["indices"].clone()
    assert int(indices.max()) > 2048  # beyond what bf16 / fp16 hold exactly
    fresh = DCTLowRank([W], rank=8, update_gap=100)
    fresh.load_state_dict(opt.state_dict())
    restored = fresh.state[W]["indices"]
    assert restored.dtype == torch.int64  # before: cast to the parameter's dtype, and rounded
    assert torch.equal(restored, indices)


# ----------------------------------------------------------------------------- item 16
def test_lbfgs_does_not_report_a_line_search_stall_as_convergence() -> None:
    x = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = LBFGS([x], max_iter=20)

    def closure() -> torch.Tensor:  # the gradient points uphill: no step can descend
        opt.zero_grad()
        loss = (x**2).sum()
        (-loss).backward()
        return loss.detach()

    opt.step(closure)
    assert torch.equal(x.detach(), torch.ones(4, dtype=torch.float64))  # no step was taken
    assert not opt.converged and opt.stalled  # before: converged, "step below tolerance_change"
    assert "stalled" in str(opt.stop_reason) and "gradient" in str(opt.stop_reason)


def test_trainer_does_not_stop_a_stalled_lbfgs_run_as_converged() -> None:
    model = torch.nn.Linear(2, 1, dtype=torch.float64)

    def uphill(m: torch.nn.Module, _: object) -> torch.Tensor:
        loss = sum((p**2).sum() for p in m.parameters())
        return 2 * loss.detach() - loss  # the value of loss, the gradient of -loss

    cfg = TrainerConfig(optimizer="lbfgs", lr=1.0, steps=3, dtype="float64",
                        schedule="constant", progress=False)  # fmt: skip
    result = Trainer(model, uphill, cfg).fit()
    assert not result.stop_reason.startswith("converged")  # before: "converged: step below ..."
    assert result.steps == 3 and "stalled" in result.stop_reason


# ----------------------------------------------------------------------------- item 17
@pytest.mark.parametrize("name", ["muon", "adamp", "dct-lowrank"])
def test_zero_size_parameters_are_stepped_like_torch_adam_does(name: str) -> None:
    torch.manual_seed(0)
    empty2 = torch.nn.Parameter(torch.zeros(0, 5))
    empty1 = torch.nn.Parameter(torch.zeros(5, 0))
    W = torch.nn.Parameter(torch.randn(4, 6))
    opt = ns.optim.create(name, [empty2, empty1, W], lr=1e-2)
    before = W.detach().clone()
    for _ in range(2):  # before: RuntimeError "cannot reshape tensor of 0 elements"
        _loss_step(opt, (W**2).sum() + empty2.sum() + empty1.sum())
    assert empty2.shape == (0, 5) and empty1.shape == (5, 0)
    assert not torch.equal(W.detach(), before)
    state = opt.state_dict()
    opt.load_state_dict(state)


# ----------------------------------------------------------------------------- item 18
BAD_GROUPS = [
    ({"lr": -0.1}, "invalid lr"),
    ({"betas": (1.0, 0.999)}, "invalid beta1"),
    ({"weight_decay": -1.0}, "invalid weight_decay"),
]


def _group_has(name: str, key: str) -> bool:
    opt = ns.optim.create(name, [torch.nn.Parameter(torch.ones(2, 2))])
    return key in opt.param_groups[0]


@pytest.mark.parametrize("name", GROUPED + TORCH)
@pytest.mark.parametrize(("group", "match"), BAD_GROUPS)
def test_hyperparameters_of_a_parameter_group_are_validated(
    name: str, group: dict, match: str
) -> None:
    key = next(iter(group))
    if not _group_has(name, key):
        pytest.skip(f"{name} has no {key}")
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match=f"{match}.*param group 1"):
        ns.optim.create(name, [{"params": [a]}, {"params": [b], **group}])
    opt = ns.optim.create(name, [a])
    with pytest.raises(ValueError, match=f"{match}.*param group 1"):
        opt.add_param_group({"params": [b], **group})
    assert len(opt.param_groups) == 1  # the refused group was not kept


def test_muon_validates_its_adamw_part_per_group_too() -> None:
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="invalid adamw_lr.*param group 1"):
        ns.optim.create("muon", [{"params": [a]}, {"params": [b], "adamw_lr": -1.0}])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"history_size": 0}, "invalid history_size"),
        ({"max_iter": 0}, "invalid max_iter"),
        ({"max_eval": 0}, "invalid max_eval"),
        ({"tolerance_grad": -1.0}, "invalid tolerance_grad"),
        ({"tolerance_change": float("nan")}, "invalid tolerance_change"),
        ({"line_search_fn": "armijo"}, "invalid line_search_fn"),
        ({"lr": -1.0}, "invalid lr"),
    ],
)
def test_lbfgs_validates_its_hyperparameters(kwargs: dict, match: str) -> None:
    # before: history_size=0 raised IndexError at the second step; the others ran
    with pytest.raises(ValueError, match=match):
        LBFGS([torch.nn.Parameter(torch.ones(2))], **kwargs)


# ----------------------------------------------------------------------------- item 19
@pytest.mark.parametrize("name", GROUPED)
def test_sparse_gradients_get_an_error_that_says_what_to_do(name: str) -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = ns.optim.create(name, emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match=f"{type(opt).__name__} does not support sparse gradients"):
        opt.step()


def test_sophia_refuses_complex_parameters_up_front() -> None:
    z = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="Sophia supports real parameters only"):
        Sophia([z])
    opt = Sophia([torch.nn.Parameter(torch.ones(3))])
    with pytest.raises(TypeError, match="Sophia supports real parameters only"):
        opt.add_param_group({"params": [z]})


@pytest.mark.parametrize("cls", [AdaHessian, Sophia])
def test_hessian_optimizers_accept_a_loss_linear_in_some_parameters(cls: type) -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    c = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))  # enters linearly: H = 0
    opt = cls([w, c], lr=0.1)
    _backward((w**2).sum() + 3.0 * c.sum(), [w, c], create_graph=True)
    opt.step()  # before: "call loss.backward(create_graph=True)", which the caller had done
    assert torch.isfinite(w).all() and torch.isfinite(c).all() and float(c.detach()) < 0.5


@pytest.mark.parametrize("cls", [AdaHessian, Sophia])
def test_hessian_optimizers_tell_a_linear_loss_from_a_missing_graph(cls: type) -> None:
    c = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    opt = cls([c])
    _backward(3.0 * c.sum(), [c], create_graph=True)
    with pytest.raises(RuntimeError, match="linear in every parameter"):
        opt.step()
