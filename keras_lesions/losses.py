"""GAN losses as pure functions, named after the network they train.

Each takes the networks' outputs (probabilities, as the paper's D outputs a
sigmoid probability, §3.2) and returns a scalar float32 tensor, the mean over
the batch. Probabilities are clipped to [ε, 1 − ε] by Keras' cross-entropies,
so the losses stay finite when D saturates.

Frid-Adar et al. 2018 eq. (1), the two-player minimax game:

    min_G max_D  E_x[log D(x)] + E_z[log(1 − D(G(z)))]
"""
from __future__ import annotations

from keras import ops


def _bce(target: float, prob):
    """Mean binary cross-entropy of probabilities ``prob`` [B, 1] against a constant."""
    return ops.mean(ops.binary_crossentropy(ops.full_like(prob, target), prob))


def _class_ce(class_ids, class_probs):
    """Mean categorical cross-entropy of softmax outputs [B, K] for int ids [B]."""
    return ops.mean(ops.sparse_categorical_crossentropy(class_ids, class_probs))


def dcgan_discriminator_loss(real_prob, fake_prob):
    """D's side of eq. (1): maximise log D(x) + log(1 − D(G(z))), as a loss.

    Args:
        real_prob: D(x) on real images, float [batch, 1] in (0, 1).
        fake_prob: D(G(z)) on generated images, float [batch, 1] in (0, 1).

    Returns:
        Scalar: −mean log D(x) − mean log(1 − D(G(z))) (≥ 0; 2 ln 2 when D
        outputs 0.5 everywhere).
    """
    return _bce(1.0, real_prob) + _bce(0.0, fake_prob)


def dcgan_generator_loss(fake_prob):
    """G's loss, the non-saturating form of eq. (1).

    §3.2: "the generator is trained to maximize D(G(z))". Minimising
    −log D(G(z)) instead of log(1 − D(G(z))) has the same fixed point and
    strong gradients early, when D rejects G's samples (Goodfellow et al. 2014).

    Args:
        fake_prob: D(G(z)), float [batch, 1] in (0, 1).

    Returns:
        Scalar: −mean log D(G(z)).
    """
    return _bce(1.0, fake_prob)


def acgan_discriminator_loss(real_prob, fake_prob, real_class_probs, real_class_ids,
                             fake_class_probs, fake_class_ids):
    """The ACGAN discriminator's loss (Odena et al. 2017; Frid-Adar §3.3).

    D maximises L_S + L_C, where L_S is eq. (1) (source: real or fake) and
    L_C = E[log P(C = c | X_real)] + E[log P(C = c | X_fake)] is the
    log-likelihood of the correct class on real and generated images.

    Args:
        real_prob: D's real/fake head on real images, [batch, 1] in (0, 1).
        fake_prob: the same head on generated images, [batch, 1] in (0, 1).
        real_class_probs: D's class head on real images, [batch, classes], softmax.
        real_class_ids: the real images' classes, int [batch].
        fake_class_probs: D's class head on generated images, [batch, classes].
        fake_class_ids: the classes G was asked for, int [batch].

    Returns:
        Scalar: −(L_S + L_C) as batch means.
    """
    source = dcgan_discriminator_loss(real_prob, fake_prob)
    auxiliary = _class_ce(real_class_ids, real_class_probs) + \
        _class_ce(fake_class_ids, fake_class_probs)
    return source + auxiliary


def acgan_generator_loss(fake_prob, fake_class_probs, fake_class_ids):
    """The ACGAN generator's loss (Odena et al. 2017; Frid-Adar §3.3).

    G maximises L_C − L_S: its samples should be taken for real (the
    non-saturating −log D(G(z)), as :func:`dcgan_generator_loss`) and be
    classified as the class it was asked for.

    Args:
        fake_prob: D's real/fake head on generated images, [batch, 1] in (0, 1).
        fake_class_probs: D's class head on them, [batch, classes], softmax.
        fake_class_ids: the classes G was asked for, int [batch].

    Returns:
        Scalar: −mean log D(G(z, c)) − mean log P(C = c | G(z, c)).
    """
    return dcgan_generator_loss(fake_prob) + _class_ce(fake_class_ids, fake_class_probs)
