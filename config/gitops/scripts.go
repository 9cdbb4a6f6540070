// Package gitops holds the Argo CD health scripts kubelvs ships, embedded so that tests
// anywhere (the host's envtest suites, the VM's end-to-end tests) run exactly the files that
// argocd-cm.yaml carries. internal/gitops runs them.
package gitops

import (
	"embed"
	"fmt"
)

//go:embed resource_customizations/kubelvs.io/*/health.lua
var scripts embed.FS

// HealthScript returns the health.lua of a kubelvs.io kind (VirtualService, IPVSNode).
func HealthScript(kind string) (string, error) {
	b, err := scripts.ReadFile("resource_customizations/kubelvs.io/" + kind + "/health.lua")
	if err != nil {
		return "", fmt.Errorf("gitops: no health script for kubelvs.io/%s: %w", kind, err)
	}
	return string(b), nil
}
