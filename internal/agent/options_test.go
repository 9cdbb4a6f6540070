package agent

import (
	"net/http"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/vswatch"
)

// envHTTPClient is an HTTP client for the test API server, as the agent's manager has one.
func envHTTPClient(t testing.TB) *http.Client {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	must(t, err)
	return hc
}

// testCacheOptions and testClientOptions are the agent's cache and client options with its
// VirtualServices' watch and HTTP clients of their own, as cmd/kubelvs builds them.
func testCacheOptions(t testing.TB, node string) cache.Options {
	t.Helper()
	hc := envHTTPClient(t)
	lw, err := vswatch.ListWatch(env.Config, hc, env.Scheme, nil)
	must(t, err)
	o := CacheOptions(node, lw)
	o.HTTPClient = hc
	return o
}

func testClientOptions(t testing.TB) client.Options {
	t.Helper()
	o := ClientOptions()
	o.HTTPClient = envHTTPClient(t)
	return o
}
