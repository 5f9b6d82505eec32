// Package deploy renders Courier's Helm chart and checks what it and the
// plain manifests produce against the Kubernetes API types, and builds the
// .deb and .rpm packages. It is a module of its own so that Helm's and
// Kubernetes' dependencies never enter the product's go.mod.
package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// Release names the release a chart is rendered for.
type Release struct {
	Name      string
	Namespace string
}

// RenderChart renders the chart in dir with values over its defaults, as
// `helm template` would, and returns the manifests in template order, one
// YAML stream. NOTES.txt is left out and checked to render.
func RenderChart(ctx context.Context, dir string, rel Release, values map[string]any) (string, error) {
	chrt, err := loader.LoadDir(dir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", dir, err)
	}
	vals, err := util.ToRenderValuesWithSchemaValidation(chrt, values,
		common.ReleaseOptions{Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true},
		common.DefaultCapabilities, false)
	if err != nil {
		return "", fmt.Errorf("chart %s values: %w", dir, err)
	}
	eng := engine.Engine{Strict: true}
	files, err := eng.RenderWithContext(ctx, chrt, vals)
	if err != nil {
		return "", fmt.Errorf("render chart %s: %w", dir, err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		// Partials (_helpers.tpl) render to nothing; NOTES.txt is text.
		if strings.HasPrefix(path.Base(name), "_") || path.Base(name) == "NOTES.txt" {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		body := strings.TrimSpace(files[name])
		if body == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, body)
	}
	return b.String(), nil
}

// PlainManifests are the chart's default rendering with a header saying
// where they come from and what to create first.
func PlainManifests(ctx context.Context, dir string, rel Release) (string, error) {
	body, err := RenderChart(ctx, dir, rel, nil)
	if err != nil {
		return "", err
	}
	header := fmt.Sprintf(`# Courier on Kubernetes without Helm: the chart in deploy/helm/courier
# rendered with its default values for release %[1]q in namespace %[2]q
# (make manifests writes this file; do not edit it). Create the namespace
# and the Secret first (deploy/README.md), then:
#   kubectl apply -n %[2]s -f deploy/kubernetes/courier.yaml
`, rel.Name, rel.Namespace)
	return header + body, nil
}
