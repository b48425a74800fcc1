"""The Trainer: schedules, the three kinds of task, exact resume after SIGKILL, checkpoint safety,
and data-parallel training with two processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import neuralsolve as ns
from neuralsolve.checkpoint import VersionMismatchWarning, load_checkpoint, save_checkpoint
from neuralsolve.optim import Trainer, TrainerConfig, make_schedule

from .conftest import kill_after_checkpoint


# ----------------------------------------------------------------------------- schedules
def test_schedules_at_their_landmarks() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    f = make_schedule("linear", opt, 100, warmup_steps=10).lr_lambdas[0]
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0.0
    c = make_schedule("cosine", opt, 100, min_factor=0.1).lr_lambdas[0]
    assert (
        c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.55) and c(100) == pytest.approx(0.1)
    )
    w = make_schedule("wsd", opt, 100, warmup_steps=5, decay_fraction=0.2).lr_lambdas[0]
    assert (
        w(4) == pytest.approx(1.0)
        and w(79) == 1.0
        and w(90) == pytest.approx(0.5)
        and w(100) == 0.0
    )
    k = make_schedule("constant", opt, 100).lr_lambdas[0]
    assert k(0) == k(99) == 1.0
    with pytest.raises(ValueError, match="available: linear, cosine"):
        make_schedule("step", opt, 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule("linear", opt, 10, warmup_steps=20)


# ----------------------------------------------------------------------------- tasks
def _regression(n: int = 128) -> tuple[torch.nn.Module, TensorDataset, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    X = torch.randn(n, 3)
    y = torch.sin(X.sum(1, keepdim=True))
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, TensorDataset(X, y), X, y


def test_data_loader_task_trains_and_writes_its_record(tmp_path: Path) -> None:
    model, data, X, y = _regression()
    initial = float(((model(X) - y) ** 2).mean().detach())
    cfg = TrainerConfig(
        optimizer="adamw",
        lr=3e-2,
        epochs=16,
        batch_size=16,
        out_dir=str(tmp_path),
        eval_every=16,
        progress=False,
    )
    result = Trainer(
        model,
        lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
        cfg,
        data=data,
        eval_fn=lambda m: {"mse": ((m(X) - y) ** 2).mean()},
    ).fit()
    assert result.steps == 16 * 8 and result.eval["mse"] < 0.25 * initial
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 129))
    assert sum("eval" in r for r in lines) == 8
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    best = load_checkpoint(tmp_path / "best.pt", kind="model")
    assert set(best["model"]) == set(model.state_dict())


def test_full_batch_pinn_task_with_lbfgs_records_why_it_stopped() -> None:
    torch.manual_seed(1)
    x = torch.linspace(0, 1, 32, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def pinn_loss(
        m: torch.nn.Module, _: object
    ) -> torch.Tensor:  # u'' = -pi^2 sin(pi x), u(0) = u(1) = 0
        u = m(x)
        du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
        d2u = torch.autograd.grad(du.sum(), x, create_graph=True)[0]
        residual = d2u + np.pi**2 * torch.sin(np.pi * x)
        ends = m(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
        return (residual**2).mean() + (ends**2).mean()

    cfg = TrainerConfig(
        optimizer="lbfgs",
        lr=1.0,
        steps=40,
        dtype="float64",
        schedule="constant",
        progress=False,
        optimizer_options={"max_iter": 25},
    )
    result = Trainer(model, pinn_loss, cfg).fit()
    assert result.final_loss < 1e-3 * result.losses[0]
    assert result.stop_reason.startswith("converged") or result.stop_reason == "steps done"


def test_unsupervised_task_through_a_linear_operator() -> None:
    """A DCDM-like loss: a network maps b to x and the loss is ||A x - b||^2 / ||b||^2, with A the
    gallery's matrix-free operator (gradients flow through it)."""
    prob = ns.datasets.poisson((8, 8))
    A, b = prob.A, prob.b
    torch.manual_seed(0)
    net = torch.nn.Linear(prob.n, prob.n, bias=False)
    torch.nn.init.zeros_(net.weight)
    cfg = TrainerConfig(optimizer="adam", lr=1e-4, steps=40, dtype="float64", progress=False)
    result = Trainer(net, lambda m, _: ((A @ m(b) - b) ** 2).sum() / (b**2).sum(), cfg).fit()
    assert result.final_loss < 0.5 * result.losses[0]


def test_hessian_optimizer_gets_the_graph_and_loss_falls() -> None:
    model, _, X, y = _regression(64)
    cfg = TrainerConfig(optimizer="adahessian", lr=0.15, steps=60, progress=False)
    result = Trainer(model, lambda m, _: ((m(X) - y) ** 2).mean(), cfg).fit()
    assert result.final_loss < 0.5 * result.losses[0]


def test_config_and_input_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of steps= and epochs="):
        TrainerConfig()
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        TrainerConfig(optimizer="adamx", steps=1)
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainerConfig(schedule="step", steps=1)
    with pytest.raises(TypeError, match="float16"):
        TrainerConfig(steps=1, dtype="float16")
    model, data, X, _ = _regression(8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(model, lambda m, b: m(b[0]).sum(), TrainerConfig(steps=2, batch_size=32), data=data)
    with pytest.raises(ValueError, match="epochs= needs data="):
        Trainer(model, lambda m, b: m(X).sum(), TrainerConfig(epochs=1))
    with pytest.raises(ValueError, match="mixed_precision needs a CUDA device"):
        Trainer(model, lambda m, b: m(X).sum(), TrainerConfig(steps=1, mixed_precision=True))
    with pytest.raises(ValueError, match="grad_clip cannot be combined"):
        Trainer(
            model,
            lambda m, b: m(X).sum(),
            TrainerConfig(steps=1, optimizer="adahessian", grad_clip=1.0),
        )
    with pytest.raises(TypeError, match="scalar tensor"):
        Trainer(model, lambda m, b: m(X), TrainerConfig(steps=1, progress=False)).fit()


# ----------------------------------------------------------------------------- resume
JOB = textwrap.dedent(
    """
    import sys, time, torch
    from torch.utils.data import TensorDataset
    import neuralsolve as ns
    out, resume, delay, optimizer = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    X = torch.randn(96, 3, dtype=torch.float64)
    y = torch.sin(X.sum(1, keepdim=True))
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    def loss_fn(m, batch):
        time.sleep(delay)
        noise = 1e-3 * torch.randn(batch[1].shape, dtype=batch[1].dtype)  # uses the global RNG
        return ((m(batch[0]) - batch[1] - noise) ** 2).mean()
    cfg = ns.optim.TrainerConfig(optimizer=optimizer, lr=1e-2, steps=40, batch_size=16, dtype="float64",
                                 out_dir=out, checkpoint_every=3, progress=False, warmup_steps=5)
    ns.optim.Trainer(model, loss_fn, cfg, data=TensorDataset(X, y)).fit(resume=resume)
    """
)


def _losses(path: Path) -> list[float]:
    return [json.loads(s)["loss"] for s in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "adahessian"])
def test_killed_run_resumes_to_the_same_losses(tmp_path: Path, optimizer: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(
        [sys.executable, str(script), str(ref), "0", "0", optimizer], check=True, timeout=300
    )
    steps_at_kill = kill_after_checkpoint(
        [sys.executable, str(script), str(killed), "0", "0.05", optimizer], killed, 14
    )
    assert 14 <= steps_at_kill < 40
    subprocess.run(
        [sys.executable, str(script), str(killed), "1", "0", optimizer], check=True, timeout=300
    )
    assert _losses(killed / "metrics.jsonl") == _losses(ref / "metrics.jsonl")  # bit-identical


def test_a_crashed_run_resumes_to_the_same_losses(tmp_path: Path) -> None:
    """A run that dies with an exception after a checkpoint resumes, in a fresh Trainer and model,
    to the uninterrupted run's losses (Sophia: its probe generator state is in the checkpoint)."""
    _, data, _, _ = _regression(64)

    def loss_fn(crash_at: int | None = None):
        calls = {"n": 0}

        def fn(m: torch.nn.Module, b: list[torch.Tensor]) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise RuntimeError("simulated crash")
            return ((m(b[0]) - b[1]) ** 2).mean()

        return fn

    def config(out: Path) -> TrainerConfig:
        return TrainerConfig(
            optimizer="sophia",
            lr=1e-2,
            steps=12,
            batch_size=16,
            out_dir=str(out),
            checkpoint_every=3,
            progress=False,
            optimizer_options={"update_every": 2},
        )

    full = Trainer(_regression(64)[0], loss_fn(), config(tmp_path / "a"), data=data).fit().losses
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(_regression(64)[0], loss_fn(crash_at=8), config(tmp_path / "b"), data=data).fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt", kind="trainer")["step"] == 6
    resumed = Trainer(_regression(64)[0], loss_fn(), config(tmp_path / "b"), data=data).fit(
        resume=True
    )
    assert resumed.losses == full
    lines = [
        json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert lines == list(
        range(1, 13)
    )  # the record was rolled back to the checkpoint, then continued


class _Resampler:
    """A hook that redraws a full-batch task's points every ``every`` steps from torch's global
    generator and keeps a count of its rounds (both must survive a resume)."""

    def __init__(self, every: int = 3) -> None:
        self.every = every
        self.rounds = 0
        self.points = torch.zeros(32, 1)
        self.seen: list[int] = []

    def before_step(self, trainer: Trainer) -> None:
        self.seen.append(trainer.step)
        if trainer.step % self.every == 0:
            self.points = torch.rand(32, 1) * 4 - 2
            self.rounds += 1

    def state_dict(self) -> dict:
        return {"rounds": self.rounds, "points": self.points.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.rounds, self.points = int(state["rounds"]), state["points"].clone()


def test_hooks_run_before_every_step_and_resume_exactly(tmp_path: Path) -> None:
    """A resampling hook (a PINN's collocation rounds): a crashed run resumed in a fresh Trainer
    and hook reproduces the uninterrupted run's losses bit for bit, and the hook's state."""

    def make(out: Path, crash_at: int | None = None) -> tuple[Trainer, _Resampler]:
        hook = _Resampler()
        calls = {"n": 0}

        def loss_fn(m: torch.nn.Module, _: object) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise RuntimeError("simulated crash")
            x = hook.points
            return ((m(x) - torch.sin(3 * x)) ** 2).mean()

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        cfg = TrainerConfig(
            optimizer="adam",
            lr=1e-2,
            steps=12,
            out_dir=str(out),
            checkpoint_every=2,
            progress=False,
        )
        return Trainer(model, loss_fn, cfg, hooks=[hook]), hook

    trainer, hook = make(tmp_path / "a")
    full = trainer.fit().losses
    assert hook.seen == list(range(12)) and hook.rounds == 4
    trainer, _ = make(tmp_path / "b", crash_at=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    trainer, resumed_hook = make(tmp_path / "b")
    assert trainer.fit(resume=True).losses == full
    assert resumed_hook.rounds == 4
    torch.testing.assert_close(resumed_hook.points, hook.points, rtol=0, atol=0)
    # a checkpoint made with a hook does not resume without it
    torch.manual_seed(0)
    bare = Trainer(torch.nn.Linear(1, 1), lambda m, _: m.weight.sum(), trainer.config)
    with pytest.raises(ValueError, match="state of 1 hook"):
        bare.fit(resume=True)
    with pytest.raises(TypeError, match="before_step"):
        Trainer(torch.nn.Linear(1, 1), lambda m, _: m.weight.sum(), trainer.config, hooks=[1])


def test_corrupt_foreign_and_code_checkpoints_are_refused(tmp_path: Path) -> None:
    model, data, _, _ = _regression(32)
    cfg = TrainerConfig(steps=2, batch_size=16, out_dir=str(tmp_path), progress=False)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ns.DataFormatError, match="last.pt.*not a readable torch checkpoint"):
        Trainer(model, lambda m, b: m(b[0]).sum(), cfg, data=data).fit(resume=True)
    torch.save({"weights": torch.ones(2)}, tmp_path / "last.pt")
    with pytest.raises(ns.DataFormatError, match="not a neuralsolve checkpoint"):
        Trainer(model, lambda m, b: m(b[0]).sum(), cfg, data=data).fit(resume=True)
    torch.save({"format": "neuralsolve-checkpoint", "payload": _Executable()}, tmp_path / "code.pt")
    with pytest.raises(ns.DataFormatError, match="weights_only=True"):
        load_checkpoint(tmp_path / "code.pt")
    save_checkpoint(tmp_path / "model.pt", {"model": {}}, kind="model")
    with pytest.raises(ns.DataFormatError, match="is a 'model' checkpoint, expected 'trainer'"):
        load_checkpoint(tmp_path / "model.pt", kind="trainer")
    record = torch.load(tmp_path / "model.pt", weights_only=True)
    record["neuralsolve_version"] = "0.0.1"
    torch.save(record, tmp_path / "old.pt")
    with pytest.warns(VersionMismatchWarning, match="0.0.1"):
        load_checkpoint(tmp_path / "old.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


class _Executable:
    """An object that would need code to unpickle."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_resuming_with_another_config_is_refused(tmp_path: Path) -> None:
    model, data, _, _ = _regression(32)
    Trainer(
        model,
        lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
        TrainerConfig(steps=2, batch_size=16, out_dir=str(tmp_path), progress=False),
        data=data,
    ).fit()
    other = TrainerConfig(steps=4, batch_size=8, out_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="batch_size=16"):
        Trainer(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), other, data=data).fit(
            resume=True
        )


# ----------------------------------------------------------------------------- data parallel
DDP_JOB = textwrap.dedent(
    """
    import json, os, sys, torch
    from torch.utils.data import TensorDataset
    import neuralsolve as ns
    out = sys.argv[1]
    torch.manual_seed(0)
    X = torch.randn(128, 3, dtype=torch.float64)
    y = torch.sin(X.sum(1, keepdim=True))
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    cfg = ns.optim.TrainerConfig(optimizer="adamw", lr=1e-2, steps=12, batch_size=32, dtype="float64", progress=False)
    result = ns.optim.Trainer(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), cfg, data=TensorDataset(X, y)).fit()
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out, "w") as fh:
            json.dump(result.losses, fh)
    """
)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    script = tmp_path / "ddp_job.py"
    script.write_text(DDP_JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one.json")], check=True, env=env, timeout=300
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            str(script),
            str(tmp_path / "two.json"),
        ],
        check=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    # Same global batches: each rank averages half of each, DDP averages the ranks' gradients.
    np.testing.assert_allclose(two, one, rtol=1e-10)


def test_full_batch_config_takes_torch_objects_and_paths(tmp_path):
    cfg = TrainerConfig.full_batch(
        steps=5, device=torch.device("cpu"), dtype=torch.float64, out_dir=tmp_path, lr=0.1
    )
    assert (cfg.batch_size, cfg.device, cfg.dtype, cfg.out_dir) == (
        1,
        "cpu",
        "float64",
        str(tmp_path),
    )
    assert cfg.optimizer_options == {} and cfg.lr == 0.1 and cfg.steps == 5
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainerConfig.full_batch(steps=5, device="cpu", dtype="float32", optimizer="nope")
