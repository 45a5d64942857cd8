// Package deploy holds Switchboard's deployment files: the HAProxy configuration that
// compose.yaml (at the repository root) mounts, and the Kubernetes manifests in
// deploy/kubernetes. It has no Go code of its own; its tests check those files, the
// Dockerfile and .dockerignore against the binary they deploy, because no container engine
// runs where the tests run. docs/deployment.md describes how to use them.
package deploy
