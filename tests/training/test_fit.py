import numpy as np
import tensorflow as tf

from gicls.config import TrainConfig
from gicls.models.architectures import CLASSIC_AUGMENT
from gicls.training.fit import fit_condition, new_model


def tiny_data(n: int = 16, size: int = 32) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    labels = (np.arange(n) % 2).astype(np.float32).reshape(-1, 1)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)


def test_cosine_schedule_runs_every_epoch_and_keeps_the_last_weights(tmp_path):
    train = TrainConfig(
        architecture="bn_cnn",
        image_size=32,
        epochs=3,
        early_stopping_patience=0,
        lr_schedule="cosine",
        weight_decay=0.01,
    )
    model = new_model("bn_cnn", 32, CLASSIC_AUGMENT, "float32")
    data = tiny_data()
    result = fit_condition(model, data, data, train, tmp_path / "h.csv", "x", "x")
    # No early stopping and no best-epoch restore: the run has its fixed length.
    assert result.epochs_trained == 3 and result.best_epoch == 3
    assert type(model.optimizer).__name__ == "AdamW"
    # Cosine decay ends near 1 % of the initial rate.
    assert float(model.optimizer.learning_rate) < 0.1 * train.learning_rate


def test_epoch_timer_separates_the_validation_pass():
    from gicls.training.fit import EpochTimer

    model = new_model("seed_cnn", 32, CLASSIC_AUGMENT, "float32")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    timer = EpochTimer()
    # Validation 4x the training set, so its pass is the larger share of every epoch.
    model.fit(tiny_data(8), validation_data=tiny_data(32), epochs=2, callbacks=[timer], verbose=0)
    assert len(timer.epoch_seconds) == len(timer.validation_seconds) == 2
    for epoch, validation in zip(timer.epoch_seconds, timer.validation_seconds, strict=True):
        assert 0 < validation < epoch
    model.fit(tiny_data(8), epochs=1, callbacks=[timer], verbose=0)
    assert timer.validation_seconds[-1] == 0.0  # no validation data, no validation pass


def test_a_model_stuck_at_chance_loss_is_reported(capsys):
    from gicls.logs import configure_logging
    from gicls.training.fit import EpochProgress

    configure_logging()

    progress = EpochProgress("Bleeding", epochs=3)
    progress.on_epoch_begin(0)
    progress.on_epoch_end(0, {"loss": 0.45, "accuracy": 0.8})
    assert "constant_output" not in capsys.readouterr().err
    progress.on_epoch_begin(1)
    progress.on_epoch_end(1, {"loss": 0.69315, "accuracy": 0.5})
    out = capsys.readouterr().err  # logs go to stderr
    assert "constant_output" in out and "Bleeding" in out and "2/3" in out


def constant_model(size: int = 32):
    """A real Keras model that cannot learn anything: its kernel is held at zero, so it scores
    every image sigmoid(bias), which balanced labels keep at 0.5 (training loss ln 2)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(
                1,
                activation="sigmoid",
                kernel_initializer="zeros",
                kernel_constraint=keras.constraints.MaxNorm(0.0),
            ),
        ]
    )


def test_a_fit_that_never_learns_is_stopped_after_two_collapsed_epochs(tmp_path):
    train = TrainConfig(image_size=32, epochs=10, early_stopping_patience=10)
    data = tiny_data()
    result = fit_condition(constant_model(), data, data, train, tmp_path / "h.csv", "x", "x")
    assert result.never_learned
    assert result.epochs_trained == 2

    learning = new_model("bn_cnn", 32, CLASSIC_AUGMENT, "float32")
    result = fit_condition(
        learning, data, data, train.model_copy(update={"epochs": 3}), tmp_path / "l.csv", "x", "x"
    )
    assert not result.never_learned and result.epochs_trained == 3


def test_a_fit_that_learned_before_it_collapsed_is_not_stopped():
    from gicls.training.fit import NeverLearned

    stopper = NeverLearned()
    stopper.set_model(constant_model())
    stopper.on_epoch_end(0, {"loss": 0.52, "val_loss": 0.61})  # it learned something
    for epoch in (1, 2, 3):
        stopper.on_epoch_end(epoch, {"loss": 0.6932, "val_loss": 0.6931})
    assert not stopper.stopped and not getattr(stopper.model, "stop_training", False)

    stopper = NeverLearned()
    stopper.set_model(constant_model())
    for epoch, loss in enumerate((0.6932, 0.7, 0.6931, 0.6932)):  # not two in a row until the end
        assert not stopper.stopped
        stopper.on_epoch_end(epoch, {"loss": loss, "val_loss": 0.6935})
    assert stopper.stopped and stopper.model.stop_training
