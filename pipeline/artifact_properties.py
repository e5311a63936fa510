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
