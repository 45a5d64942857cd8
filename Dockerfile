# syntax=docker/dockerfile:1
#
# Switchboard: a small static image. The builder compiles one static binary (no cgo, so no
# libc to ship); the final stage is distroless "static" running as the unprivileged
# "nonroot" user (uid 65532): no shell, no package manager, CA certificates included (for a
# TLS Redis or webhook URL).
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 -e SWITCHBOARD_REDIS=redis://redis:6379/0 \
#     -e SWITCHBOARD_JWT_SECRET=... -e SWITCHBOARD_API_KEY=... switchboard
#
# The image has no curl and no shell, so it carries no HEALTHCHECK: a load balancer or
# Kubernetes probes /readyz and /healthz from outside (see docs/deployment.md).
# deploy/deploy_test.go builds the same binary with the same command on every test run.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/switchboard ./cmd/switchboard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /switchboard
# Listen on every interface inside the container; the binary's own default is loopback.
ENV SWITCHBOARD_ADDR=0.0.0.0:8080
EXPOSE 8080
USER nonroot:nonroot
# SIGTERM drains: /readyz turns 503, WebSockets close with 1012, the process exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/switchboard"]
