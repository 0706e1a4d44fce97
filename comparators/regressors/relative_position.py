"""IR-50 + expected value refinement + relative position learning + gender (Amirullaeva & Han,
"Relative Age Position Learning for Face-Based Age Estimation", IEEE Access 2024).

Three tasks share one backbone (Fig. 1), trained jointly (Sec. III-E):

* **score** (Sec. III-B): pooled features ``F ∈ R^{b×c}`` -> FC -> softmax over the ``n`` labels
  -> ``â = Σ l_i s_i`` (Eq. 1), trained with the L1 loss (Eq. 2). This is the prediction.
* **gender** (Sec. III-C): FC ``c -> 2`` with cross-entropy (Eq. 3). Class index = the batch's
  gender code (0 female, 1 male); the paper's one-hot order is only a naming convention.
  Samples of unknown gender (-1) are left out of the mean; a batch with none known adds 0
  (the paper drops the head for CACD, which has no gender labels; ``use_gender=False`` too).
* **relative position** (Sec. III-D, training only): the references ``R ∈ R^{n×c}`` (features
  of the min-error training sample of each label, :mod:`.relative_position_references`) gate
  ``F`` label-wise (Eqs. 4-6), and a two-FC head predicts the position (label index, Fig. 2)
  with cross-entropy (Eq. 7).

``L = L_age + λ L_gender + μ L_position`` (Eq. 8) with λ = μ = 1 (paper).

Backbone: ``ir50_poster`` - IR-50 with its last block removed, ``c = 256`` (Sec. III-A, from
POSTER++). The paper fine-tunes weights pretrained on MS-Celeb-1M and then IMDB-Clean; none
ship offline, so ``weights`` must be a checkpoint path (face.evoLVe or POSTER++ ``ir50.pth``)
or, explicitly, ``"random"``. Inputs 112x112, ArcFace normalisation ``(x - 0.5) / 0.5``.

Targets: any ordinal score. ``label_values`` or ``label_min/max/step`` define the labels (AgeDB:
``1, 101, 1``; the default is beauty ``1.0 .. 5.0`` step ``0.1``, 41 labels). Batch keys:
``image``, ``score`` (the target, age or beauty), ``gender``.

Training-loop hooks (the loop calls them when a model has them):

* ``on_epoch_start(epoch)`` - forget the running per-label minima of a previous epoch;
* ``on_epoch_end(epoch)`` - fix each label's min-error sample of this epoch as its reference
  for the next epoch (Algorithm 1; the paper runs it "before each epoch" from the saved
  features of the last one - the same thing one step earlier).

Every :meth:`RelativePositionRegressor.loss` call in training mode records each sample's error
``|a − â|`` and features for that selection. In the first epoch there are no references yet
(the paper omits selection for it), so ``L_position`` is 0 and only the score and gender heads
learn; from the second epoch on the full Eq. 8 applies.

Inference needs no references: the score comes from the EVR head alone (relative position
learning "is performed only for model training", Sec. III-D). When references are present
(they are saved in the state dict), ``forward`` also returns ``position_logits`` and
``position_score`` (the label of the predicted position, ``â^p`` of the confidence score, Eq. 12).

Training recipe (:data:`PAPER_RECIPE`, Sec. IV-A): Adam with weight decay 1e-2, lr 1e-5 (AgeDB,
AFAD; 1e-6 for CACD) multiplied by 0.1 every 10 epochs, 30 epochs, batch 64, best model by
validation MAE. Augmentation: horizontal and vertical flips, grey-scaling, rotation and
sharpness changes; the shared transforms offer ``hflip`` and ``rotation`` only, so those two
are used (vertical flip, grey-scale and sharpness are missing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

import comparators.ir50  # noqa: F401  (registers "ir50" and "ir50_poster" with timm)
from comparators.backbone_options import BackboneOptions
from comparators.base import Batch, Regressor, RegressorOutput
from comparators.partial import top
from comparators.regressors.options import config_from_kwargs
from comparators.regressors.split_backbone import SplitBackboneRegressor
from comparators.regressors.relative_position_heads import (
    AgeReweighting,
    ExpectedValueHead,
    RelativePositionHead,
)
from comparators.regressors.relative_position_labels import LabelSpace
from comparators.regressors.relative_position_references import ReferenceSelector
from comparators.transforms import BackboneTransforms
from comparators.registry import register_model

PAPER_RECIPE: dict[str, Any] = {
    "optim": {"name": "adam", "lr": 1e-5, "weight_decay": 1e-2},  # lr 1e-6 for CACD
    "schedule": {"name": "step", "step_size": 10, "gamma": 0.1},
    "train": {"epochs": 30, "batch_size": 64},
    "augment": ["hflip", "rotation"],  # paper also: vflip, grayscale, sharpness (not in transforms)
}


@dataclass
class RelativePositionConfig(BackboneOptions):
    """Model settings (the shared backbone options, then its own; paper defaults); training
    settings live in :data:`PAPER_RECIPE`."""

    backbone: str = "ir50_poster"  # IR-50 without its last block, c = 256 (Sec. III-A)
    weights: Optional[str] = None  # checkpoint path | "random" | "imagenet" (must be given)
    image_size: int = 112
    augment: tuple[str, ...] = ("hflip", "rotation")
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. reduced widths/depths
    label_values: Optional[tuple[float, ...]] = None  # explicit labels l_1 < ... < l_n
    label_min: Optional[float] = None  # or a range; all three None = beauty 1.0..5.0 step 0.1
    label_max: Optional[float] = None  # largest label of the range (with label_min, label_step)
    label_step: Optional[float] = None  # spacing of the labels in the range
    lambda_gender: float = 1.0  # λ of Eq. 8
    mu_position: float = 1.0  # μ of Eq. 8
    use_gender: bool = True  # GP head (off for data without gender, e.g. CACD)
    use_position: bool = True  # RAPL (off = the IR50+EVR(+GP) ablations of Table 3)
    reweight_init: float = 1.0  # initial value of every p_j (Eq. 4); not given by the paper

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is None:
            raise ValueError(
                "weights: the paper fine-tunes an IR-50 pretrained on MS-Celeb-1M (+ IMDB-Clean), which "
                "is not available offline; give `weights: /path/to/ir50.pth` (face.evoLVe or POSTER++ "
                "format) or set `weights: random` to train from scratch"
            )
        for name in ("lambda_gender", "mu_position"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.label_values is not None:
            self.label_values = tuple(float(v) for v in self.label_values)
        self.backbone_kwargs = dict(self.backbone_kwargs)

    def label_space(self) -> LabelSpace:
        return LabelSpace.from_config(self.label_values, self.label_min, self.label_max, self.label_step)


class RelativePositionRegressor(SplitBackboneRegressor, BackboneTransforms, Regressor):
    """Backbone -> pooled F -> {EVR score, gender logits, reweighted relative-position logits}.

    With ``trainable_from`` (a timm backbone, e.g. the offline ImageNet MobileNetV2 in place of
    the unavailable face-recognition IR-50) the frozen trunk's maps are cached per image and view,
    and the top + the three heads train on them (:mod:`comparators.partial`)."""

    def __init__(self, config: RelativePositionConfig) -> None:
        super().__init__()
        self.config = config
        self.labels = config.label_space()
        self.backbone = config.build_backbone(**config.backbone_kwargs)
        c, n = self.backbone.num_features, len(self.labels)
        self.evr = ExpectedValueHead(c, self.labels.values)
        self.gender_head = torch.nn.Linear(c, 2) if config.use_gender else None
        if config.use_position:
            self.selector: Optional[ReferenceSelector] = ReferenceSelector(n, c)
            self.reweighting: Optional[AgeReweighting] = AgeReweighting(n, config.reweight_init)
            self.position_head: Optional[RelativePositionHead] = RelativePositionHead(c, n)
        else:
            self.selector = self.reweighting = self.position_head = None
        self.last_loss_terms: dict[str, torch.Tensor] = {}

    @property
    def label_values(self) -> torch.Tensor:
        return self.evr.label_values

    # --- forward ------------------------------------------------------------------------
    def forward_head(self, features: torch.Tensor) -> RegressorOutput:
        """The three heads on pooled features ``F`` [B, c] (exposed so tests can feed known F),
        after the trainable top when the backbone is split (``features`` are then trunk maps)."""
        features = top(self.backbone, features)
        score, logits = self.evr(features)
        extras: dict[str, torch.Tensor] = {"features": features, "label_logits": logits}
        if self.gender_head is not None:
            extras["gender_logits"] = self.gender_head(features)
        if self.selector is not None and self.selector.has_references:
            reweighted = self.reweighting(features, self.selector.references)  # Eqs. 4-6
            position_logits = self.position_head(reweighted)
            extras["position_logits"] = position_logits
            extras["position_score"] = self.label_values[position_logits.argmax(dim=1)]
        return RegressorOutput(score=score, extras=extras)

    # --- loss ---------------------------------------------------------------------------
    def loss(self, output: RegressorOutput, batch: Batch) -> torch.Tensor:
        """Eq. 8: ``L_age + λ L_gender + μ L_position``; records errors for reference selection.

        The terms of the last call are kept (detached) in :attr:`last_loss_terms` for logging.
        """
        target = batch["score"].to(output.score.device, torch.float32)
        if target.shape != output.score.shape:
            raise ValueError(f"batch['score'] has shape {tuple(target.shape)}, scores {tuple(output.score.shape)}")
        if not torch.isfinite(target).all():
            raise ValueError("batch['score'] holds nan/inf: every training sample needs its target score")
        loss_age = F.l1_loss(output.score.float(), target)  # Eq. 2
        terms = {"age": loss_age}
        total = loss_age
        if self.gender_head is not None:
            loss_gender = self._gender_loss(output.extras["gender_logits"], batch)
            terms["gender"] = loss_gender
            total = total + self.config.lambda_gender * loss_gender
        positions = self.labels.position_of(target)
        if "position_logits" in output.extras:
            loss_position = F.cross_entropy(output.extras["position_logits"].float(), positions)  # Eq. 7
            terms["position"] = loss_position
            total = total + self.config.mu_position * loss_position
        elif self.selector is not None:
            # first epoch, no references yet: L_position is 0. The zero term keeps the position
            # parameters in the graph, so data-parallel training (which expects a gradient for
            # every parameter) does not fail; their gradients are exactly 0 (an optimiser with
            # coupled weight decay, like the paper's Adam, still shrinks them slightly).
            total = total + 0.0 * sum(p.sum() for p in self._position_parameters())
        if self.training and self.selector is not None:
            errors = (target - output.score.detach().float()).abs()
            self.selector.observe(output.extras["features"].detach(), positions, errors)
        self.last_loss_terms = {k: v.detach() for k, v in terms.items()}
        return total

    def classifications(self, output: RegressorOutput, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Gender (the GP head, Sec. III-C), when the model has it."""
        if self.gender_head is None:
            return {}
        logits = output.extras["gender_logits"]
        return {"gender": (logits, batch["gender"].to(logits.device).long())}

    def _position_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.reweighting.parameters(), *self.position_head.parameters()]

    @staticmethod
    def _gender_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Eq. 3 over the samples with a known gender (0 female, 1 male); 0 when none is known."""
        gender = batch.get("gender")
        if gender is None:
            return logits.sum() * 0.0
        gender = gender.to(logits.device).long()
        if gender.shape != logits.shape[:1]:
            raise ValueError(f"batch['gender'] has shape {tuple(gender.shape)}, expected ({logits.shape[0]},)")
        if ((gender < -1) | (gender > 1)).any():
            raise ValueError(f"batch['gender'] must be 0 (female), 1 (male) or -1 (unknown), got {gender.tolist()}")
        known = gender >= 0
        if not known.any():
            return logits.sum() * 0.0  # keeps the graph (and DDP's used-parameter set) intact
        return F.cross_entropy(logits[known].float(), gender[known])

    # --- training-loop hooks ------------------------------------------------------------
    def on_epoch_start(self, epoch: int, num_epochs: Optional[int] = None) -> None:
        """Start tracking this epoch's min-error sample per label afresh."""
        if self.selector is not None:
            self.selector.reset_epoch()

    def on_epoch_end(self, epoch: int, num_epochs: Optional[int] = None) -> None:
        """Fix this epoch's min-error samples as the references of the next epoch (Algorithm 1)."""
        if self.selector is not None:
            self.selector.commit()



@register_model("relative-position", kind="regressor", options=RelativePositionConfig,
                paper="Amirullaeva & Han, Relative Age Position Learning for Face-Based Age Estimation, IEEE Access 2024")
def build(**kwargs: Any) -> RelativePositionRegressor:
    """Factory for the registry: ``build(weights="random", label_min=1, label_max=101, label_step=1)``."""
    return RelativePositionRegressor(config_from_kwargs(RelativePositionConfig, kwargs))
