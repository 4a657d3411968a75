"""Train one binary (one-vs-all) model for one condition."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from gicls.config import AugmentConfig, PreprocessConfig, TrainConfig
from gicls.logs import get_logger
from gicls.models.architectures import build_model
from gicls.models.transform_record import NO_TRANSFORMS

log = get_logger(__name__)

# ReduceLROnPlateau: halve the rate, but never below this.
LR_FACTOR = 0.5
MIN_LEARNING_RATE = 1e-6
# lr_schedule = "cosine": decay from learning_rate to this fraction of it over the run.
COSINE_FINAL_FRACTION = 0.01
# A binary model whose training loss sits at ln 2 scores 0.5 for everything: it has collapsed
# to a constant output (seen on real frames under mixed_bfloat16, in 2 of 4 seed_cnn fits, and
# in float32: seed_cnn at 160 px on the Capsule Vision Lymphangiectasia frames, from epoch 2).
COLLAPSED_LOSS = math.log(2)
COLLAPSE_TOLERANCE = 1e-3
# A fit collapsed for this many epochs in a row that never reached a validation loss below
# ln 2 has learned nothing and will not (its units are dead): it is stopped, to be started
# again from new weights. One that learned before it collapsed keeps its best epoch instead.
NEVER_LEARNED_EPOCHS = 2
# How often such a fit is started again from new weights (fit_into), and the seed offset of a
# restart: conditions' first fits take seeds seed + 0..classes-1, so restarts never reuse one.
MAX_RESTARTS = 2
RESTART_SEED_STRIDE = 1000


@dataclass(frozen=True)
class FitResult:
    class_name: str
    history: dict[str, list[float]]
    epochs_trained: int
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    seconds: float  # every attempt's, restarts included
    never_learned: bool = False  # stopped by NeverLearned: the model scores everything 0.5
    restarts: int = 0  # fits started again from new weights because one never learned


def collapsed(loss: float) -> bool:
    """Whether a training loss says the model scores every image 0.5."""
    return abs(loss - COLLAPSED_LOSS) < COLLAPSE_TOLERANCE


class NeverLearned(keras.callbacks.Callback):
    """Stops the fit once it has been collapsed for ``NEVER_LEARNED_EPOCHS`` epochs in a row
    and no epoch's validation loss went below ln 2: going on would only spend the epochs that
    early stopping's patience allows on a model that scores everything 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False
        self._collapsed_epochs = 0
        self._learned = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        val_loss = float(logs.get("val_loss", math.nan))
        self._learned |= val_loss < COLLAPSED_LOSS - COLLAPSE_TOLERANCE
        is_collapsed = collapsed(float(logs.get("loss", math.nan)))
        self._collapsed_epochs = self._collapsed_epochs + 1 if is_collapsed else 0
        if self._collapsed_epochs >= NEVER_LEARNED_EPOCHS and not self._learned:
            self.stopped = True
            self.model.stop_training = True


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch, and of the validation pass inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.validation_seconds: list[float] = []
        self._epoch_started = 0.0
        self._validation_started = 0.0
        self._validation = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()
        self._validation = 0.0

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._validation_started = time.perf_counter()

    def on_test_end(self, logs: dict | None = None) -> None:
        self._validation += time.perf_counter() - self._validation_started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_started)
        self.validation_seconds.append(self._validation)


# Receives the key-values of one finished epoch (the fields of the ``epoch_done`` event).
EpochReport = Callable[[dict[str, Any]], None]


def log_epoch(fields: dict[str, Any]) -> None:
    """The local way an epoch is reported: an ``epoch_done`` line in this process's log."""
    log.info("epoch_done", **fields)


class EpochProgress(EpochTimer):
    """One report per epoch naming the condition, so long runs show where they are.

    ``report`` decides where it goes: this process's log, or (in a Ray task) the driver's.
    """

    def __init__(self, label: str, epochs: int, report: EpochReport = log_epoch) -> None:
        super().__init__()
        self.label = label
        self.epochs = epochs
        self.report = report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        logs = logs or {}
        fields = dict(
            condition=self.label,
            epoch=f"{epoch + 1}/{self.epochs}",
            loss=round(float(logs.get("loss", math.nan)), 4),
            accuracy=round(float(logs.get("accuracy", math.nan)), 4),
            val_loss=round(float(logs.get("val_loss", math.nan)), 4),
            val_accuracy=round(float(logs.get("val_accuracy", math.nan)), 4),
            seconds=round(self.epoch_seconds[-1], 2),
            validation_seconds=round(self.validation_seconds[-1], 2),
        )
        self.report(fields)
        if collapsed(float(logs.get("loss", math.nan))):
            log.warning(
                "constant_output",
                condition=self.label,
                epoch=f"{epoch + 1}/{self.epochs}",
                hint="the model scores every image 0.5; a fit that never learned is started "
                "again from new weights, one that did keeps its best epoch (with lr_schedule "
                "plateau); mixed_bfloat16 makes this more likely",
            )


def new_model(
    architecture: str,
    image_size: int,
    augment: AugmentConfig,
    precision: str,
    preprocess: PreprocessConfig = NO_TRANSFORMS,
) -> keras.Model:
    """Build an architecture under the requested compute precision."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return build_model(architecture, image_size, augment, preprocess)
    finally:
        keras.config.set_dtype_policy(previous)


def fit_condition(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset,
    train: TrainConfig,
    history_csv: Path,
    class_name: str,
    progress_label: str,
    report_epoch: EpochReport = log_epoch,
) -> FitResult:
    """Fit with early stopping (best weights restored) and learning-rate reduction on val_loss.

    With ``lr_schedule = "cosine"``: a fixed number of epochs under cosine decay instead.
    Either way a fit that never learned is stopped early (``never_learned``, see NeverLearned).
    """
    plateau = train.lr_schedule == "plateau"
    learning_rate = train.learning_rate
    if not plateau:
        steps = int(train_data.cardinality()) * train.epochs
        learning_rate = keras.optimizers.schedules.CosineDecay(
            train.learning_rate, decay_steps=max(1, steps), alpha=COSINE_FINAL_FRACTION
        )
    optimizer = (
        keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=train.weight_decay)
        if train.weight_decay > 0
        else keras.optimizers.Adam(learning_rate=learning_rate)
    )
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    history_csv.parent.mkdir(parents=True, exist_ok=True)
    # A cosine run has a fixed length and keeps its last weights: nothing is chosen on the
    # validation split, which then only measures.
    selection = (
        [
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=train.early_stopping_patience,
                restore_best_weights=True,
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=LR_FACTOR,
                patience=train.reduce_lr_patience,
                min_lr=MIN_LEARNING_RATE,
            ),
        ]
        if plateau
        else []
    )
    never_learned = NeverLearned()
    callbacks = [
        *selection,
        keras.callbacks.CSVLogger(str(history_csv)),
        EpochProgress(progress_label, train.epochs, report_epoch),
        never_learned,
    ]
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=train.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline already reshuffles every epoch
        verbose=0,
    ).history
    val_losses = history["val_loss"]
    best = (
        min(range(len(val_losses)), key=val_losses.__getitem__)
        if plateau
        else len(val_losses) - 1  # the weights kept are the last epoch's
    )
    return FitResult(
        class_name=class_name,
        history={key: [float(v) for v in values] for key, values in history.items()},
        epochs_trained=len(val_losses),
        best_epoch=best + 1,
        best_val_loss=float(val_losses[best]),
        best_val_accuracy=float(history["val_accuracy"][best]),
        seconds=time.perf_counter() - started,
        never_learned=never_learned.stopped,
    )
