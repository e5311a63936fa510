# Conveyor's pipeline image for Kubeflow Pipelines v2 / Vertex AI (kubeflow_runner.py --image).
#
# The official TFX 1.21 image (the one KubeflowV2DagRunner uses by default), with exactly the
# packages of requirements.lock and Conveyor installed. Build from the checkout root, one tag per
# commit (the KFP cache key includes the image):
#   docker build -t REGISTRY/conveyor:$(git rev-parse --short HEAD) .
# tests/test_dockerfile.py keeps this file consistent with requirements.lock and the runner.
FROM gcr.io/tfx-oss-public/tfx:1.21.0

# The lock is resolved for Python 3.11 (setup.py python_requires): stop here on any other.
RUN python -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 'requirements.lock needs Python 3.11, this image has ' + sys.version)"

WORKDIR /conveyor
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir --no-deps -r requirements.lock

COPY setup.py pyproject.toml local_runner.py kubeflow_runner.py ./
COPY speedups/ speedups/
COPY models/ models/
COPY data/ data/
COPY schema/ schema/
COPY pipeline/ pipeline/
COPY metadata/ metadata/
COPY serving/ serving/
COPY monitoring/ monitoring/
COPY ct/ ct/
COPY conveyor/ conveyor/
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
 && cd / && python -c "import pipeline.pipeline, models.model, data.spans_io, conveyor.cli"
