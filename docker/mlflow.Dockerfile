# An MLflow tracking server (and the one-shot model fetcher of compose.yaml): MLflow on python:3.11-slim.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG MLFLOW_VERSION=3.17.2
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/mlflow && /opt/mlflow/bin/pip install --quiet "mlflow==${MLFLOW_VERSION}"
RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --home-dir /data --shell /usr/sbin/nologin mlflow \
 && mkdir -p /data /model && chown mlflow:mlflow /data /model
ENV PATH=/opt/mlflow/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", \
     "--backend-store-uri", "sqlite:////data/mlflow.db", "--artifacts-destination", "/data/artifacts"]
