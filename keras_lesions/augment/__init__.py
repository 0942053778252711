"""Classic augmentation of lesion ROIs (Frid-Adar 2018 §3.1, Ben-Cohen 2019 §3.2).

Draw parameters (``draw_offline_params``, ``draw_online_params``), then apply
them (``augment_lesion``; ``affine_crop_resize`` inside TensorFlow graphs).
``build_augmentation_groups`` renders the nested D_aug groups of §4.2.1 to one
HDF5 file per fold; ``online_augmented_dataset`` augments inside tf.data.
Importing this package imports TensorFlow.
"""
from keras_lesions.augment.classic import (
    FLIP_MODES,
    AffineParams,
    AugmentationError,
    LesionGeometry,
    affine_crop_resize,
    augment_lesion,
    draw_offline_params,
    draw_online_params,
    lesion_geometry,
    n_offline_augmentations,
    resolve_params,
    shift_limit,
    windowed_context,
)
from keras_lesions.augment.groups import (
    PAPER_GROUP_SIZES,
    GroupsBuildResult,
    build_augmentation_groups,
    read_augmentation_group,
    read_augmentation_sources,
)
from keras_lesions.augment.online import (
    OnlineCanvases,
    online_augmented_dataset,
    online_steps_per_epoch,
    prepare_online_canvases,
)

__all__ = [
    "FLIP_MODES",
    "PAPER_GROUP_SIZES",
    "AffineParams",
    "AugmentationError",
    "GroupsBuildResult",
    "LesionGeometry",
    "OnlineCanvases",
    "affine_crop_resize",
    "augment_lesion",
    "build_augmentation_groups",
    "draw_offline_params",
    "draw_online_params",
    "lesion_geometry",
    "n_offline_augmentations",
    "online_augmented_dataset",
    "online_steps_per_epoch",
    "prepare_online_canvases",
    "read_augmentation_group",
    "read_augmentation_sources",
    "resolve_params",
    "shift_limit",
    "windowed_context",
]
