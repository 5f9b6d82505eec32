// Command render writes the plain Kubernetes manifests rendered from the
// Helm chart (make manifests), so operators without Helm apply the same
// objects the chart makes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/courierhq/courier/tools/deploy"
)

func main() {
	chart := flag.String("chart", "deploy/helm/courier", "the chart's directory")
	out := flag.String("out", "deploy/kubernetes/courier.yaml", "where to write the manifests")
	release := flag.String("release", "courier", "release name")
	namespace := flag.String("namespace", "courier", "namespace")
	flag.Parse()
	if err := run(*chart, *out, deploy.Release{Name: *release, Namespace: *namespace}); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(chart, out string, rel deploy.Release) error {
	manifests, err := deploy.PlainManifests(context.Background(), chart, rel)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(manifests), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
