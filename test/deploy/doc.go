// Package deploy holds the tests of what kubelvs ships for a cluster: the rendering of
// config/default applied to a real API server (server-side dry run, then for real), the
// controller and the agent binaries run with the arguments of their Deployment and DaemonSet
// under their own ServiceAccounts' RBAC (through impersonation), the Argo CD health scripts of
// config/gitops run on the objects those binaries write, and the Grafana dashboard's queries
// checked against the metrics the binaries export. It has no non-test code.
package deploy
