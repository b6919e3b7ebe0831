"""Frozen, validated configs. A recipe's `get_config()` returns a `Recipe`.

Configs hold data only (names and numbers), never live objects, so that they
print, diff, serialise to JSON and override from the command line.
"""

import ast
import dataclasses
import fractions
import importlib.util
import json
import math
import os
from typing import Optional, Tuple

from tfrobust.attacks import registry as attack_registry
from tfrobust.attacks.projections import check_step_schedule
from tfrobust.training import objectives

NORMS = ("linf", "l2")
TRAIN_ATTACKS = attack_registry.names(train=True)
EVAL_ATTACKS = attack_registry.names(evaluate=True)
METHODS = (*objectives.METHODS, "static")
AUGMENT_MODES = ("none", "fixed", "legacy")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cyclic", "piecewise", "cosine")
EPOCH_LENGTHS = ("pass", "real_batches")


def _fail(key, expected, value):
    raise ValueError(f"{key} must be {expected}. Received: {key}={value!r}")


def _check_positive(key, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, "a number", value)
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, ">= 0" if allow_zero else "> 0", value)


def _check_choice(key, value, choices):
    if value not in choices:
        _fail(key, f"one of {choices}", value)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data, and how it is batched and augmented.

    Attributes:
        dataset: mnist, fashion_mnist, cifar10, cifar100 or svhn.
        data_dir: where npz files or prepared TFDS data live (None: the
            `TFROBUST_DATA_DIR` variable, then the bundled MNIST).
        batch_size: the global batch size.
        augment: "none", "fixed" (stateless per-element seeds) or "legacy"
            (reproduces the PyTorch+NumPy worker-seeding bug).
        pad, flip, cutout: the augmentation (pad-and-crop, horizontal flip,
            cutout square side; 0 disables cutout).
        n_train: use only the first n training examples (None: all).
        seed: the global seed; every per-element seed derives from it.
        generated: generated data to mix into every batch (Gowal et al.,
            arXiv 2110.09468): an npz path (keys `image`, `label`, as their
            published samples), or "gaussian" for the class-conditional
            Gaussian fitted to the training set (`data.generated`). None: no
            generated data.
        generated_fraction: share of each batch taken from the generated
            set, 0 (real only) to 1 (generated only); Gowal et al. use 0.7.
        generated_n: images drawn from the "gaussian" generator.
        teacher: a model (.keras or run directory) that pseudo-labels the
            generated set; its clean test accuracy is reported. None: use the
            set's own labels.
        repeats: repeated augmentation: each batch holds batch_size / repeats
            distinct images, each `repeats` times with its own augmentation
            and attack seed (Hoffer et al., arXiv 1901.09335; Gowal et al.'s
            code repeats 4x). An epoch stays one pass over the distinct
            images. 1: off.
    """

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    batch_size: int = 128
    augment: str = "none"
    pad: int = 4
    flip: bool = True
    cutout: int = 0
    n_train: Optional[int] = None
    seed: int = 0
    generated: Optional[str] = None
    generated_fraction: float = 0.0
    generated_n: int = 50000
    teacher: Optional[str] = None
    repeats: int = 1

    def validate(self):
        _check_choice("data.dataset", self.dataset, ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            _fail("data.batch_size", "an int >= 1", self.batch_size)
        _check_choice("data.augment", self.augment, AUGMENT_MODES)
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < self.batch_size):
            _fail("data.n_train", "None or an int >= batch_size", self.n_train)
        if not isinstance(self.generated_fraction, (int, float)) or not 0 <= self.generated_fraction <= 1:
            _fail("data.generated_fraction", "a number in [0, 1]", self.generated_fraction)
        if self.generated_fraction > 0 and not self.generated:
            _fail("data.generated", "an npz path or 'gaussian' when generated_fraction > 0", self.generated)
        if not isinstance(self.generated_n, int) or self.generated_n < 1:
            _fail("data.generated_n", "an int >= 1", self.generated_n)
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1 \
                or self.batch_size % self.repeats:
            _fail("data.repeats", f"an int >= 1 that divides data.batch_size ({self.batch_size})", self.repeats)
        if self.repeats > 1 and self.augment == "legacy":
            _fail("data.repeats", "1 with data.augment='legacy' (its parameters follow batch positions)", self.repeats)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The classifier, by registry name (see `tfrobust.models.available()`).

    Attributes:
        name: the registry name.
        width: width multiplier (models that have one).
        normalize: normalise inputs with the dataset's mean and std inside
            the model; False feeds raw [0, 1] pixels, as some papers' code does.
        init: "keras" or "torch" (PyTorch's default initialisation; models
            that support it).
        batch_norm: "bn" (plain BatchNorm) or "mixbn": separate BatchNorm for
            clean and adversarial images (Xie & Yuille, arXiv 1906.03787;
            `tfrobust.models.mixbn`). "mixbn" needs a model with a batch_norm
            factory.
        sync_bn: all-reduce BatchNorm's batch statistics across replicas (plain
            or MixBN), so that under a strategy N replicas train as one device
            on the global batch; without it each replica normalises its own
            slice. No effect on one device. Needs a model with a batch_norm
            factory (`models.normalization.synchronized_batch_norm`).
        bn_branch: with "mixbn", the branch used for evaluation and export:
            "adv" (the robust model) or "clean".
        activation: the activation of models that take one (the WRNs, e.g.
            "swish" as Gowal et al.'s code); None keeps the model's default.
    """

    name: str = "wong_cnn"
    width: int = 1
    normalize: bool = True
    init: str = "keras"
    batch_norm: str = "bn"
    bn_branch: str = "adv"
    activation: Optional[str] = None
    sync_bn: bool = False

    def validate(self):
        if not isinstance(self.name, str) or not self.name:
            _fail("model.name", "a model name", self.name)
        _check_choice("model.init", self.init, ("keras", "torch"))
        _check_choice("model.batch_norm", self.batch_norm, ("bn", "mixbn"))
        if not isinstance(self.sync_bn, bool):
            _fail("model.sync_bn", "true or false", self.sync_bn)
        _check_choice("model.bn_branch", self.bn_branch, ("clean", "adv"))
        if self.activation is not None and (not isinstance(self.activation, str) or not self.activation):
            _fail("model.activation", "None or an activation name", self.activation)


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """The training attack and threat model.

    Attributes:
        name: fgsm, fgsm_rs, nfgsm, pgd or pgd_margin; also stadv with
            train.method="static" (eps is then stAdv's flow bound in pixels).
        norm: "linf" or "l2".
        eps: the radius, in [0, 1] pixel units.
        steps: attack steps.
        step_size: None means the attack's default (2.5 eps / steps for PGD,
            1.25 eps for FGSM-RS, eps for N-FGSM).
        restarts: random restarts.
        bn: BatchNorm during the training attack: "inference" (moving
            statistics) or "batch_stats" (the batch's statistics, as PyTorch
            code that attacks in train mode does; updates are dropped).
        bn_branch: with `model.batch_norm="mixbn"`, the BatchNorm branch the
            training attack runs through: "adv" (Xie & Yuille) or "clean".
        precision: "float32", or "bfloat16" for the training attack's passes
            (fast on CPUs with AMX, TPUs and recent GPUs; the training pass and
            the evaluation stay float32).
        step_rule: PGD's step: "sign" (steepest ascent for the norm) or
            "adam" (Adam on the input, as Gowal et al.'s code attacks).
        step_schedule: PGD's piecewise-constant step size, `(boundary, scale)`
            pairs (`--set attack.step_schedule=5:0.1`): from step `boundary`
            on, the step size is multiplied by `scale`.
    """

    name: str = "pgd"
    norm: str = "linf"
    eps: float = 0.3
    steps: int = 10
    step_size: Optional[float] = None
    restarts: int = 1
    bn: str = "inference"
    bn_branch: str = "adv"
    precision: str = "float32"
    step_rule: str = "sign"
    step_schedule: Tuple[Tuple[int, float], ...] = ()

    def validate(self, prefix="attack"):
        _check_choice(f"{prefix}.name", self.name, TRAIN_ATTACKS)
        _check_choice(f"{prefix}.norm", self.norm, NORMS)
        _check_positive(f"{prefix}.eps", self.eps)
        if not math.isfinite(self.eps):
            _fail(f"{prefix}.eps", "a finite number", self.eps)
        if not isinstance(self.steps, int) or self.steps < 1:
            _fail(f"{prefix}.steps", "an int >= 1", self.steps)
        if self.step_size is not None:
            _check_positive(f"{prefix}.step_size", self.step_size)
        if not isinstance(self.restarts, int) or self.restarts < 1:
            _fail(f"{prefix}.restarts", "an int >= 1", self.restarts)
        _check_choice(f"{prefix}.bn", self.bn, ("inference", "batch_stats"))
        _check_choice(f"{prefix}.bn_branch", self.bn_branch, ("clean", "adv"))
        _check_choice(f"{prefix}.precision", self.precision, ("float32", "bfloat16"))
        _check_choice(f"{prefix}.step_rule", self.step_rule, ("sign", "adam"))
        try:
            schedule = check_step_schedule(self.step_schedule, self.steps)
        except ValueError:
            _fail(f"{prefix}.step_schedule", f"(boundary >= 1, scale > 0) pairs with increasing boundaries below "
                  f"attack.steps ({self.steps})", self.step_schedule)
        # JSON gives the pairs back as lists; a recipe compares equal to itself after a round trip.
        object.__setattr__(self, "step_schedule", schedule)
        if (self.step_rule != "sign" or schedule) and self.name not in ("pgd", "pgd_margin"):
            _fail(f"{prefix}.step_rule", "'sign' without a step_schedule unless the attack is pgd or pgd_margin",
                  (self.name, self.step_rule, schedule))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training method and its optimisation.

    Attributes:
        method: standard, pgd, fgsm_rs, nfgsm, trades, or "static": Prabhu et
            al.'s fine-tuning of the `init_from` model on its training set
            plus one stored adversarial example per image (1:1), made once
            with the recipe's attack (`training.static_set`).
        init_from: a model to start from (.keras file or run directory);
            required by "static", optional otherwise.
        epochs: training epochs.
        steps_per_epoch: batches per epoch, or None to size epochs by
            `epoch_length`. The data streams run on across their passes.
        epoch_length: what an epoch is when `steps_per_epoch` is None:
            "pass", one pass over the real data in the real share of each
            batch (at 30:70 real:generated, 3.3x the steps of a run without
            generated data); or "real_batches", one pass over the real data
            in whole batches, the steps of the same recipe without generated
            data, so that runs at any real:generated ratio compare at equal
            steps (Gowal et al. count steps, not epochs). It follows
            `data.n_train` and `data.batch_size` overrides.
        optimizer: "sgd" (with momentum) or "adam".
        nesterov: Nesterov momentum for "sgd" (Gowal et al.'s code uses it).
        learning_rate: the peak learning rate.
        lr_schedule: "constant"; "cyclic" (linear 0 -> peak at `lr_peak` of
            the run -> 0, Wong et al.); "piecewise" (x0.1 at 50% and 75%, Madry
            et al./Rice et al.); "cosine".
        lr_peak: with "cyclic", where the peak lies, as a share of the run
            (0.4 as Wong et al.'s paper describes; their CIFAR-10 code's
            triangular `CyclicLR` peaks at 0.5).
        lr_warmup_epochs: with "cosine", a linear warm-up from 0 to the peak
            over this many epochs, then the cosine decay over the rest of the
            run (Gowal et al.'s code: 10 of 400 epochs).
        momentum, weight_decay: SGD momentum; decoupled weight decay (Keras
            shrinks each weight by lr * weight_decay a step; a coupled L2
            term c under SGD momentum m shrinks by about lr * c / (1 - m), so
            5e-3 here stands for a PyTorch/JAX 5e-4 at momentum 0.9).
        decay_batch_norm: False leaves BatchNorm's gamma and beta out of the
            weight decay, as Gowal et al.'s code, whose L2 term skips
            BatchNorm (`tfrobust.training.optimizers`).
        clean_ratio: share of each batch trained clean; 0 = adversarial only.
        trades_beta: TRADES' beta.
        trades_init: the start of TRADES' attack: "gaussian" (TRADES'
            0.001 N(0, 1)) or "uniform" in the eps-ball (Gowal et al.'s code).
        trades_bn: TRADES' training passes and BatchNorm: "separate" (clean
            and adversarial images in two passes, each normalised with its
            own batch statistics as in Zhang et al.'s code, both updating the
            moving ones; see `AdversarialModel`),
            "adversarial" (the same, but only the adversarial pass updates
            the moving statistics: Gowal et al.'s code) or "joint" (one pass
            over both). A TRADES recipe read from JSON without this key
            (every recipe.json written before the option existed, but also a
            hand-written one) reads as "joint", as those runs trained.
        eps_warmup_epochs: ramp eps linearly from 0 over this many epochs.
        overfit_guard: Wong et al.'s guard against catastrophic overfitting
            (arXiv 2001.03994, Section 5.3): after every epoch, PGD with this
            many steps (step eps/4, one restart, BatchNorm's moving
            statistics) attacks the epoch's first training batch; when its
            robust accuracy falls by more than `overfit_guard_drop` from the
            previous epoch's, training stops and the run keeps the weights of
            the previous epoch. 0: off.
        overfit_guard_drop: the fall in robust accuracy (a share, 0.2 as Wong
            et al.) that stops training.
        val_n: test examples evaluated after each epoch (0: none).
        val_steps: PGD steps of the per-epoch robust validation.
        checkpoint_every: also checkpoint every this many steps inside an
            epoch (0: at epoch ends only). A run killed mid-epoch then resumes
            at the last such step, with the same data and seeds.
        deterministic: turn on TF op determinism
            (`tf.config.experimental.enable_op_determinism`) for the process.
        precision: "float32", "mixed_bfloat16" or "mixed_float16" (Keras
            mixed precision: variables float32, layers compute in 16 bits;
            float16 adds dynamic loss scaling). Attacks and losses cast the
            logits to float32, so attack losses, step rules and projections
            stay float32; only the network's forward/backward pass is 16-bit.
        generated_label_smoothing: label smoothing on the generated part of
            each batch only (Gowal et al. use 0.1); 0 disables it.
        ema_decay: exponential moving average of the weights (Polyak
            averaging, as Gowal et al., arXiv 2110.09468, with 0.995); 0 is
            off. The averaged weights are the ones validated each epoch,
            saved as the run's `model.keras`, evaluated and exported; the
            checkpoints keep the raw weights and the average (optimizer
            state), so a resumed run continues both. BatchNorm's moving
            statistics are not averaged (Keras averages trainable variables),
            as in Gowal et al.'s code, which evaluates the averaged weights
            with the training model's BN statistics.
        ema_warmup: let the EMA decay warm up as `min(ema_decay, (1 + t) /
            (10 + t))` at step t, as `tf.train.ExponentialMovingAverage` and
            Gowal et al.'s code do (`tfrobust.training.optimizers`). Without it the
            average keeps ema_decay**t of the random initial weights after t
            steps, so early validations of the average are near chance.
    """

    method: str = "pgd"
    init_from: Optional[str] = None
    epochs: int = 10
    steps_per_epoch: Optional[int] = None
    epoch_length: str = "pass"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_peak: float = 0.4
    lr_warmup_epochs: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    decay_batch_norm: bool = True
    weight_decay: float = 0.0
    clean_ratio: float = 0.0
    trades_beta: float = 6.0
    trades_init: str = "gaussian"
    trades_bn: str = "separate"
    eps_warmup_epochs: float = 0.0
    overfit_guard: int = 0
    overfit_guard_drop: float = 0.2
    val_n: int = 1000
    val_steps: int = 10
    ema_decay: float = 0.0
    ema_warmup: bool = False
    generated_label_smoothing: float = 0.0
    precision: str = "float32"
    checkpoint_every: int = 0
    deterministic: bool = False

    def validate(self):
        _check_choice("train.method", self.method, METHODS)
        if self.method == "static" and not self.init_from:
            _fail("train.init_from", "a pretrained model path for method='static'", self.init_from)
        if not isinstance(self.epochs, int) or self.epochs < 1:
            _fail("train.epochs", "an int >= 1", self.epochs)
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int)
                                                 or isinstance(self.steps_per_epoch, bool)
                                                 or self.steps_per_epoch < 1):
            _fail("train.steps_per_epoch", "None or an int >= 1", self.steps_per_epoch)
        _check_choice("train.epoch_length", self.epoch_length, EPOCH_LENGTHS)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_positive("train.learning_rate", self.learning_rate)
        _check_choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_positive("train.lr_warmup_epochs", self.lr_warmup_epochs, allow_zero=True)
        if isinstance(self.lr_peak, bool) or not isinstance(self.lr_peak, (int, float)) or not 0 < self.lr_peak < 1:
            _fail("train.lr_peak", "a number in (0, 1)", self.lr_peak)
        if self.lr_peak != 0.4 and self.lr_schedule != "cyclic":
            _fail("train.lr_peak", "0.4 (the default) unless train.lr_schedule is 'cyclic'", self.lr_peak)
        if isinstance(self.overfit_guard, bool) or not isinstance(self.overfit_guard, int) or self.overfit_guard < 0:
            _fail("train.overfit_guard", "an int >= 0 (PGD steps; 0 is off)", self.overfit_guard)
        if self.overfit_guard and self.method in ("standard", "static"):
            _fail("train.overfit_guard", "0 for standard and static training (it guards adversarial training)",
                  self.overfit_guard)
        if isinstance(self.overfit_guard_drop, bool) or not isinstance(self.overfit_guard_drop, (int, float)) \
                or not 0 < self.overfit_guard_drop <= 1:
            _fail("train.overfit_guard_drop", "a number in (0, 1]", self.overfit_guard_drop)
        if self.lr_warmup_epochs and self.lr_schedule != "cosine":
            _fail("train.lr_warmup_epochs", "0 unless train.lr_schedule is 'cosine'", self.lr_warmup_epochs)
        if self.lr_warmup_epochs >= self.epochs:
            _fail("train.lr_warmup_epochs", f"fewer than train.epochs ({self.epochs})", self.lr_warmup_epochs)
        if not isinstance(self.decay_batch_norm, bool):
            _fail("train.decay_batch_norm", "true or false", self.decay_batch_norm)
        if not isinstance(self.nesterov, bool):
            _fail("train.nesterov", "true or false", self.nesterov)
        if self.nesterov and self.optimizer != "sgd":
            _fail("train.nesterov", "false unless train.optimizer is 'sgd'", self.nesterov)
        _check_positive("train.weight_decay", self.weight_decay, allow_zero=True)
        _check_choice("train.trades_init", self.trades_init, objectives.TRADES.INITS)
        if self.trades_init != "gaussian" and self.method != "trades":
            _fail("train.trades_init", "'gaussian' (the default) unless train.method is 'trades'", self.trades_init)
        _check_choice("train.trades_bn", self.trades_bn, objectives.TRADES.BN_MODES)
        if self.trades_bn != "separate" and self.method != "trades":
            _fail("train.trades_bn", "'separate' (the default) unless train.method is 'trades'", self.trades_bn)
        if not 0 <= self.clean_ratio < 1:
            _fail("train.clean_ratio", "in [0, 1)", self.clean_ratio)
        _check_positive("train.eps_warmup_epochs", self.eps_warmup_epochs, allow_zero=True)
        if not isinstance(self.val_n, int) or self.val_n < 0:
            _fail("train.val_n", "an int >= 0", self.val_n)
        if not isinstance(self.ema_decay, (int, float)) or not 0 <= self.ema_decay < 1:
            _fail("train.ema_decay", "a number in [0, 1)", self.ema_decay)
        if not isinstance(self.ema_warmup, bool):
            _fail("train.ema_warmup", "true or false", self.ema_warmup)
        if self.ema_warmup and not self.ema_decay:
            _fail("train.ema_warmup", "false when train.ema_decay is 0 (no average to warm up)", self.ema_warmup)
        _check_choice("train.precision", self.precision, ("float32", "mixed_bfloat16", "mixed_float16"))
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            _fail("train.checkpoint_every", "an int >= 0", self.checkpoint_every)
        if not isinstance(self.generated_label_smoothing, (int, float)) or not 0 <= self.generated_label_smoothing < 1:
            _fail("train.generated_label_smoothing", "a number in [0, 1)", self.generated_label_smoothing)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The final evaluation: the strongest the package has, by default.

    Attributes:
        attacks: attack names; each runs at every eps. Empty: clean accuracy
            only.
        eps: radii to evaluate; empty means the threat model's eps.
        steps, restarts, step_size: for the PGD attacks (None: 2.5 eps / steps).
        apgd_restarts: restarts of APGD and FAB (1, as in the standard
            AutoAttack; the ensemble's own runs do not restart).
        apgd_steps: iterations of APGD, FAB and of the autoattack ensemble's
            APGD and FAB runs (100, as Croce & Hein).
        queries: the Square attack's query budget (5000, as AutoAttack).
        n: the first n test examples.
        checks: the gradient-masking checks before numbers are reported:
            "full", "quick" (fewer points and steps) or "off".
        batch_size: examples per attack call.
        bn: "inference" (BatchNorm's moving averages, the usual) or
            "batch_stats": normalise with each batch's statistics, as Xie &
            Yuille's train/test-consistency experiment does
            (`evaluation.batch_stats`); outcomes then depend on batch_size.
    """

    attacks: Tuple[str, ...] = ("fgsm", "pgd", "pgd_margin")
    eps: Tuple[float, ...] = ()
    steps: int = 50
    restarts: int = 10
    step_size: Optional[float] = None
    apgd_steps: int = 100
    apgd_restarts: int = 1
    queries: int = 5000
    n: int = 1000
    batch_size: int = 500
    checks: str = "full"
    bn: str = "inference"

    def validate(self):
        if not isinstance(self.attacks, tuple):
            _fail("eval.attacks", "a list of attack names (empty for clean accuracy only)", self.attacks)
        for name in self.attacks:
            _check_choice("eval.attacks", name, EVAL_ATTACKS)
        for e in self.eps:
            _check_positive("eval.eps", e)
            if not math.isfinite(e):
                _fail("eval.eps", "a finite number", e)
        if not isinstance(self.steps, int) or self.steps < 1:
            _fail("eval.steps", "an int >= 1", self.steps)
        if not isinstance(self.restarts, int) or self.restarts < 1:
            _fail("eval.restarts", "an int >= 1", self.restarts)
        for key in ("apgd_steps", "apgd_restarts", "queries", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(f"eval.{key}", "an int >= 1", value)
        if not isinstance(self.n, int) or self.n < 1:
            _fail("eval.n", "an int >= 1", self.n)
        _check_choice("eval.checks", self.checks, ("full", "quick", "off"))
        _check_choice("eval.bn", self.bn, ("inference", "batch_stats"))


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "attack": AttackConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One experiment: data, model, threat model, training and evaluation.

    Validated on construction: a bad value raises `ValueError` naming the key.
    """

    name: str
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    attack: AttackConfig = AttackConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    description: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self):
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            _fail("name", "letters, digits, '_' or '-'", self.name)
        for section in _SECTIONS:
            getattr(self, section).validate()
        if self.attack.name == "stadv" and self.train.method != "static":
            _fail("attack.name", "a training attack other than stadv unless train.method='static'",
                  self.attack.name)
        if self.attack.norm == "linf":
            # Pixels are in [0, 1]: a larger Linf radius is a mistyped 8/255 or 0.3, and would report 0% robust.
            # Without eval.eps the evaluation runs at attack.eps, even when that is stAdv's flow bound in pixels.
            radii = [("eval.eps" if self.eval.eps else "attack.eps", e) for e in self.eval_eps]
            if self.attack.name != "stadv" and self.eval.eps:
                radii.append(("attack.eps", self.attack.eps))
            for key, e in radii:
                if e > 1:
                    _fail(key, "at most 1 under the Linf norm (pixels are in [0, 1]; write 8/255 for eight levels "
                          "of 255)", e)
        if self.model.activation is not None:
            # Only the WRNs take an activation; anything else would fail at model build, after recipe.json.
            if not self.model.name.startswith("wrn-"):
                _fail("model.activation", f"None for {self.model.name!r} (only the wrn-* models take one)",
                      self.model.activation)
            _check_choice("model.activation", self.model.activation, ("relu", "swish"))
        if self.model.batch_norm == "mixbn" or self.model.sync_bn:
            from tfrobust.models import takes_batch_norm

            # The same reason: the model builder would refuse the factory only after recipe.json and the data.
            if not takes_batch_norm(self.model.name):
                key, value = (("model.batch_norm", "mixbn") if self.model.batch_norm == "mixbn"
                              else ("model.sync_bn", True))
                _fail(key, f"left at its default for {self.model.name!r}, which has no batch_norm factory "
                      "(ResNets, PreActResNet-18 and WRNs have one)", value)
        return self

    @property
    def eval_eps(self):
        return tuple(self.eval.eps) or (self.attack.eps,)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        for section, section_cls in _SECTIONS.items():
            if section in d:
                d[section] = _section_from_dict(section_cls, section, d[section])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            _fail("recipe keys", f"among {[f.name for f in dataclasses.fields(cls)]}", sorted(unknown))
        return cls(**d)

    def override(self, assignments):
        """Returns a copy with `{"train.epochs": "5", "eps": "8/255", ...}` applied.

        Keys are `section.field`, or a bare field name when only one section
        has it. Values are parsed as ints, floats, fractions ("8/255"),
        booleans, None or comma-separated tuples, following the field's type.

        Raises:
            ValueError: an unknown or ambiguous key, or a bad value.
        """
        d = self.to_dict()
        for key, raw in assignments.items():
            section, field = _resolve_key(key)
            target = d if section is None else d[section]
            target[field] = _parse_value(raw, target[field], key)
        return Recipe.from_dict(d)


def _section_from_dict(section_cls, section, d):
    names = {f.name for f in dataclasses.fields(section_cls)}
    if section == "train" and d.get("method") == "trades" and "trades_bn" not in d:
        # Written before trades_bn existed, when TRADES trained in one joint pass.
        d = dict(d, trades_bn="joint")
    unknown = set(d) - names
    if unknown:
        _fail(f"{section} keys", f"among {sorted(names)}", sorted(unknown))
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return section_cls(**d)


def _resolve_key(key):
    top = {"name", "description"}
    if "." in key:
        section, field = key.split(".", 1)
        if section in _SECTIONS and field in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
            return section, field
    elif key in top:
        return None, key
    else:
        owners = [s for s, c in _SECTIONS.items() if key in {f.name for f in dataclasses.fields(c)}]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ValueError(
                f"Recipe key {key!r} is ambiguous; write one of "
                f"{[f'{s}.{key}' for s in owners]}. Received: key={key!r}"
            )
    known = sorted(f"{s}.{f.name}" for s, c in _SECTIONS.items() for f in dataclasses.fields(c))
    raise ValueError(f"Unknown recipe key. Known keys: {', '.join(known)}. Received: key={key!r}")


def parse_number(text):
    """Parses "0.3", "8/255" or "10" into a float or int."""
    text = str(text).strip()
    if "/" in text:
        return float(fractions.Fraction(text))
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_value(raw, current, key):
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            _fail(key, "true or false", raw)
        return text.lower() in ("true", "1")
    if isinstance(current, (tuple, list)):
        items = [t for t in text.split(",") if t.strip()]
        if current and isinstance(current[0], str) or (not current and key.endswith("attacks")):
            return tuple(t.strip() for t in items)
        # "5:0.1,20:0.1" is a tuple of pairs (attack.step_schedule).
        try:
            return tuple(tuple(parse_number(p) for p in t.split(":")) if ":" in t else parse_number(t) for t in items)
        except (ValueError, ZeroDivisionError):
            _fail(key, "comma-separated numbers (or boundary:scale pairs)", raw)
    if isinstance(current, str):
        return text
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        if current is None:
            return text
        _fail(key, "a number", raw)


# The variants a recipe file offers unless it lists its own in `VARIANTS` (or derives from a base recipe).
DEFAULT_VARIANTS = ("full", "small")


def variant_name(name, variant):
    """A recipe's name for a variant: `name` for "full", `name_<variant>` otherwise."""
    return name if variant == "full" else f"{name}_{variant}"


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def recipes_dir():
    """The folder of the recipes that ship with tfrobust, or None.

    An installed wheel has them as `tfrobust/recipes/`; a checkout (and an
    editable install of it) has them in its top-level `recipes/` folder.
    """
    for directory in (os.path.join(PACKAGE_DIR, "recipes"), os.path.join(os.path.dirname(PACKAGE_DIR), "recipes")):
        if os.path.isdir(directory):
            return directory
    return None


def available_recipes():
    """{name: first line of its docstring} of the shipped recipes, sorted by name.

    Read from the files' source, without running them.
    """
    directory = recipes_dir()
    out = {}
    for file in sorted(os.listdir(directory) if directory else ()):
        if not file.endswith(".py") or file.startswith(("_", "common")):
            continue
        with open(os.path.join(directory, file)) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        out[file[:-3]] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def find_recipe(recipe):
    """The file of a recipe given by its path or by the name of a shipped recipe.

    Args:
        recipe: a path to a recipe file; or a shipped recipe's name, e.g.
            "wong2020_cifar10_linf_fgsm_rs_preactresnet18" (".py" may be
            added). A path "recipes/NAME.py" that does not exist from the
            current directory (the README's commands, typed outside a
            checkout) is taken as the name NAME.

    Returns:
        The path of an existing file.

    Raises:
        FileNotFoundError: if it is neither an existing file nor a shipped
            recipe's name.
    """
    path = os.fspath(recipe)
    if os.path.isfile(path):
        return path
    directory = recipes_dir()
    base = os.path.basename(path)
    bare = path == base or os.path.dirname(os.path.normpath(path)) == "recipes"
    if directory and bare:
        candidate = os.path.join(directory, (base[:-3] if base.endswith(".py") else base) + ".py")
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"No recipe file or shipped recipe named {path!r}: `tfrobust recipes` lists the "
                            "shipped ones.")


def load_recipe(path, variant="full"):
    """Loads a recipe file and calls its `get_config(variant)`.

    Args:
        path: a `.py` file defining `get_config(variant="full")`, the name of
            a shipped recipe (see `find_recipe`), or a `recipe.json` written
            by a training run.
        variant: "full" (the paper's settings), "small" (CPU minutes), or
            another variant that the file lists in its `VARIANTS` tuple.

    Raises:
        ValueError: for a variant the file does not offer (a recipe made with
            `derive_recipe` offers its base's). Without this, a misspelt
            "small" would silently train the full paper setting.
        FileNotFoundError: for a path that is neither a file nor a shipped
            recipe's name.
    """
    if str(path).endswith(".json"):
        if variant != "full":
            raise ValueError(f"{path} is one recipe, with no variants. Received: variant={variant!r}")
        try:
            with open(path) as f:
                return Recipe.from_dict(json.load(f))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a valid recipe JSON file ({e}).") from None
    path = find_recipe(path)
    spec = importlib.util.spec_from_file_location(f"tfrobust_recipe_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"{path}, line {e.lineno}: {e.msg} (the recipe file is not valid Python).") from None
    except Exception as e:  # a recipe is user code: whatever it raises is the user's to fix, named by file
        raise ValueError(f"{path} raised {type(e).__name__} when loaded: {e}") from e
    if not hasattr(module, "get_config"):
        raise ValueError(f"A recipe file must define get_config(variant). Received: path={path!r}")
    # A derived recipe passes the variant to its base, which checks it.
    derived = getattr(module, "derive_recipe", None) is derive_recipe and not hasattr(module, "VARIANTS")
    variants = tuple(getattr(module, "VARIANTS", DEFAULT_VARIANTS))
    if not derived and variant not in variants:
        raise ValueError(f"{os.path.basename(str(path))} has the variants {', '.join(variants)}. "
                         f"Received: variant={variant!r}")
    try:
        recipe = module.get_config(variant)
    except (ValueError, TypeError):  # the config's own validation errors name their key already
        raise
    except Exception as e:  # user code
        raise ValueError(f"{path}: get_config({variant!r}) raised {type(e).__name__}: {e}") from e
    if not isinstance(recipe, Recipe):
        raise TypeError(f"get_config must return a tfrobust.config.Recipe. Received: {type(recipe).__name__}")
    return recipe


def derive_recipe(recipe_file, base_file, variant, changes, doc):
    """A recipe that is a sibling recipe file's, with `changes` applied.

    For recipes that share one protocol and differ in a few keys (one table
    row each): the comparison then cannot drift. The derived recipe is named
    after its own file (plus "_<variant>" for a variant other than "full") and described by
    the first line of its docstring.

    Args:
        recipe_file: the derived recipe's `__file__`.
        base_file: the base recipe's file name, in the same directory.
        variant: the variant, passed to the base ("full", "small", ...).
        changes: `Recipe.override` assignments, e.g. `{"train.clean_ratio": 0.0}`.
        doc: the derived recipe's `__doc__`.

    Returns:
        The validated `Recipe`.
    """
    directory = os.path.dirname(os.path.abspath(recipe_file))
    base = load_recipe(os.path.join(directory, base_file), variant)
    name = variant_name(os.path.splitext(os.path.basename(recipe_file))[0], variant)
    return base.override(dict(changes, name=name, description=doc.strip().splitlines()[0]))
