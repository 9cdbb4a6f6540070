// Command apiserver runs the envtest API server (kube-apiserver and etcd, with the kubelvs CRDs)
// on the host for the VM tests, and writes a kubeconfig with which a guest of hack/vm reaches
// it through qemu's user-mode network: server https://10.0.2.2:PORT (forwarded to the host's
// 127.0.0.1:PORT) and tls-server-name localhost, the name the serving certificate carries.
//
// Usage: apiserver -guest-kubeconfig FILE -port-file FILE; it runs until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

func main() {
	kubeconfig := flag.String("guest-kubeconfig", "", "write the guest's kubeconfig here")
	portFile := flag.String("port-file", "", "write the API server's port here once it serves")
	flag.Parse()
	if *kubeconfig == "" || *portFile == "" {
		fmt.Fprintln(os.Stderr, "apiserver: -guest-kubeconfig and -port-file are required")
		os.Exit(2)
	}
	if err := run(*kubeconfig, *portFile); err != nil {
		fmt.Fprintln(os.Stderr, "apiserver:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, portFile string) error {
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer env.Stop() //nolint:errcheck // best effort on the way out
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read envtest's kubeconfig: %w", err)
	}
	port := ""
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			return fmt.Errorf("envtest's server %q: %w", c.Server, err)
		}
		port = u.Port()
		c.Server = "https://10.0.2.2:" + port
		c.TLSServerName = "localhost"
	}
	if port == "" {
		return fmt.Errorf("envtest's kubeconfig names no server")
	}
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return fmt.Errorf("write %s: %w", kubeconfig, err)
	}
	if err := os.WriteFile(portFile, []byte(port+"\n"), 0o644); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
