"""DCGAN and ACGAN networks of Frid-Adar et al. 2018 §3.2–3.3.

DCGAN (§3.2, after Radford et al. 2016): "The generator network takes a
vector of 100 random numbers drawn from a uniform distribution as input and
outputs a liver lesion image of size 64×64×1 [...] a fully connected layer
reshaped to size 4×4×1024 and four fractionally-strided convolutional layers
[...] with a 5×5 kernel size. Batch-normalization is applied to each layer of
the network, except for the output layer [...] ReLU [...] except the output
layer which uses a tanh." The discriminator: "four convolution layers with a
kernel size of 5×5 and a fully connected layer. Strided convolutions [...]
Batch-normalization is applied to each layer of the network, except for the
input and output layers. Leaky ReLU [...] leak = 0.2 [...] Sigmoid".
"Weights were initialized to a zero-centered normal distribution with a
standard deviation of 0.02."

The paper leaves open whether layers followed by batch norm keep their
biases. We keep a bias on every layer (Keras' default; the bias before a
batch norm is redundant but harmless). Keras ``count_params()`` includes the
batch-norm moving mean and variance (4 numbers per feature: γ, β, mean,
variance). At paper size (width 1.0, latent_dim 100):

    Generator
      dense 100 × 16384 + 16384            =  1,654,784
      batch norm on 16384 features × 4     =     65,536
      deconv 5·5·1024 × 512 + 512          = 13,107,712
      batch norm 512 × 4                   =      2,048
      deconv 5·5·512 × 256 + 256           =  3,277,056
      batch norm 256 × 4                   =      1,024
      deconv 5·5·256 × 128 + 128           =    819,328
      batch norm 128 × 4                   =        512
      deconv 5·5·128 × 1 + 1               =      3,201
      total                                = 18,931,201

    Discriminator
      conv 5·5·1 × 64 + 64 (no batch norm) =      1,664
      conv 5·5·64 × 128 + 128              =    204,928
      batch norm 128 × 4                   =        512
      conv 5·5·128 × 256 + 256             =    819,456
      batch norm 256 × 4                   =      1,024
      conv 5·5·256 × 512 + 512             =  3,277,312
      batch norm 512 × 4                   =      2,048
      dense 4·4·512 × 1 + 1                =      8,193
      total                                =  4,315,137

Without the biases before batch norm the counts would be 18,913,921 and
4,314,241; we chose the Keras default.

ACGAN (§3.3, after Odena et al. 2017): the paper "followed the architecture
proposed in [11] with minor modifications". Our reading keeps the DCGAN
bodies so the two variants differ only in conditioning: the generator
multiplies z by a learned class embedding (as the Keras ACGAN example of
Odena's model does) and the discriminator gains an auxiliary softmax head on
the shared features. At paper size with 3 classes that adds 3 × 100 = 300
generator weights (18,931,501) and 8192 × 3 + 3 = 24,579 discriminator
weights (4,339,716).
"""
from __future__ import annotations

import keras
from keras import layers

IMAGE_SIZE = 64  # §3.2: 64×64×1 lesion ROIs
LATENT_DIM = 100  # §3.2: "a vector of 100 random numbers"
KERNEL_SIZE = 5  # §3.2: 5×5 kernels in G and D
LEAK = 0.2  # §3.2: leak = 0.2
# Our choice: PyTorch's default (momentum 0.1 there), as in the reference
# DCGAN code, rather than Keras' 0.99, so the moving statistics that sampling
# with training=False uses follow the short trainings of small data sets.
BN_MOMENTUM = 0.9

GENERATOR_FILTERS = (1024, 512, 256, 128)  # §3.2: 4×4×1024, then 3 hidden up-convolutions
DISCRIMINATOR_FILTERS = (64, 128, 256, 512)  # §3.2 / Radford et al.: doubling from 64


def _weights() -> keras.initializers.Initializer:
    # §3.2: "zero-centered normal distribution with a standard deviation of 0.02"
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _scaled(filters: int, width: float) -> int:
    return max(1, int(round(filters * width)))


def _generator_body(z, width: float):
    """z [B, latent] → image [B, 64, 64, 1] in [-1, 1] (the DCGAN generator)."""
    base = IMAGE_SIZE // 2 ** 4  # four stride-2 up-convolutions: 4 → 64
    channels = [_scaled(f, width) for f in GENERATOR_FILTERS]
    x = layers.Dense(base * base * channels[0], kernel_initializer=_weights(),
                     name="project")(z)
    # §3.2: batch norm on every layer but the output; here on the dense
    # layer's 4·4·1024 features, before the reshape.
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((base, base, channels[0]), name="reshape")(x)
    for i, filters in enumerate(channels[1:], start=1):
        x = layers.Conv2DTranspose(filters, KERNEL_SIZE, strides=2, padding="same",
                                   kernel_initializer=_weights(), name=f"deconv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"deconv{i}_bn")(x)
        x = layers.ReLU(name=f"deconv{i}_relu")(x)
    x = layers.Conv2DTranspose(1, KERNEL_SIZE, strides=2, padding="same",
                               kernel_initializer=_weights(), name="deconv4")(x)
    # §3.2: tanh on the output layer, no batch norm there.
    # (float32 even under a mixed-precision policy: images leave G in float32)
    return layers.Activation("tanh", dtype="float32", name="image")(x)


def _discriminator_body(images, width: float):
    """image [B, 64, 64, 1] → flattened features [B, 4·4·512·width]."""
    x = images
    for i, filters in enumerate(DISCRIMINATOR_FILTERS, start=1):
        x = layers.Conv2D(_scaled(filters, width), KERNEL_SIZE, strides=2, padding="same",
                          kernel_initializer=_weights(), name=f"conv{i}")(x)
        if i > 1:  # §3.2: batch norm on every layer but the input and output layers
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"conv{i}_bn")(x)
        x = layers.LeakyReLU(negative_slope=LEAK, name=f"conv{i}_lrelu")(x)
    return layers.Flatten(name="flatten")(x)


def _real_head(features):
    logit = layers.Dense(1, kernel_initializer=_weights(), name="real_logit")(features)
    # §3.2: "the Sigmoid function for the likelihood probability (0,1)"
    return layers.Activation("sigmoid", dtype="float32", name="real")(logit)


def build_dcgan_generator(latent_dim: int = LATENT_DIM, width: float = 1.0,
                          name: str = "dcgan_generator") -> keras.Model:
    """The DCGAN generator G (Frid-Adar et al. 2018 §3.2, Fig. 5).

    Args:
        latent_dim: length of z (100 in the paper).
        width: multiplies every filter count (and the 1024 of the projection);
            1.0 is the paper's network, e.g. 0.125 makes a small CPU model.
        name: model name.

    Returns:
        A functional model: z float32 [batch, latent_dim] in [-1, 1] →
        images float32 [batch, 64, 64, 1] in [-1, 1] (tanh). 18,931,201
        parameters at paper size.
    """
    z = keras.Input((latent_dim,), name="z")
    return keras.Model(z, _generator_body(z, width), name=name)


def build_dcgan_discriminator(width: float = 1.0,
                              name: str = "dcgan_discriminator") -> keras.Model:
    """The DCGAN discriminator D (Frid-Adar et al. 2018 §3.2).

    Args:
        width: multiplies the filter counts 64, 128, 256, 512.
        name: model name.

    Returns:
        A functional model: images float32 [batch, 64, 64, 1] in [-1, 1] →
        D(x), the probability that x is real, float32 [batch, 1] in (0, 1).
        4,315,137 parameters at paper size.
    """
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    return keras.Model(images, _real_head(_discriminator_body(images, width)), name=name)


def build_acgan_generator(num_classes: int, latent_dim: int = LATENT_DIM, width: float = 1.0,
                          name: str = "acgan_generator") -> keras.Model:
    """The ACGAN generator (Frid-Adar et al. 2018 §3.3, Odena et al. 2017).

    The class conditions G by scaling z elementwise with a learned embedding
    of the class (the Keras ACGAN example's choice), then the DCGAN body.

    Args:
        num_classes: number of lesion classes (3 in the paper).
        latent_dim: length of z.
        width: filter multiplier, as for :func:`build_dcgan_generator`.
        name: model name.

    Returns:
        A functional model called as ``generator([z, class_ids])`` with z
        float32 [batch, latent_dim] in [-1, 1] and class_ids int32 [batch] in
        [0, num_classes) → images float32 [batch, 64, 64, 1] in [-1, 1].
    """
    z = keras.Input((latent_dim,), name="z")
    class_ids = keras.Input((), dtype="int32", name="class_id")
    class_code = layers.Embedding(num_classes, latent_dim,
                                  embeddings_initializer="glorot_normal",
                                  name="class_embedding")(class_ids)
    conditioned = layers.Multiply(name="conditioned_z")([z, class_code])
    return keras.Model([z, class_ids], _generator_body(conditioned, width), name=name)


def build_acgan_discriminator(num_classes: int, width: float = 1.0,
                              name: str = "acgan_discriminator") -> keras.Model:
    """The ACGAN discriminator: DCGAN body, two heads (Frid-Adar §3.3, Odena et al.).

    Args:
        num_classes: size of the auxiliary classifier (3 in the paper).
        width: filter multiplier, as for :func:`build_dcgan_discriminator`.
        name: model name.

    Returns:
        A functional model: images float32 [batch, 64, 64, 1] in [-1, 1] → a
        dict ``{"real": [batch, 1] probability of real in (0, 1), "class":
        [batch, num_classes] class probabilities (softmax)}``.
    """
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    features = _discriminator_body(images, width)
    # §3.3: "an auxiliary decoder network that outputs the class label"
    class_probs = layers.Dense(num_classes, activation="softmax", kernel_initializer=_weights(),
                               dtype="float32", name="class")(features)
    return keras.Model(images, {"real": _real_head(features), "class": class_probs}, name=name)
