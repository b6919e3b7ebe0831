"""AutoAttack: APGD-CE, APGD-T, FAB-T and Square (and the "plus" and "rand" versions), as a cascade."""

import dataclasses

import tensorflow as tf

from tfrobust.attacks import base, projections
from tfrobust.attacks.apgd import APGD

_VERSIONS = ("standard", "plus", "rand")
# The reference's L1 standard version runs APGD-T on 5 targets (FAB-T on 9).
_L1_APGD_TARGETS = 5


@dataclasses.dataclass(frozen=True)
class AutoAttack(base.AttackMixin):
    """A parameter-free ensemble run as a cascade on the points still robust.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", arXiv 2003.01690. The
    versions and their parameters are those of the reference code
    (`autoattack/autoattack.py`, `set_version`), under Linf, L2 and L1:

    - "standard": APGD-CE (1 restart), APGD-T (9 target classes, 1 restart
      each), FAB-T (9 target classes, 1 restart each; Croce & Hein, arXiv
      1907.02044) and Square (5000 queries, p_init 0.8, 1 restart, the
      schedule of p not rescaled; Andriushchenko et al., arXiv 1912.00049).
      APGD and FAB run 100 iterations. Under L1 (Croce & Hein, "Mind the
      box", arXiv 2103.01208): l1-APGD-CE with 5 restarts and l1-APGD-T
      with at most 5 targets, both over the radii 3 eps, 2 eps, eps
      (`APGD(large_eps=True)`), then FAB-T and Square under L1.
    - "plus": APGD-CE and APGD-DLR (5 restarts each), FAB (untargeted, 5
      restarts), Square (5000 queries), APGD-T and FAB-T (9 targets, 1
      restart each), in that order (under L1 without `large_eps`; the
      reference warns that it has not checked "plus" and "rand" there).
    - "rand", for models with randomness in the forward pass: APGD-CE and
      APGD-DLR, 1 restart each, each averaging gradients over 20 passes
      (expectation over transformation).

    FAB is a minimum-norm attack: a point counts as broken by it only if the
    perturbation it found lies within eps, as in the reference.

    Each attack runs only on the points that every earlier attack left
    correctly classified, so the result is the per-example worst case over
    the attacks at the cost of roughly one attack on robust points. Because
    every tfrobust attack is a per-element function of its seed, the cascade
    equals the per-example worst case of the attacks run separately.

    The components compile under XLA; the cascade gathers a varying number of
    points between them, so run the ensemble itself without `jit_compile`.

    Args:
        eps: float > 0.
        norm: "linf", "l2" or "l1".
        version: "standard", "plus" or "rand".
        steps: APGD and FAB iterations (100 in the paper).
        target_classes: APGD-T and FAB-T targets (9 in the paper).
        queries: Square's query budget (5000 in the paper).
        bn: "inference" or "batch_stats"; never updates BatchNorm.
        name: for reports.

    Call arguments:
        model: a classifier that returns logits.
        x: float32 `[B, H, W, C]` in [0, 1].
        y: int `[B]`, true labels.
        seeds: int32 `[B, 2]` per-element seeds, or None.

    Returns:
        float32 `[B, H, W, C]`: for each point, the adversarial example of
        the first component that broke it, or `x`.

    Example:
    >>> attack = AutoAttack(eps=8 / 255, version="standard")
    >>> x_adv, still_robust = attack.run(model, x, y, seeds)
    """

    eps: float
    norm: str = "linf"
    version: str = "standard"
    steps: int = 100
    target_classes: int = 9
    queries: int = 5000
    bn: str = "inference"
    name: str = "autoattack"

    targeted = False

    def __post_init__(self):
        base.check_eps(self)
        if self.norm not in projections.NORMS:
            raise ValueError(f"norm must be one of {projections.NORMS}. Received: norm={self.norm!r}")
        if self.version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}. Received: version={self.version!r}")
        self.components  # validates the components' parameters now

    @property
    def components(self):
        """The attacks of the cascade, in order."""
        from tfrobust.attacks.fab import FAB
        from tfrobust.attacks.square import Square

        common = dict(eps=self.eps, norm=self.norm, steps=self.steps, bn=self.bn)
        if self.version == "rand":
            return (APGD(loss="ce", eot=20, **common), APGD(loss="dlr", eot=20, **common))
        apgd_t = APGD(loss="dlr_targeted", target_classes=self.target_classes, restarts=1, **common)
        fab_t = FAB(target_classes=self.target_classes, restarts=1, **common)
        # AutoAttack runs Square with the milestones of p for 10,000 queries
        # (resc_schedule=False), whatever the budget.
        square = Square(eps=self.eps, norm=self.norm, queries=self.queries, p_init=0.8, restarts=1,
                        rescale_schedule=False, bn=self.bn)
        if self.version == "standard" and self.norm == "l1":
            return (APGD(loss="ce", restarts=5, large_eps=True, **common),
                    APGD(loss="dlr_targeted", target_classes=min(self.target_classes, _L1_APGD_TARGETS), restarts=1,
                         large_eps=True, **common),
                    fab_t, square)
        if self.version == "standard":
            return (APGD(loss="ce", restarts=1, **common), apgd_t, fab_t, square)
        return (APGD(loss="ce", restarts=5, **common), APGD(loss="dlr", restarts=5, **common),
                FAB(restarts=5, **common), square, apgd_t, fab_t)

    def get_config(self):
        config = super().get_config()
        config["components"] = [a.get_config() for a in self.components]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("components", None)
        return cls(**config)

    def run(self, model, x, y, seeds=None, robust=None, call=None):
        """Runs the cascade and says which attack broke which point.

        Run eagerly with a compiling `call`, each component is traced only
        when some point reaches it (inside a `tf.function`, `tf.cond` traces
        every component). Run eagerly, a component with several runs (APGD-T
        and FAB-T's target classes, restarts) also makes them one at a time
        (`base.Run`), each on the points that every earlier run left robust,
        as the reference does; each point's outcome is the same either way,
        since every run is a per-element function of the point's seed.

        Args:
            model, x, y, seeds: as for any attack.
            robust: optional bool `[B]`, the points to attack (default: the
                points the model classifies correctly).
            call: optional `(attack, x, y, seeds) -> x_adv`, how a component
                (or one of its runs) is run on the points that reach it
                (default: `attack(model, x, y, seeds)`).

        Returns:
            `(x_adv, still_robust)`: the adversarial examples, and a list with
            one bool `[B]` per component: the points still correctly
            classified after that component and all before it.
        """
        x, y, seeds = base.prepare(x, y, seeds)
        y64 = tf.cast(y, tf.int64)

        def correct(images):
            return tf.equal(tf.argmax(model(images, training=False), -1, output_type=tf.int64), y64)

        call = call or (lambda attack, *args: attack(model, *args))
        robust = correct(x) if robust is None else tf.convert_to_tensor(robust, tf.bool)
        # Run eagerly, each component's runs (targets, restarts) go one by one, each on the points that every
        # earlier run left robust (the reference's cost); traced, a component stays whole, to trace it once.
        split = tf.executing_eagerly()
        num_classes = None
        if split:
            num_classes = base.output_classes(model) or int(model(x[:1], training=False).shape[-1])
        x_adv = x
        after = []
        for component in self.components:
            for attack in base.runs_of(component, num_classes) if split else (component,):
                x_adv, robust = self._attack_robust(model, call, attack, x, y, y64, seeds, x_adv, robust)
            after.append(robust)
        return tf.stop_gradient(x_adv), after

    @staticmethod
    def _attack_robust(model, call, attack, x, y, y64, seeds, x_adv, robust):
        """Runs `attack` on the points still `robust`; returns the updated `(x_adv, robust)`."""
        idx = tf.where(robust)

        def attack_subset():
            adv = call(attack, tf.gather_nd(x, idx), tf.gather_nd(y, idx), tf.gather_nd(seeds, idx))
            still = tf.equal(tf.argmax(model(adv, training=False), -1, output_type=tf.int64), tf.gather_nd(y64, idx))
            return adv, still

        def nothing_left():
            return tf.zeros(tf.concat([[0], tf.shape(x)[1:]], 0), x.dtype), tf.zeros([0], tf.bool)

        adv, still = tf.cond(tf.size(idx) > 0, attack_subset, nothing_left)
        return tf.tensor_scatter_nd_update(x_adv, idx, adv), tf.tensor_scatter_nd_update(robust, idx, still)

    def __call__(self, model, x, y, seeds=None):
        return self.run(model, x, y, seeds)[0]


def names_of(attack):
    """The component names of an ensemble, or None for a single attack."""
    if isinstance(attack, AutoAttack):
        return [a.name for a in attack.components]
    return None


__all__ = ["AutoAttack", "names_of"]
