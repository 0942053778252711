"""Configs are validated once, at the edge, with one line naming file and key."""
from __future__ import annotations

import pytest

from keras_lesions.config import ConfigError, bundled_configs, load_config, save_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    names = bundled_configs()
    assert {"frid-adar-2018.yaml", "frid-adar-2018-classic.yaml",
            "frid-adar-2018-quick.yaml", "frid-adar-2018-gan-quick.yaml"} <= set(names)
    paper = load_config("configs/frid-adar-2018.yaml")
    assert paper.kind == "gan-curve" and load_config("frid-adar-2018-classic.yaml").kind == \
        "classic-curve"
    # §3.2: Adam 2e-4, β1 0.5, batch 64, 70 epochs, z ∈ U[−1, 1]^100; §4.2.2 group sizes
    assert (paper.gan.learning_rate, paper.gan.beta_1, paper.gan.batch_size,
            paper.gan.epochs, paper.gan.latent_dim) == (0.0002, 0.5, 64, 70, 100)
    assert paper.synth.per_class_sizes == [100, 500, 1000, 2000, 3000, 4000]
    # the paper's numbers (Frid-Adar §2.2, §4.1, §4.2.1)
    assert paper.train.learning_rate == 0.001 and paper.train.batch_size == 64
    assert paper.train.epochs == 150 and paper.classifier.dropout == 0.5
    assert paper.augment.group_sizes == [0, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000]
    assert (paper.augment.n_rot, paper.augment.n_flip, paper.augment.n_trans,
            paper.augment.n_scale) == (30, 3, 7, 5)


def test_overrides_and_round_trip(tmp_path):
    config = load_config("configs/frid-adar-2018-quick.yaml",
                         {"train.epochs": 2, "output_dir": str(tmp_path)})
    assert config.train.epochs == 2 and config.output_dir == str(tmp_path)
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


@pytest.mark.parametrize("text, fragment", [
    ("train:\n  epoch: 3\n", "unknown key 'train.epoch'"),
    ("trian:\n  epochs: 3\n", "unknown key 'trian'"),
    ("train:\n  epochs: three\n", "train.epochs must be an integer"),
    ("train:\n  epochs: 2.5\n", "train.epochs must be an integer"),
    ("train:\n  learning_rate: fast\n", "train.learning_rate must be a number"),
    ("augment:\n  group_sizes: 500\n", "augment.group_sizes must be a list"),
    ("augment:\n  group_sizes: [0, 1000, 500]\n", "increasing"),
    ("classifier:\n  dropout: 1.5\n", "dropout must lie in [0, 1)"),
    ("train: 5\n", "train must be a mapping"),
    ("- a\n- b\n", "must be a mapping"),
    ("train: {epochs: [\n", "not valid YAML"),
    ("kind: gan-magic\n", "kind must be one of"),
    ("data:\n  dataset: phantoms:lidc\n", "unknown phantom preset"),
    ("evaluate:\n  positive_class: 3\n", "evaluate.positive_class must be a string"),
    ("evaluate:\n  target_sensitivity: 0\n", "target_sensitivity must lie in (0, 1]"),
])
def test_bad_configs_give_one_line(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_optional_settings_take_null_or_their_type(tmp_path):
    assert load_config(write(tmp_path, "evaluate:\n  positive_class: null\n")
                       ).evaluate.positive_class is None
    assert load_config(write(tmp_path, "evaluate:\n  positive_class: malignant\n")
                       ).evaluate.positive_class == "malignant"


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_configs_are_found_where_a_regular_install_puts_them(tmp_path, monkeypatch):
    """pip install . puts configs/ at keras_lesions/configs (a folder without
    __init__.py); the default --config of train-cnn, train-gan, augment and
    demo must be found there from any directory."""
    import keras_lesions.config as config_module

    package = tmp_path / "site-packages" / "keras_lesions"
    (package / "configs").mkdir(parents=True)
    (package / "configs" / "frid-adar-2018-quick.yaml").write_text("name: installed\n")
    monkeypatch.setattr(config_module, "__file__", str(package / "config.py"))
    monkeypatch.chdir(tmp_path)
    assert config_module.bundled_configs() == ["frid-adar-2018-quick.yaml"]
    assert load_config("configs/frid-adar-2018-quick.yaml").name == "installed"
