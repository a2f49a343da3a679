# The image of the Vertex AI (Kubeflow V2) pipeline: every component runs in it, and it is
# also a Beam SDK worker image (Dataflow --sdk_container_image, portable Flink/Spark DOCKER
# environments). Build it from the repository root (docs/kubeflow.md):
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/woonkly-recommender:TAG .
#
# TFX 1.16 requires Python 3.10. Bookworm is the Debian the lock file was verified on.
ARG PYTHON_IMAGE=python:3.10-slim-bookworm
# Must equal apache-beam in requirements.lock: the worker boot loader of the same release.
ARG BEAM_VERSION=2.59.0

FROM apache/beam_python3.10_sdk:${BEAM_VERSION} AS beam

FROM ${PYTHON_IMAGE}

# The uv release the Makefile pins.
ARG UV_VERSION=0.13.9

# TF_USE_LEGACY_KERAS: TFRS needs Keras 2, in every process (executors, Beam workers).
# RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: Beam workers use the packages installed below
# instead of creating a fresh virtualenv at start-up.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONHASHSEED=0 \
    PYTHONUNBUFFERED=1 \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1

RUN python -m pip install "uv==${UV_VERSION}"

# Beam's worker boot loader (the entrypoint, below), from the SDK image of the same release.
COPY --from=beam /opt/apache/beam /opt/apache/beam

WORKDIR /pipeline

# The locked dependencies, into the image's Python (the one on PATH, which TFX's container
# command `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` and
# the Beam boot loader run). crcmod and pyfarmhash ship no wheels, so a compiler is installed
# for the sync and removed in the same layer.
COPY requirements.lock ./
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ \
 && uv pip sync --system requirements.lock \
 && apt-get purge -y --auto-remove gcc g++ \
 && rm -rf /var/lib/apt/lists/*

# The project itself (its dependencies are all in the lock). User code is referenced by dotted
# path in the compiled pipeline (models.retrieval.run_fn, components.*...), so it must be
# importable; the source tree stays in /pipeline too, with the MovieLens sample that
# kubeflow_v2_runner.py uses when no --data-dir is given (/pipeline/data/movielens-100k).
COPY . ./
RUN uv pip install --system --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info \
 && cd / && python -c "import components.anomaly_gate.component, models.retrieval, models.ranking, transforms.preprocessing"

# Vertex AI runs TFX's own command in this image (it overrides the entrypoint). The Beam boot
# loader is the entrypoint Dataflow and portable DOCKER environments require of a worker image
# (the official TFX image does the same). Run a shell with `docker run --entrypoint bash`.
ENTRYPOINT ["/opt/apache/beam/boot"]
