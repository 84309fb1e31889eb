# decaywatch: the monitor (default) and the producer in one image.
#
#   docker build -t decaywatch .
#   docker run --rm -p 9464:9464 -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 decaywatch
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 decaywatch produce --rate 200
#
# Configuration comes from the environment (DECAYWATCH_<FLAG>, e.g.
# DECAYWATCH_TOPIC, DECAYWATCH_METRICS_PORT) or from flags after the image name.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs (see .dockerignore): a change to the tests does not
# invalidate the installed layer.
COPY pyproject.toml README.md /src/
COPY decaywatch /src/decaywatch
COPY monitor /src/monitor
COPY producer /src/producer
COPY consumer /src/consumer
COPY deploy/__init__.py /src/deploy/__init__.py
COPY deploy/kafka /src/deploy/kafka
RUN pip install /src && rm -rf /src

RUN groupadd --system --gid 10001 decaywatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin decaywatch
USER 10001:10001
WORKDIR /tmp

# JSON log lines in containers; the metrics port is the monitor's default.
ENV DECAYWATCH_LOG_FORMAT=json \
    DECAYWATCH_METRICS_PORT=9464
EXPOSE 9464

# /healthz answers "ok" while the monitor's HTTP side lives (python: the slim image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DECAYWATCH_METRICS_PORT', '9464'), timeout=4)"]

ENTRYPOINT ["decaywatch"]
CMD ["monitor"]
