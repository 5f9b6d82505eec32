package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// PackageOptions say what to package: the nfpm configuration, the
// directory its relative paths start from, and its ${VERSION}, ${ARCH}
// and ${BIN}.
type PackageOptions struct {
	Config  string
	Root    string
	Version string
	Arch    string
	Bin     string
	OutDir  string
	// MTime, when set, is every file's time in the packages, so that the
	// same commit packages to the same bytes (SOURCE_DATE_EPOCH).
	MTime time.Time
}

// BuildPackages writes the .deb and the .rpm into OutDir and returns
// their paths.
func BuildPackages(opts PackageOptions) ([]string, error) {
	vars := map[string]string{"VERSION": opts.Version, "ARCH": opts.Arch, "BIN": opts.Bin}
	cfg, err := nfpm.ParseFileWithEnvMapping(opts.Config, func(name string) string { return vars[name] })
	if err != nil {
		return nil, fmt.Errorf("package config %s: %w", opts.Config, err)
	}
	if !opts.MTime.IsZero() {
		cfg.MTime = opts.MTime
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("package output: %w", err)
	}
	// nfpm resolves the contents' relative paths against the working
	// directory.
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if err := os.Chdir(opts.Root); err != nil {
		return nil, fmt.Errorf("package root: %w", err)
	}
	defer os.Chdir(wd) //nolint:errcheck // back where we were; nothing to do if it fails
	var out []string
	for _, p := range []struct {
		format   string
		packager nfpm.Packager
	}{{"deb", deb.Default}, {"rpm", rpm.DefaultRPM}} {
		path, err := buildPackage(&cfg, p.format, p.packager, opts.OutDir)
		if err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

func buildPackage(cfg *nfpm.Config, format string, packager nfpm.Packager, outDir string) (string, error) {
	info, err := cfg.Get(format)
	if err != nil {
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	path := filepath.Join(outDir, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	return path, nil
}
