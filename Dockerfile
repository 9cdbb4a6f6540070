# The kubelvs image: one static binary for both `kubelvs controller` and `kubelvs agent`.
# With a container engine: `docker build -t ghcr.io/kubelvs/kubelvs:dev .`
# Without one (this project's CI): `make image` builds the same layout from `make build`'s
# binary with go-containerregistry (hack/image) as a `docker save` tarball, on a base it
# constructs itself (passwd/group with the nonroot user 65532, /tmp) instead of pulling
# distroless.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY pkg/ pkg/
ARG TARGETOS=linux TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -o /out/kubelvs ./cmd/kubelvs

# distroless static, nonroot: no shell, no libc, uid/gid 65532. The controller runs as that
# user; the agent's DaemonSet runs it as uid 0 with only CAP_NET_ADMIN (IPVS needs it).
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/kubelvs /kubelvs
USER 65532:65532
ENTRYPOINT ["/kubelvs"]
