"""Neural operators: shapes at several resolutions, gradients, transforms against references,
the spectral convolution against an explicit DFT, overfitting, checkpoints, errors, CLI, DDP."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch

import neuralsolve as ns
from neuralsolve.cli import main
from neuralsolve.datasets import H5Dataset, Normalizer, split_indices, write_dataset
from neuralsolve.datasets.generators import darcy
from neuralsolve.errors import DataFormatError
from neuralsolve.operators import (
    NormalizedOperator,
    SpectralConv,
    create,
    evaluate,
    load_operator,
    relative_l2,
    spectral_relative_l2,
    train_operator,
)
from neuralsolve.operators.base import with_coordinates
from neuralsolve.operators.fno import kept_modes
from neuralsolve.operators.lsm import _patchify, _unpatchify
from neuralsolve.optim import TrainerConfig
from neuralsolve.spectral import dct, dct_matrix, idct

SMALL = {
    "fno": {"modes": 6, "width": 12, "layers": 2},
    "t1": {"modes": 8, "width": 12, "layers": 2, "resolution": 16},
    "deeponet": {"sensors": 16, "width": 32, "basis": 16, "branch_layers": 2, "trunk_layers": 2},
    "lsm": {"width": 16, "levels": 2, "patch": 4, "heads": 4},
}


@pytest.fixture(scope="module")
def darcy8() -> tuple[torch.Tensor, torch.Tensor]:
    data = darcy(16, 8, seed=0)
    return (
        torch.tensor(data.inputs, dtype=torch.float32),
        torch.tensor(data.outputs, dtype=torch.float32),
    )


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = darcy(16, 24, seed=1)
    path = tmp_path_factory.mktemp("data") / "darcy16.h5"
    return write_dataset(
        path, data.inputs, data.outputs, pde=data.pde, parameters=data.parameters,
        coordinates=data.coordinates,
    )  # fmt: skip


# ----------------------------------------------------------------------------- shapes, gradients
@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("grid", [(16, 16), (32, 32), (24, 20)])
def test_output_shapes_at_several_resolutions(name: str, grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create(name, in_channels=2, out_channels=3, **SMALL[name])
    out = model(torch.randn(2, 2, *grid))
    assert out.shape == (2, 3, *grid) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "dim", "grid"),
    [("fno", 1, (64,)), ("t1", 1, (64,)), ("deeponet", 1, (64,)), ("lsm", 1, (64,)),
     ("fno", 3, (8, 8, 12)), ("t1", 3, (8, 8, 8)), ("lsm", 3, (8, 8, 8))],
)  # fmt: skip
def test_one_and_three_dimensional_grids(name: str, dim: int, grid: tuple[int, ...]) -> None:
    options = {k: v for k, v in SMALL[name].items() if k not in ("resolution", "sensors")}
    if name == "t1":
        options["modes"] = 4
    if name == "fno":
        options["modes"] = 3
    model = create(name, dim=dim, **options)
    assert model(torch.randn(2, 1, *grid)).shape == (2, 1, *grid)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create(name, **SMALL[name])
    model(torch.randn(3, 1, 16, 16)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("grid", [(32,), (16, 12), (8, 8, 8)])
def test_fno_channel_mlp_matches_its_formula(grid: tuple[int, ...]) -> None:
    # v_{l+1} = act(M_l(act(F^-1 R F v + W v)) + g_l v), no act after the last layer
    torch.manual_seed(0)
    model = create("fno", dim=len(grid), modes=3, width=6, layers=3, channel_mlp=True).double()
    with torch.no_grad():
        model.gates.uniform_(-2, 2)
    a = torch.randn(2, 1, *grid, dtype=torch.float64)
    v = model.lift(with_coordinates(a))
    for i in range(3):
        w = model.spectral[i](v) + model.pointwise[i](v)
        w = torch.nn.functional.gelu(w) if i < 2 else w
        w = model.mlps[i](w) + model.gates[i].view(1, -1, *(1,) * len(grid)) * v
        v = torch.nn.functional.gelu(w) if i < 2 else w
    torch.testing.assert_close(model(a), model.head(v), rtol=0, atol=1e-13)
    model(a).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert model.gates.matrix_dims is None  # Muon's AdamW group, not one matrix
    with pytest.raises(TypeError, match="channel_mlp must be True or False, got 1"):
        create("fno", channel_mlp=1)


def test_t1_fft_variant_and_coarser_grids() -> None:
    model = create("t1", transform="fft", modes=6, width=8, layers=1, resolution=16)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)  # fewer points than modes
    model(torch.randn(2, 1, 16, 16)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_deeponet_at_scattered_points_matches_the_grid() -> None:
    torch.manual_seed(0)
    model = create("deeponet", **SMALL["deeponet"]).double()
    a = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    on_grid = model(a)
    centres = (torch.arange(16, dtype=torch.float64) + 0.5) / 16
    pts = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    torch.testing.assert_close(model(a, points=pts).view(2, 1, 16, 16), on_grid)
    with pytest.raises(ValueError, match=r"points must have shape \(n_points, 2\)"):
        model(a, points=torch.rand(5, 3))


@pytest.mark.parametrize("periodic", [False, True])
def test_periodic_lsm_connects_the_two_ends(periodic: bool) -> None:
    """With one level (no pooling), the first cell's output depends on the last cell's input
    exactly when the convolutions pad circularly (the patch of 4 cells and the two 3-point
    convolutions reach 2 + 2 cells, not across the grid otherwise)."""
    torch.manual_seed(0)
    model = create("lsm", dim=1, width=8, levels=1, patch=4, heads=2, periodic=periodic)
    model.eval()  # batch norm with its running statistics: samples do not mix
    x = torch.randn(2, 1, 16, requires_grad=True)
    model(x)[:, :, 0].sum().backward()
    reach = x.grad[0, 0].abs()
    assert (float(reach[-1]) > 0) == periodic
    assert float(reach[8:12].abs().sum()) == 0.0  # beyond both the patch and the convolutions


def test_periodic_lsm_refuses_a_grid_it_would_have_to_pad() -> None:
    model = create("lsm", dim=1, width=8, levels=3, patch=4, heads=2, periodic=True)
    assert model(torch.randn(1, 1, 32)).shape == (1, 1, 32)
    with pytest.raises(ValueError, match=r"multiple of \(16,\) per axis"):
        model(torch.randn(1, 1, 40))


def test_lsm_patches_are_contiguous_blocks() -> None:
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float64).view(2, 3, 8, 12)
    patches, counts = _patchify(x, (4, 3))
    assert counts == (2, 4) and patches.shape == (2 * 8, 3, 12)
    # patch (b=1, i=1, j=2) is rows 4..7, columns 6..8 of sample 1
    torch.testing.assert_close(patches[1 * 8 + 1 * 4 + 2], x[1, :, 4:8, 6:9].reshape(3, 12))
    torch.testing.assert_close(_unpatchify(patches, 2, counts, (4, 3)), x)


# ----------------------------------------------------------------------------- transforms
def test_dct_is_orthonormal_and_inverted() -> None:
    Q = dct_matrix(37)
    torch.testing.assert_close(Q.T @ Q, torch.eye(37, dtype=torch.float64), atol=1e-12, rtol=0)
    x = torch.randn(3, 2, 17, 12, dtype=torch.float64)
    X = dct(x, (2, 3))
    np.testing.assert_allclose(
        X.numpy(), scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(2, 3)), atol=1e-12
    )
    torch.testing.assert_close(idct(X, (2, 3)), x, atol=1e-12, rtol=0)
    assert abs(float(X.norm() - x.norm())) < 1e-12 * float(x.norm())


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_t1_transform_pair_is_exact_on_kept_modes(transform: str) -> None:
    """With all modes kept, T^-1 T is the identity; a band-limited field survives truncation."""
    torch.manual_seed(0)
    n = 16
    full = create(
        "t1", transform=transform, modes=n if transform == "dct" else n // 2,
        width=4, layers=1, resolution=n,
    ).double()  # fmt: skip
    v = torch.randn(2, 3, n, n, dtype=torch.float64)
    if transform == "dct":
        torch.testing.assert_close(full.inverse(full.transform(v), (n, n)), v, atol=1e-12, rtol=0)
        # the scaled coefficients of a constant do not depend on the resolution
        for m in (8, 16, 32):
            c = full.transform(torch.ones(1, 1, m, m, dtype=torch.float64))
            assert abs(float(c[0, 0, 0, 0]) - 1.0) < 1e-12 and float(c.abs().sum()) - 1 < 1e-12
    low = create("t1", transform=transform, modes=4, width=4, layers=1, resolution=n).double()
    xs = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    X, Y = torch.meshgrid(xs, xs, indexing="ij")
    if transform == "dct":
        field = torch.cos(math.pi * X) * torch.cos(3 * math.pi * Y) + 0.5
    else:
        field = torch.sin(2 * math.pi * X) * torch.cos(2 * 3 * math.pi * Y) + 0.5
    f = field[None, None]
    torch.testing.assert_close(low.inverse(low.transform(f), (n, n)), f, atol=1e-12, rtol=0)
    # and evaluated on a finer grid it is the same function there
    fine = 2 * n
    xf = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine
    Xf, Yf = torch.meshgrid(xf, xf, indexing="ij")
    if transform == "dct":
        expected = torch.cos(math.pi * Xf) * torch.cos(3 * math.pi * Yf) + 0.5
        got = low.inverse(low.transform(f), (fine, fine))[0, 0]
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("options", "grid"),
    [({"transform": "dct", "modes": 6}, (16, 12)), ({"transform": "fft", "modes": 5}, (16, 12)),
     ({"transform": "fft", "modes": 6}, (8, 8)), ({"transform": "dct", "modes": 3, "dim": 3}, (6, 5, 4))],
)  # fmt: skip
def test_t1_lifts_after_transforming(options: dict, grid: tuple[int, ...]) -> None:
    """T1 transforms the raw channels and lifts the modes: the same as lifting on the grid and
    transforming the lifted channels (the bias lands on the transform of 1), float64."""
    torch.manual_seed(0)
    model = create("t1", in_channels=2, width=6, layers=1, **options).double()
    x = torch.randn(3, 2, *grid, dtype=torch.float64)
    reference = model.transform(model.lift(with_coordinates(x)))
    got = model.lifted_modes(x)
    if reference.shape != got.shape:  # FFT on a grid coarser than the modes: zero-padded
        _, index = kept_modes((*grid[:-1], grid[-1] // 2 + 1), model.config.modes, x.device)
        got = got[(slice(None), slice(None), *index)]
    torch.testing.assert_close(got, reference, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kept", [(5,), (6, 4), (3, 4, 2)])
def test_t1_block_matches_its_formula(kept: tuple[int, ...]) -> None:
    """The mode-major block against the module docstring's formula written with einsums on the
    (batch, channels, *modes) layout, values and gradients, float64."""
    from neuralsolve.operators.t1 import _Block

    torch.manual_seed(0)
    b, c, d = 3, 4, len(kept)
    block = _Block(c, kept, 0.5, "gelu").double()
    with torch.no_grad():
        block.bias.normal_()
    V = torch.randn(b, c, *kept, dtype=torch.float64, requires_grad=True)

    Z = torch.einsum("bim,mio->bom", V.flatten(2), block.channel).reshape(V.shape)
    Z = torch.nn.functional.gelu(Z + block.bias)
    letters = "xyz"[:d]
    for a, S in enumerate(block.axis):
        src = "bc" + letters
        dst = src.replace(letters[a], "k")
        Z = torch.einsum(f"ck{letters[a]},{src}->{dst}", S, Z)
    expected = V + Z

    got = block(V.flatten(2).permute(2, 0, 1).contiguous())  # (modes, b, c)
    got = got.permute(1, 2, 0).reshape(V.shape)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    weights = torch.randn_like(expected)
    g_got = torch.autograd.grad((got * weights).sum(), [V, *block.parameters()])
    g_ref = torch.autograd.grad((expected * weights).sum(), [V, *block.parameters()])
    for x, y in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=0)


def test_t1_has_second_derivatives() -> None:
    """Its batched matmuls have hand-written backwards made of differentiable operations, so
    Hessian-vector products (AdaHessian, Sophia-H) work: gradcheck and gradgradcheck."""
    torch.manual_seed(0)
    model = create("t1", modes=3, width=2, layers=1, projection=3, resolution=6).double()
    with torch.no_grad():
        model.head_out.weight.normal_()
    x = torch.randn(2, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    assert torch.autograd.gradgradcheck(model, (x,))


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_t1_trains_under_autocast(transform: str) -> None:
    """Mixed precision (the Trainer's bf16 autocast; here on the CPU): the hand-written
    backwards take a low-precision gradient and return gradients in the weights' dtype."""
    torch.manual_seed(0)
    model = create("t1", transform=transform, modes=6, width=8, layers=2, resolution=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 1, 16, 16))
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_spectral_loss_equals_the_physical_loss() -> None:
    """Parseval: the relative L2 error computed on DCT coefficients is the physical one."""
    torch.manual_seed(0)
    model = create("t1", modes=6, width=8, layers=1, resolution=16).double()
    with torch.no_grad():
        model.head_out.weight.normal_()  # a non-trivial output
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    y = torch.randn(3, 1, 16, 16, dtype=torch.float64) + 2.0
    scale, shift = (
        torch.tensor([2.5], dtype=torch.float64),
        torch.tensor([-0.7], dtype=torch.float64),
    )
    with torch.no_grad():
        physical = relative_l2(model(x) * scale + shift, y).mean()
        spectral = spectral_relative_l2(model, x, y, scale=scale, shift=shift)
    assert abs(float(physical - spectral)) < 1e-12


def test_spectral_convolution_equals_an_explicit_dft() -> None:
    """y = irfftn(R . rfftn(x)) on the kept modes, written out as sums of complex exponentials."""
    torch.manual_seed(0)
    n1, n2, modes = 8, 6, (3, 2)
    conv = SpectralConv(2, 3, modes).double()
    x = torch.randn(2, 2, n1, n2, dtype=torch.float64)
    got = conv(x).detach().numpy()
    W = torch.view_as_complex(conv.weight.detach()).numpy()  # (in, out, 2 m1, m2)
    xs = x.numpy()
    j1, j2 = np.arange(n1), np.arange(n2)
    expected = np.zeros((2, 3, n1, n2))
    for p, k1 in enumerate([0, 1, 2, -3, -2, -1]):
        for k2 in range(modes[1]):
            phase = np.exp(-2j * np.pi * (k1 * j1[:, None] / n1 + k2 * j2[None, :] / n2))
            X = (xs * phase).sum(axis=(2, 3)) / (n1 * n2)  # (batch, in), forward-normalised
            Y = np.einsum("bi,io->bo", X, W[:, :, p, k2])
            # a real output: mode k2 > 0 stands for itself and its conjugate partner
            weight = 1.0 if k2 == 0 else 2.0
            expected += weight * np.real(Y[:, :, None, None] * np.conj(phase)[None, None])
    np.testing.assert_allclose(got, expected, atol=1e-12)


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize(
    ("name", "options", "steps"),
    [
        ("fno", {"modes": 6, "width": 16, "layers": 2}, 300),
        ("t1", {"modes": 16, "width": 16, "layers": 2, "resolution": 16}, 600),
        ("deeponet", {"sensors": 16, "width": 64, "basis": 32, "branch_layers": 2,
                      "trunk_layers": 2, "trunk_features": 8}, 1000),
        # 350 steps end at 0.0049 (250: 0.0070); 500 took 16 s on the shared 2-core machine
        ("lsm", {"width": 16, "levels": 2, "patch": 4, "heads": 4}, 350),
    ],
)  # fmt: skip
def test_each_model_overfits_eight_samples(
    darcy8: tuple[torch.Tensor, torch.Tensor], name: str, options: dict, steps: int
) -> None:
    """Capacity and plumbing: 8 Darcy samples (16 x 16) fitted to relative L2 < 1e-2 each.

    The learning rate decays to zero (cosine): at a constant 3e-3 Adam ends wherever its last
    oscillation left it (T1's final error ranged over 0.007-0.015 across seeds and rounding),
    with the decay it settles (T1: ~1e-5)."""
    a, u = darcy8
    torch.manual_seed(0)
    op = NormalizedOperator(create(name, **options), Normalizer.fit(a), Normalizer.fit(u))
    opt = torch.optim.Adam(op.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        op(a, u).mean().backward()
        opt.step()
        schedule.step()
    op.eval()
    with torch.no_grad():
        assert relative_l2(op(a), u).max() < 1e-2


def test_train_checkpoint_round_trip_and_eval(darcy_file: Path, tmp_path: Path) -> None:
    splits = split_indices(24, val=4, test=4)
    train = H5Dataset(darcy_file, splits["train"])
    val = H5Dataset(darcy_file, splits["val"])
    config = TrainerConfig(
        lr=1e-2, epochs=3, batch_size=4, out_dir=str(tmp_path / "run"), progress=False,
        eval_every=4, schedule="constant",
    )  # fmt: skip
    op, result = train_operator(
        "fno", train, config, val=val, model_options={"modes": 4, "width": 8, "layers": 2},
        splits={k: v.tolist() for k, v in splits.items()},
    )  # fmt: skip
    assert result.steps == 12 and "val_rel_l2" in result.eval
    assert np.mean(result.losses[-4:]) < 0.95 * np.mean(result.losses[:4])
    for name in ("best.pt", "last.pt"):
        loaded = load_operator(tmp_path / "run" / name)
        assert loaded.metadata["operator"]["name"] == "fno"
        assert loaded.metadata["splits"]["test"] == splits["test"].tolist()
    loaded = load_operator(tmp_path / "run" / "last.pt")
    x = torch.stack([train[i][0] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), op(x), rtol=0, atol=0)
    # the normalisers were fitted on the training split and saved
    torch.testing.assert_close(loaded.output_norm.std, op.output_norm.std)
    report = evaluate(tmp_path / "run" / "last.pt", H5Dataset(darcy_file, splits["test"]))
    assert report["samples"] == 4 and len(report["errors"]) == 4
    assert report["rel_l2_max"] >= report["rel_l2_median"] >= min(report["errors"])
    # resolution-invariant model at another resolution: sub-sampled 16 -> 8 grid
    coarse = evaluate(loaded, H5Dataset(darcy_file, splits["test"], resolution=8))
    assert coarse["grid"] == [8, 8] and math.isfinite(coarse["rel_l2_mean"])


def test_t1_trains_with_the_spectral_loss(darcy_file: Path) -> None:
    train = H5Dataset(darcy_file, np.arange(16), dtype=torch.float64)
    config = TrainerConfig(
        lr=1e-2, steps=40, batch_size=8, progress=False, dtype="float64", schedule="constant"
    )
    op, result = train_operator(
        "t1", train, config, loss="spectral", model_options={"modes": 8, "width": 8, "layers": 1}
    )
    assert result.losses[-1] < 0.7 * result.losses[0]
    a, u = train.load()
    with torch.no_grad():  # the reported loss was the physical relative error
        op.train()
        assert abs(float(op(a[:8], u[:8])) - float(relative_l2(op(a[:8]), u[:8]).mean())) < 1e-10


# ----------------------------------------------------------------------------- errors
def test_bad_names_configs_and_inputs() -> None:
    with pytest.raises(ValueError, match="unknown model 'lsn'; available: deeponet, fno, lsm, t1"):
        create("lsn")
    with pytest.raises(TypeError, match="unknown config field.*'mode'.*valid:.*modes"):
        create("fno", mode=3)
    with pytest.raises(ValueError, match="modes must be a positive integer or 2 of them"):
        create("fno", modes=(3, 3, 3))
    with pytest.raises(ValueError, match="heads .* must divide width"):
        create("lsm", width=12, heads=8)
    with pytest.raises(ValueError, match="transform must be 'dct' or 'fft'"):
        create("t1", transform="wavelet")
    with pytest.raises(ValueError, match="periodic must be True or False, got 'yes'"):
        create("lsm", periodic="yes")  # what `--set periodic=yes` would pass
    model = create("fno", **SMALL["fno"])
    with pytest.raises(
        ValueError, match=r"expects input of shape \(batch, 1, n, n\), got \(16, 16\)"
    ):
        model(torch.randn(16, 16))
    with pytest.raises(ValueError, match="needs a T1 model"):
        NormalizedOperator(model, Normalizer.identity(1), Normalizer.identity(1), loss="spectral")


def test_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    path = ns.checkpoint.save_checkpoint(tmp_path / "x.pt", {"model": {}}, kind="model")
    with pytest.raises(DataFormatError, match="without 'metadata/operator'"):
        load_operator(path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match="bad.pt"):
        load_operator(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- CLI
def test_cli_data_train_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.h5"
    assert (
        main(["data", "darcy", "--n", "16", "--samples", "20", "--out", str(data), "--no-progress"])
        == 0
    )
    assert main(["data", "info", str(data)]) == 0
    info = capsys.readouterr().out
    assert "neuralsolve" in info and "(20, 1, 16, 16)" in info and "pde = darcy" in info
    run = tmp_path / "run"
    code = main([
        "train", "operator", "--data", str(data), "--model", "t1", "--epochs", "2",
        "--batch-size", "4", "--set", "modes=6", "--set", "width=8", "--set", "layers=1",
        "--train", "12", "--val", "4", "--test", "4", "--out", str(run), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == {"train": 12, "val": 4, "test": 4} and summary["steps"] == 6
    capsys.readouterr()
    assert main(["eval", str(run / "best.pt"), "--json", "--plot"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 4 and report["split"] == "test" and report["model"] == "t1"
    assert (run / "eval.png").stat().st_size > 1000 and (run / "eval.json").exists()
    # resume: two more epochs from last.pt (the cosine schedule is stretched, and says so)
    with pytest.warns(ns.optim.ScheduleExtendedWarning, match="stretched to 12 steps"):
        code = main([
            "train", "operator", "--data", str(data), "--model", "t1", "--epochs", "4",
            "--batch-size", "4", "--set", "modes=6", "--set", "width=8", "--set", "layers=1",
            "--train", "12", "--val", "4", "--test", "4", "--out", str(run), "--no-progress",
            "--resume",
        ])  # fmt: skip
    assert code == 0 and json.loads((run / "summary.json").read_text())["steps"] == 12


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.h5").write_text("not hdf5")
    assert main(["train", "operator", "--data", str(tmp_path / "x.h5")]) == 2
    assert "x.h5" in capsys.readouterr().err
    assert main(["train", "operator", "--data", "x.h5", "--model", "lsn"]) == 2
    assert "available: deeponet, fno, lsm, t1" in capsys.readouterr().err
    assert main(["data", "darcy", "--n", "8", "--samples", "4", "--out", str(tmp_path / "d.h5"),
                 "--set", "colour=3", "--no-progress"]) == 2  # fmt: skip
    assert "colour" in capsys.readouterr().err
    assert main(["train", "operator", "--list-config", "lsm"]) == 0
    assert "patch" in capsys.readouterr().out


def test_cli_generator_list_matches_the_registry() -> None:
    from neuralsolve.cli.operators import GENERATOR_SUMMARIES
    from neuralsolve.datasets.generators import GENERATORS

    assert list(GENERATOR_SUMMARIES) == list(GENERATORS)


# ----------------------------------------------------------------------------- data parallel
@pytest.mark.slow
def test_two_process_ddp_training_matches_one_process(darcy_file: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    args = [
        "train", "operator", "--data", str(darcy_file), "--model", "fno", "--epochs", "2",
        "--batch-size", "4", "--dtype", "float64", "--set", "modes=4", "--set", "width=8",
        "--train", "16", "--val", "0", "--test", "8", "--no-progress",
    ]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "neuralsolve.cli", *args, "--out", str(tmp_path / "one")],
        check=True, env=env, timeout=300,
    )  # fmt: skip
    with socket.socket() as s:  # a free port: a fixed one collides with a concurrent run
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         f"--master_port={port}", "-m", "neuralsolve.cli", *args, "--out", str(tmp_path / "two")],
        env=env, timeout=300, capture_output=True, text=True,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-4000:]

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    one, two = losses("one"), losses("two")
    assert len(one) == len(two) > 0
    np.testing.assert_allclose(two, one, rtol=1e-9)


def _nsb_reference(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The neural spectral block as the LSM paper's code writes it: per patch, batched
    matrix products of tokens and pixels, and the full ``(tokens, 2K)`` basis table."""
    b, C = x.shape[:2]
    h = block.heads

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, C, P) -> (B, h, P, C/h)
        return t.view(t.shape[0], h, C // h, t.shape[2]).transpose(2, 3)

    kv, counts = _patchify(block.to_kv(x), block.patch)
    k, v = heads(kv[:, :C]), heads(kv[:, C:])
    q = block.latent
    z = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v + q  # (B, h, T, C/h)
    B, _, T, dh = z.shape
    z = z.transpose(1, 2).reshape(B, T, C)
    angles = z[..., None] * block.frequencies
    phi = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    z = torch.einsum("btcj,cj->btc", phi, block.weight) + z
    z = z.view(B, T, h, dh).transpose(1, 2)
    pq = heads(_patchify(block.to_q(x), block.patch)[0])
    out = torch.softmax(pq @ z.transpose(-1, -2), dim=-1) @ z
    return x + _unpatchify(out.transpose(2, 3).reshape(B, C, -1), b, counts, block.patch)


@pytest.mark.parametrize("patch", [(4, 4), (2, 4)])
def test_lsm_spectral_block_matches_the_papers_formula(patch: tuple[int, int]) -> None:
    """The block computes its attention by broadcasting and its basis update one frequency at
    a time (with a hand-written backward); values and gradients are those of the paper's
    batched-matmul form, to float64 rounding (1e-12)."""
    from neuralsolve.operators.lsm import NeuralSpectralBlock, _SpectralUpdate

    torch.manual_seed(0)
    block = NeuralSpectralBlock(16, heads=4, tokens=4, basis=12, patch=patch).double()
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64, requires_grad=True)
    y, ref = block(x), _nsb_reference(block, x)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(y.square().sum(), [x, *block.parameters()])
    refs = torch.autograd.grad(ref.square().sum(), [x, *block.parameters()])
    for g, r in zip(grads, refs, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-10)
    z = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    freqs = torch.arange(3, dtype=torch.float64)
    fn = lambda z, w: _SpectralUpdate.apply(z, w, freqs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, w)) and torch.autograd.gradgradcheck(fn, (z, w))
