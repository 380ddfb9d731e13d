# The Treadle image: the operator (`treadle operator`), the task worker (`treadle worker`) and
# the kubectl plugin (`kubectl-treadle`). Build: docker build -t treadle:dev .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/treadle \
 && /opt/treadle/bin/pip install . \
 && /opt/treadle/bin/treadle version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="treadle" \
      org.opencontainers.image.description="DAG workflows and cron sync jobs on Kubernetes" \
      org.opencontainers.image.source="https://github.com/treadle-dev/treadle"
COPY --from=build /opt/treadle /opt/treadle
ENV PATH=/opt/treadle/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Non-root, as the restricted Pod Security profile asks (the chart sets the same user).
USER 65532:65532
ENTRYPOINT ["treadle"]
CMD ["operator"]
