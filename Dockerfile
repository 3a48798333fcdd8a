# syntax=docker/dockerfile:1
#
# The production image: ctmflow built with -tags nodev (no embedded
# Temporal server, no Web UI) and CGO_ENABLED=0 (a static binary: the
# SQLite driver is pure Go), on a distroless base that runs as a non-root
# user and has no shell. Container health checks use `ctmflow probe`.
#
#   docker build -t ctmflow .
#   docker run --rm ctmflow config

# The Go version is go.mod's (a test keeps them equal): the image's
# toolchain does not download another.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags nodev -trimpath -ldflags="-s -w" -o /out/ctmflow ./cmd/ctmflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ctmflow /ctmflow
USER nonroot:nonroot
# 8080: webhooks, /api, health and metrics of `ctmflow webhook`.
# 9090: health and metrics of `ctmflow worker`.
EXPOSE 8080 9090
ENTRYPOINT ["/ctmflow"]
CMD ["--help"]
