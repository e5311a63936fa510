"""Names of the custom properties Conveyor's components set on their artifacts, for readers of ML
Metadata (metadata/, `conveyor models`, `conveyor lineage`) that must not import the components:
those import TFX, and TFX imports TensorFlow."""

# Set by SpanWindow (history="stores", pipeline/components/span_window.py) on the one Examples
# artifact of a window: its upstream spans ("1,3"), its feedback spans ("2"), and the validated
# artifacts' URIs (JSON).
WINDOW_SPANS_PROPERTY = "window_spans"
WINDOW_FEEDBACK_SPANS_PROPERTY = "window_feedback_spans"
WINDOW_SOURCES_PROPERTY = "window_sources"

# PreviousPushedModel's copy of the serving version (pipeline/components/pushed_baseline.py).
PUSHED_VERSION_PROPERTY = "pushed_version"
PUSHED_DESTINATION_PROPERTY = "pushed_destination"

# Pusher's PushedModel, and the push record (pipeline/components/push.py).
MODEL_ID_PROPERTY = "model_id"
STAGED_PATH_PROPERTY = "staged_path"

# InfraCheck's InfraBlessing (pipeline/components/infra_check.py).
BLESSED_KEY = "blessed"  # TFX Pusher's key
FAILURE_KEY = "failure"
CHECKED_KEY = "checked_examples"
FOLDED_KEY = "folded_call"

# The Tuner (pipeline/components/tuner.py): its node id, and where in its tuner_results the trials'
# TensorBoard logs are (one folder per trial, with its hyperparameters).
TUNER_ID = "Tuner"
TUNER_TENSORBOARD_DIR = "tensorboard"
# Its best_hyperparameters (pipeline/components/tuner.py): the chosen values (JSON, as the
# search space spells them), the objective, the best and the default's score on the search's own
# validation data, the trials run, the trial budget and what ended the search ("trials" or "time").
TUNED_VALUES_PROPERTY = "tuned_values"
OBJECTIVE_PROPERTY = "objective"
BEST_SCORE_PROPERTY = "best_score"
DEFAULT_SCORE_PROPERTY = "default_score"
TRIALS_PROPERTY = "trials"
MAX_TRIALS_PROPERTY = "max_trials"
ENDED_BY_PROPERTY = "ended_by"

# LatestTunedHyperparameters' copy of the newest search (history="stores",
# pipeline/components/tuned_hyperparameters.py): the URI of the best_hyperparameters it copies;
# and the key of the stores-form Tuner's custom_config naming the tuning index it records into.
TUNED_FROM_PROPERTY = "tuned_from"
INDEX_URI_KEY = "index_uri"

# The Trainer's Model (pipeline/components/trainer.py): every hyperparameter it trained with (JSON).
HYPERPARAMETERS_PROPERTY = "hyperparameters"
