# Image for api, worker, beat and flower (docker-compose.yml). libmagic is the only native need.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY attachd attachd
COPY api api
COPY workers workers
COPY storage storage
COPY deploy deploy
RUN pip install --no-cache-dir . && mkdir -p /var/lib/attachd && chown nobody /var/lib/attachd
USER nobody
EXPOSE 8080 5555
