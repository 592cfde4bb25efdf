# The MLflow tracking server of the compose deployment (model registry and run history).
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "mlflow>=3.0" && useradd --system --uid 10002 --create-home mlflow \
    && mkdir /mlflow && chown mlflow /mlflow
USER mlflow
EXPOSE 5000
