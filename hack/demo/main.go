// Command demo runs the `make demo` scenario (internal/demo) where the kernel has IPVS: on a host
// with IPVS (starting its own envtest API server) or in the hack/vm guest (given the kubeconfig
// of the API server on the host). hack/demo/run.sh chooses and starts it.
//
// Usage: demo -kubelvs BIN -samples DIR [-kubeconfig FILE] [-user-kubeconfig FILE] [-kubectl BIN] [--once]
//
// Without --once it keeps the cluster after the steps and prints each change of the nodes'
// IPVS tables until SIGINT or SIGTERM; then, and on failure, it stops what it started and
// deletes its network namespaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubelvs/kubelvs/internal/demo"
	"github.com/kubelvs/kubelvs/internal/testenv"
)

type flags struct {
	kubeconfig, userKubeconfig, kubectl, kubelvs, samples string
	once                                                  bool
}

func main() {
	var f flags
	// A flag set of its own: controller-runtime registers -kubeconfig on the global one.
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "the API server's kubeconfig (default: start an envtest API server here, KUBEBUILDER_ASSETS)")
	fs.StringVar(&f.userKubeconfig, "user-kubeconfig", "", "the kubeconfig to tell the user (default: -kubeconfig)")
	fs.StringVar(&f.kubectl, "kubectl", "kubectl", "the kubectl to tell the user")
	fs.StringVar(&f.kubelvs, "kubelvs", "", "the kubelvs binary (required)")
	fs.StringVar(&f.samples, "samples", "", "the config/samples directory (required)")
	fs.BoolVar(&f.once, "once", false, "run the steps and exit instead of waiting for Ctrl-C")
	_ = fs.Parse(os.Args[1:])
	if f.kubelvs == "" || f.samples == "" {
		fmt.Fprintln(os.Stderr, "demo: -kubelvs and -samples are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo: FAILED:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) (err error) {
	if f.kubeconfig == "" {
		fmt.Println("demo: starting the envtest API server (kube-apiserver, etcd) with the kubelvs CRDs")
		env, err := testenv.Start()
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, env.Stop()) }()
		f.kubeconfig = env.Kubeconfig
	}
	if f.userKubeconfig == "" {
		f.userKubeconfig = f.kubeconfig
	}
	d, err := demo.Start(ctx, demo.Options{Kubeconfig: f.kubeconfig, Kubelvs: f.kubelvs, Samples: f.samples, Out: os.Stdout})
	defer func() {
		fmt.Println("\ndemo: stopping the agents and the controller, deleting the network namespaces")
		err = errors.Join(err, d.Close())
	}()
	if err != nil {
		return err
	}
	if _, err := d.Run(ctx); err != nil {
		return err
	}
	if f.once {
		fmt.Println("\ndemo: all steps done (--once)")
		return nil
	}
	fmt.Printf(`
━━ Your turn
   The cluster stays up until Ctrl-C. From another terminal:

     export KUBECONFIG=%s
     %s get lvs,ipvsnodes -A -w
     %s apply -f - <<'YAML'
     apiVersion: kubelvs.io/v1alpha1
     kind: VirtualService
     metadata: {name: mine}
     spec:
       addresses: ["192.0.2.99"]
       ports: [{port: 80, protocol: TCP}]
       backendRefs: [{name: web}]
     YAML

   Each change of n1's or n2's IPVS table is printed here.
`, f.userKubeconfig, f.kubectl, f.kubectl)
	return d.Watch(ctx)
}
