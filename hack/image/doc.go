// Command image builds the kubelvs container image without a container engine: the static
// `make build` binary as /kubelvs on a base it constructs (passwd and group files with the
// nonroot user 65532, an empty /tmp), entrypoint /kubelvs, user 65532:65532, written as a
// `docker save` tarball (docker load, podman load, kind load image-archive, crane push). It is
// a module of its own so that the product's go.mod does not carry go-containerregistry.
//
//	go run ./hack/image -binary bin/kubelvs -out bin/kubelvs-image.tar -tag ghcr.io/kubelvs/kubelvs:dev
package main
