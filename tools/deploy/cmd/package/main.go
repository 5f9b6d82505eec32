// Command package builds Courier's .deb and .rpm from
// deploy/packages/nfpm.yaml (make packages).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/courierhq/courier/tools/deploy"
)

func main() {
	var o deploy.PackageOptions
	flag.StringVar(&o.Root, "root", "../..", "the repository, where the configuration's paths start")
	flag.StringVar(&o.Config, "config", "deploy/packages/nfpm.yaml", "nfpm configuration, under -root")
	flag.StringVar(&o.Bin, "bin", "bin/static", "directory of the static binaries (scripts/build-static.sh), under -root")
	flag.StringVar(&o.Version, "version", "0.1.0", "package version")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "architecture (Go's name)")
	flag.StringVar(&o.OutDir, "out", "dist", "where to write the packages, under -root")
	epoch := flag.Int64("mtime", envInt("SOURCE_DATE_EPOCH"), "the files' time in the packages, in Unix seconds ($SOURCE_DATE_EPOCH; 0: now)")
	flag.Parse()
	if *epoch > 0 {
		o.MTime = time.Unix(*epoch, 0).UTC()
	}
	root, err := filepath.Abs(o.Root)
	if err == nil {
		o.Root = root
		o.Config = filepath.Join(root, o.Config)
		o.OutDir = filepath.Join(root, o.OutDir)
		var paths []string
		if paths, err = deploy.BuildPackages(o); err == nil {
			for _, p := range paths {
				fmt.Println(p)
			}
			return
		}
	}
	fmt.Fprintln(os.Stderr, "package:", err)
	os.Exit(1)
}

func envInt(name string) int64 {
	n, _ := strconv.ParseInt(os.Getenv(name), 10, 64)
	return n
}
