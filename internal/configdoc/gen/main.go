// Command gen writes docs/configuration.md (go generate ./config).
package main

import (
	"flag"
	"log"
	"os"

	"github.com/courierhq/courier/internal/configdoc"
	"github.com/courierhq/courier/sinks/builtin"
)

func main() {
	root := flag.String("root", ".", "the module's directory")
	out := flag.String("o", "docs/configuration.md", "file to write")
	flag.Parse()
	md, err := configdoc.Generate(*root, builtin.Kinds())
	if err != nil {
		log.Fatalf("configdoc: %v", err)
	}
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		log.Fatalf("configdoc: %v", err)
	}
}
