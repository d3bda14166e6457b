// Module imagebuild assembles the operator's OCI image (and the local pause
// image of hack/node.sh) from a static binary, without a Docker engine or a
// registry: `make image` runs it. It is a module of its own so the image
// library stays out of the operator's dependencies.
module github.com/stocksync/smaregi-operator/hack/imagebuild

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
