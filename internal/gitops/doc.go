// Package gitops runs the Argo CD health scripts kubelvs ships (config/gitops, embedded there) the way Argo CD
// runs a resource customization's health.lua: the object as the global table `obj`, the
// script's returned table read as {status, message}, and the status checked against Argo CD's
// health codes. The tests of the controller and the agent use it on the objects those write.
package gitops
