"""Multi-task FBP with an adaptive sharing policy and attentional feature fusion.

Paper: "Facial Beauty Prediction Combined with Multi-Task Learning of Adaptive Sharing
Policy and Attentional Feature Fusion", Electronics 2024, 13, 179 (AdaShare [14] + AFF [15]).

Model (Sec. 2): a hand-written ResNet-18 whose convolutions are shared by two tasks while
every BatchNorm is task-specific (dataset-aware blocks); each BasicBlock fuses its identity
and residual paths with AFF/MS-CAM (Eqs. 2-5) and is executed or skipped per task by a
learned Gumbel-softmax policy (Eq. 1); each task ends in average pooling, dropout, a fully
connected layer and softmax. Tasks: task 1 = beauty level (5 classes), task 2 = gender.

Loss (Eqs. 6-7): ``L = λ1·CE(beauty) + λ2·CE(gender)``, λ1:λ2 = 1:0.6 (the paper's best,
Tables 9-10). Gender -1 (unknown) is ignored; the gender CE is averaged over the known ones.

Beauty level (Sec. 3.1.2): "the grade with the largest number of volunteers", i.e. the mode
of ``rating_counts`` (ties: the lower grade), levels 1..5 → classes 0..4. Where a sample has
no rating histogram (all zeros) the level is the score rounded half-up and clipped to 1..5.
``level_from="round"`` uses the rounded score always. The regressor's score is the
expected level ``Σ_k p_k · k`` over k = 1..5 of the beauty softmax.

Training recipe (Sec. 3.2, Table 1): AdamW, lr 0.001, batch 32, input 224 (56x56x64 after
the stem). Stages (Sec. 2.2: "initially ... shares all the parameters. As the number of
training epochs increases, the deep network adopts a shared policy"):

1. ``set_stage("warmup")``: every block executed, policy logits frozen;
2. ``set_stage("policy")``: policy logits trainable (own parameter group, AdaShare's policy
   lr 0.01 / weight decay 5e-4), Gumbel-softmax straight-through samples;
3. ``set_stage("finetune")``: policy frozen at its argmax, network weights trained.

Not stated by the paper (defaults from AdaShare's reference code / AFF; see the config):
epochs and stage lengths, dropout rate, MS-CAM ratio r, temperature schedule, augmentation
(the paper names none), weight decay (AdamW's default 0.01).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from comparators.backbones import normalisation
from comparators.base import Batch, Regressor, RegressorOutput
from comparators.regressors.adashare_blocks import GatedBasicBlock, Stem
from comparators.regressors.adashare_policy import (
    EXECUTE,
    SKIP,
    STAGES,
    argmax_policy,
    execute_all,
    gumbel_policy,
    sharing_loss,
    sparsity_loss,
    temperature_at,
)
from comparators.regressors.adashare_weights import load_resnet_weights
from comparators.regressors.options import config_from_kwargs
from comparators.transforms import make_transform
from comparators.registry import register_model

TASKS = ("beauty", "gender")

PAPER_RECIPE: dict[str, Any] = {
    "optim": {
        "name": "adamw",
        "lr": 1e-3,  # Table 1
        "weight_decay": 0.01,  # not stated: AdamW's default
        "policy_lr": 0.01,  # not stated: AdaShare's policy lr
        "policy_weight_decay": 5e-4,  # not stated: AdaShare's
    },
    "schedule": {"name": "constant"},  # the paper states no lr schedule
    "train": {
        "epochs": None,  # not stated by the paper
        "batch_size": 32,  # Table 1
        # stage lengths are not stated; AdaShare's DomainNet recipe warms up for 20% of training
        "stages": {"warmup": 0.2, "policy": 0.8},
        "image_size": 224,
    },
    "augment": [],  # the paper names none
}


@dataclass
class AdaShareAFFConfig:
    """Hyper-parameters of the model; defaults are the paper's, else AdaShare's/AFF's.

    ``layers``/``width``: ResNet-18 = (2, 2, 2, 2) BasicBlocks per stage, 64 base channels
    (the paper's text says "four BasicBlock structures" per layer, which is not ResNet-18;
    we follow ResNet-18, whose ImageNet weights it transfers). Smaller values only for tests.
    """

    layers: tuple[int, ...] = (2, 2, 2, 2)
    width: int = 64  # base channels of the first stage (ResNet-18: 64)
    num_levels: int = 5  # beauty levels of task 1 (classes)
    num_genders: int = 2  # classes of task 2 (gender)
    task_weights: tuple[float, float] = (1.0, 0.6)  # λ1 : λ2, Eq. 7 / Tables 9-10
    use_aff: bool = True  # fuse each block's identity and residual with AFF (False: plain addition)
    aff_ratio: int = 4  # r of Eqs. 3-4; AFF's default (not stated by the paper)
    dropout: float = 0.5  # rate not stated by the paper
    weights: str = "random"  # "random", "imagenet" or a timm/torchvision resnet18 checkpoint path
    image_size: int = 224  # input side in px
    augment: tuple[str, ...] = ()  # training augmentations, comparators.transforms.AUGMENTATIONS
    lr: float = 1e-3  # learning rate of the network's weights
    weight_decay: float = 0.01  # weight decay of the network's weights
    policy_lr: float = 0.01  # learning rate of the policy logits (AdaShare)
    policy_weight_decay: float = 5e-4  # weight decay of the policy logits (AdaShare)
    policy_init: float = 0.5  # AdaShare "equal" init: both logits 0.5
    init_temperature: float = 5.0  # AdaShare: τ0 = 5
    temperature_decay: float = 0.965  # AdaShare: ×0.965 ...
    temperature_every: int = 100  # ... every 100 policy-learning steps
    hard_sampling: bool = True  # straight-through Gumbel-softmax (one-hot forward)
    sparsity_weight: float = 0.0  # AdaShare regularisers; the paper's Eq. 7 has none
    sharing_weight: float = 0.0  # AdaShare's sharing regulariser; the paper's Eq. 7 has none
    level_from: str = "mode"  # "mode" of rating_counts (Sec. 3.1.2) or "round" of the score
    # where each task's labels come from: "same" (one database gives both, the paper's SCUT-FBP5500
    # experiment) or "second" (multi-database, the paper's LSAFBD + SCUT-FBP5500 setting: beauty
    # from the run's dataset, gender from ``data.second`` only, batch key ``database``)
    gender_from: str = "same"
    learn_policy: bool = True  # False: every block executed for both tasks (ResNet-18 + AFF, the paper's baseline)

    def __post_init__(self) -> None:
        self.layers = tuple(int(n) for n in self.layers)
        self.task_weights = tuple(float(w) for w in self.task_weights)  # type: ignore[assignment]
        self.augment = tuple(self.augment)
        checks = {
            "layers": len(self.layers) == 4 and all(n >= 1 for n in self.layers),
            "width": self.width >= 1,
            "num_levels": self.num_levels >= 2,
            "num_genders": self.num_genders >= 2,
            "task_weights": len(self.task_weights) == 2 and all(w >= 0 for w in self.task_weights),
            "aff_ratio": self.aff_ratio >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "image_size": self.image_size >= 32,
            "init_temperature": self.init_temperature > 0,
            "temperature_decay": 0 < self.temperature_decay <= 1,
            "temperature_every": self.temperature_every >= 1,
            "sparsity_weight": self.sparsity_weight >= 0,
            "sharing_weight": self.sharing_weight >= 0,
            "level_from": self.level_from in ("mode", "round"),
            "gender_from": self.gender_from in ("same", "second"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AdaShareAFFConfig.{name} has an invalid value: {getattr(self, name)!r}")


def beauty_levels(score: torch.Tensor, rating_counts: Optional[torch.Tensor], level_from: str = "mode",
                  num_levels: int = 5) -> torch.Tensor:
    """Class index 0..num_levels-1 per sample (see the module docstring for the rule)."""
    rounded = torch.floor(score.float() + 0.5).clamp(1, num_levels).long() - 1
    if level_from == "round" or rating_counts is None:
        return rounded
    if rating_counts.ndim != 2 or rating_counts.shape != (score.shape[0], num_levels):
        raise ValueError(f"rating_counts must be [B, {num_levels}], got {tuple(rating_counts.shape)}")
    has_histogram = rating_counts.sum(dim=1) > 0
    return torch.where(has_histogram, rating_counts.argmax(dim=1), rounded)


class AdaShareAFFRegressor(Regressor):
    """Two-task (beauty level, gender) AdaShare ResNet-18 with AFF and task-specific BN."""

    def __init__(self, config: AdaShareAFFConfig) -> None:
        super().__init__()
        self.config = config
        n_tasks, c = len(TASKS), config.width
        self.stem = Stem(c, n_tasks)
        stages, in_ch = [], c
        for s, num_blocks in enumerate(config.layers):
            out_ch = c * 2**s
            stage = []
            for b in range(num_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                stage.append(GatedBasicBlock(in_ch, out_ch, stride, n_tasks, config.use_aff, config.aff_ratio))
                in_ch = out_ch
            stages.append(nn.ModuleList(stage))
        self.layers = nn.ModuleList(stages)
        classes = (config.num_levels, config.num_genders)
        self.heads = nn.ModuleList(nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_ch, k)) for k in classes)
        self.policy_logits = nn.Parameter(torch.full((n_tasks, sum(config.layers), 2), float(config.policy_init)))
        self.register_buffer("policy_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("levels", torch.arange(1, config.num_levels + 1, dtype=torch.float32), persistent=False)
        self.stage = "warmup"
        self.set_stage("warmup")  # also freezes the policy logits
        self._init_weights()
        if config.weights != "random":
            load_resnet_weights(self, config.weights)

    def _init_weights(self) -> None:
        """He init for convolutions (torchvision's ResNet), unit/zero BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[GatedBasicBlock]:
        """The residual blocks in order, one policy column each (a view of ``layers``)."""
        return [block for stage in self.layers for block in stage]

    # ----------------------------------------------------------------- stages & policy
    def set_stage(self, stage: str) -> None:
        """Switch training stage; only ``"policy"`` lets the policy logits learn."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose from {list(STAGES)}")
        self.stage = stage
        self.policy_logits.requires_grad_(stage == "policy")

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Training-loop hook: shared warm-up for the first 20% of epochs, then policy learning.

        The split is AdaShare's (``PAPER_RECIPE["train"]["stages"]``); the FBP paper states none.
        """
        warmup_epochs = round(PAPER_RECIPE["train"]["stages"]["warmup"] * num_epochs)
        self.set_stage("warmup" if epoch <= warmup_epochs or not self.config.learn_policy else "policy")

    def get_extra_state(self) -> torch.Tensor:
        """The stage travels with the weights, as a tensor so safetensors/accelerate can store it."""
        return torch.tensor(STAGES.index(self.stage))

    def set_extra_state(self, state) -> None:
        self.set_stage(STAGES[int(state)] if not isinstance(state, dict) else state["stage"])

    @property
    def temperature(self) -> float:
        c = self.config
        return temperature_at(int(self.policy_steps), c.init_temperature, c.temperature_decay, c.temperature_every)

    def policy_probabilities(self) -> torch.Tensor:
        """P(execute), P(skip) per task and block: what the policy has learned so far."""
        return self.policy_logits.detach().softmax(dim=-1)

    def current_policy(self) -> torch.Tensor:
        """One-hot policy ``[tasks, blocks, 2]`` for this forward pass (Eq. 1's ``policy``)."""
        if self.stage == "warmup":
            return execute_all(*self.policy_logits.shape[:2], device=self.policy_logits.device)
        if self.stage == "policy" and self.training:
            sample = gumbel_policy(self.policy_logits, self.temperature, self.config.hard_sampling)
            self.policy_steps += 1
            return sample
        return argmax_policy(self.policy_logits.detach())

    def run_summary(self) -> dict[str, Any]:
        """The sharing policy the scored weights use: P(execute) per task and block, and the
        executed / skipped decision (the argmax) the evaluation ran."""
        probs = self.policy_probabilities()[..., EXECUTE]
        return {"sharing_policy": {"tasks": list(TASKS), "stage": self.stage, "learned": self.config.learn_policy,
                                   "p_execute": [[round(float(p), 4) for p in row] for row in probs],
                                   "executed": [[bool(p >= 0.5) for p in row] for row in probs]}}

    def write_figures(self, folder: Path) -> list[Path]:
        """``policy.png``: P(execute) per block (columns) and task (rows), the decision marked."""
        from comparators.regressors.adashare_plot import policy_plot

        return [policy_plot(folder / "policy.png", self.policy_probabilities()[..., EXECUTE], TASKS, self.config.layers)]

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Network weights (paper: AdamW lr 1e-3) and policy logits (AdaShare: lr 0.01)."""
        c = self.config
        weights = [p for name, p in self.named_parameters() if name != "policy_logits"]
        return [
            {"name": "weights", "params": weights, "lr": c.lr, "weight_decay": c.weight_decay},
            {"name": "policy", "params": [self.policy_logits], "lr": c.policy_lr, "weight_decay": c.policy_weight_decay},
        ]

    # ------------------------------------------------------------------ forward & loss
    def _task_forward(self, images: torch.Tensor, task: int, policy: torch.Tensor) -> torch.Tensor:
        x = self.stem(images, task)
        for i, block in enumerate(self.blocks):
            p = policy[i]
            if not p.requires_grad and float(p[EXECUTE]) == 0.0:  # fixed skip: no need to run the block
                x = x if block.downsample is None else block.downsample(x, task)
                continue
            executed, shortcut = block(x, task)
            x = executed * p[EXECUTE] + shortcut * p[SKIP]  # Eq. 1: out = [x' x] · policy
        return self.heads[task](x.mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        policy = self.current_policy()
        beauty = self._task_forward(images, 0, policy[0])  # always: the score comes from it
        if self.config.task_weights[1] > 0:
            gender = self._task_forward(images, 1, policy[1])
        else:  # beauty alone (the single-task baseline): the gender path would cost as much, for nothing
            gender = beauty.new_zeros(images.shape[0], self.config.num_genders)
        score = beauty.softmax(dim=1) @ self.levels
        return RegressorOutput(score=score, extras={"beauty_logits": beauty, "gender_logits": gender, "policy": policy})

    @property
    def uses_second_database(self) -> bool:
        return self.config.gender_from == "second"

    def task_targets(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(beauty level, gender) class targets, -1 where a task learns nothing from the sample:
        gender unknown, or (``gender_from: second``) the other task's database."""
        c = self.config
        levels = beauty_levels(batch["score"].to(device), _optional(batch, "rating_counts", device), c.level_from, c.num_levels)
        gender = batch["gender"].to(device).long()
        if bool(((gender < -1) | (gender >= c.num_genders)).any()):
            raise ValueError(f"gender labels must be -1 or 0..{c.num_genders - 1}, got {gender.unique().tolist()}")
        if c.gender_from == "second":
            database = batch["database"].to(device)
            levels = torch.where(database == 0, levels, -1)
            gender = torch.where(database == 1, gender, -1)
        return levels, gender

    def classifications(self, output: RegressorOutput, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Both tasks, each where it is trained (a task of weight 0 is not reported)."""
        levels, gender = self.task_targets(batch, output.score.device)
        tasks = {"beauty_level": (output.extras["beauty_logits"], levels), "gender": (output.extras["gender_logits"], gender)}
        return {name: task for (name, task), weight in zip(tasks.items(), self.config.task_weights) if weight > 0}

    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        """Eq. 7: λ1·CE(beauty level) + λ2·CE(gender), each over the samples that give its label
        (+ AdaShare regularisers). A batch without any label of a task adds 0 for it."""
        c = self.config
        beauty, gender_logits = output.extras["beauty_logits"], output.extras["gender_logits"]
        levels, gender = self.task_targets(batch, beauty.device)
        total = beauty.sum() * 0.0  # keeps the graph when a batch holds neither task's labels
        if bool((levels >= 0).any()):
            total = total + c.task_weights[0] * F.cross_entropy(beauty, levels, ignore_index=-1)
        if bool((gender >= 0).any()):
            total = total + c.task_weights[1] * F.cross_entropy(gender_logits, gender, ignore_index=-1)
        if self.stage == "policy":
            if c.sparsity_weight:
                total = total + c.sparsity_weight * sparsity_loss(self.policy_logits)
            if c.sharing_weight:
                total = total + c.sharing_weight * sharing_loss(self.policy_logits)
        return total

    # ----------------------------------------------------------------------- transforms
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        mean, std = normalisation("resnet18")
        return make_transform(self.config.image_size, mean, std, train=False)

    def train_preprocess(self) -> Callable[[Any], torch.Tensor]:
        mean, std = normalisation("resnet18")
        return make_transform(self.config.image_size, mean, std, train=True, augment=self.config.augment)


def _optional(batch: Batch, key: str, device: torch.device) -> Optional[torch.Tensor]:
    value = batch.get(key)
    return None if value is None else value.to(device)


@register_model("adashare-aff", kind="regressor", options=AdaShareAFFConfig,
                paper="Facial Beauty Prediction Combined with Multi-Task Learning of Adaptive Sharing Policy and "
                      "Attentional Feature Fusion, Electronics 2024, 13, 179",
                backbone="ResNet-18 with task-specific BatchNorm and AFF (its own; model.weights: ImageNet)")
def build(**kwargs: Any) -> AdaShareAFFRegressor:
    """Factory for the registry: validates ``kwargs`` through :class:`AdaShareAFFConfig`."""
    return AdaShareAFFRegressor(config_from_kwargs(AdaShareAFFConfig, kwargs))
