# Routeway gateway image: non-root, `routeway serve` as the entry point, policies from /app/policies.
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t routeway:0.1.0 .
# Build stage: the wheel and its dependencies (all binary wheels on PyPI; no compiler is installed anywhere).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# gateway/policy/catalog.yaml links to policies/catalog.yaml: the wheel takes the file's content.
COPY policies ./policies
RUN pip install --no-cache-dir --prefix=/install .

# Final stage: the installed packages only, no pip cache, no build tools, no sources.
FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="routeway" \
      org.opencontainers.image.description="OpenAI-compatible LLM routing gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN useradd --create-home --uid 10001 --user-group routeway
COPY --from=build /install /usr/local
WORKDIR /app
COPY policies ./policies
# Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser (deploy/kubernetes sets 10001 too).
USER 10001:10001
# No key is baked in: on 0.0.0.0 the gateway refuses to start until ROUTEWAY_API_KEYS is given at run time
# (docker run --env-file, compose's deploy/routeway.env, or a Kubernetes Secret).
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only under Kubernetes (readOnlyRootFilesystem).
ENV ROUTEWAY_HOST=0.0.0.0 ROUTEWAY_PORT=8080 ROUTEWAY_CONFIG=/app/policies \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=1)" || exit 1
ENTRYPOINT ["routeway", "serve"]
