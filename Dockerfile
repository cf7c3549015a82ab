# One image: the API by default; the worker and beat by command (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MIXOPT_HOME=/data
WORKDIR /srv/mixopt

# LightGBM (RegMix's trees) needs the GNU OpenMP runtime, which the slim image lacks; without
# it regmix_lgbm would fall back to scikit-learn (the worker's start-up line says which is used)
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

# CPU build of torch by default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
# (or any CUDA index) for the GPU worker image.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=""
RUN if [ -n "$TORCH_INDEX" ]; then pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX"; \
    else pip install "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu || pip install "$TORCH_SPEC"; fi

COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY mixopt ./mixopt
RUN pip install ".[all]" && useradd --create-home mixopt && mkdir -p /data && chown mixopt /data
# the working directory stays root-owned (read-only for the service): everything the processes
# write (beat's schedule, checkpoints, shards) goes to MIXOPT_HOME=/data
USER mixopt
VOLUME /data
EXPOSE 8000

# no image-wide HEALTHCHECK: api, worker, gpu-worker and beat each have their own in
# docker-compose.yml (`mixopt health api|beat`, Celery's ping of the worker's node name)

# API (migrations are run by the one-shot `migrate` service in compose: MIXOPT_AUTO_MIGRATE=false)
# --no-proxy-headers: X-Forwarded-For is read by mixopt, from MIXOPT_TRUSTED_PROXIES only
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-proxy-headers"]
