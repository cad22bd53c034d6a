# Routeway gateway image: non-root, `routeway serve` as the entry point, policies from /app/policies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 routeway
COPY --from=build /install /usr/local
WORKDIR /app
COPY policies ./policies
USER routeway
# No key is baked in: on 0.0.0.0 the gateway refuses to start until ROUTEWAY_API_KEYS is given at run time
# (docker run --env-file, or compose's deploy/routeway.env).
ENV ROUTEWAY_HOST=0.0.0.0 ROUTEWAY_PORT=8080 ROUTEWAY_CONFIG=/app/policies
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=1)" || exit 1
ENTRYPOINT ["routeway", "serve"]
