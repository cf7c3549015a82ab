# One image: the API by default; the worker and beat by command (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MIXOPT_HOME=/data
WORKDIR /srv/mixopt

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
USER mixopt
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"

# API (migrations are run by the one-shot `migrate` service in compose: MIXOPT_AUTO_MIGRATE=false)
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
