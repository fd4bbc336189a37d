# One image for the worker and the ingress: `dago-executor worker` or `dago-executor ingress`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY activities ./activities
COPY workflows ./workflows
COPY ingress ./ingress
COPY doubles ./doubles
COPY executor ./executor
RUN pip install . && useradd --create-home --uid 10001 executor
USER executor

# SIGTERM lets in-flight activities finish (up to 30 s); give pods a longer grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dago-executor"]
CMD ["worker"]
