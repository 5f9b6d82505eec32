package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/sinks/builtin"
)

// yamlBlocks returns each ```yaml block of a Markdown file with the line it
// starts on.
func yamlBlocks(t *testing.T, path string) map[int]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[int]string{}
	var cur *strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```yaml":
			cur, start = &strings.Builder{}, i+2
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks[start] = cur.String()
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// anyEnv sets every ${NAME} a document references: a port or a webhook
// secret where the name says so, a word otherwise.
func anyEnv(name string) (string, bool) {
	switch {
	case strings.HasSuffix(name, "_PORT"):
		return "9000", true
	case strings.HasSuffix(name, "_SECRET"):
		return "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", true
	}
	return "x-" + strings.ToLower(name), true
}

// parseDoc parses a documented configuration, or a piece of one: an entry
// of sinks: is parsed as a list of one sink. Files the example names
// (/etc/courier/...) need not exist here; everything else must be valid.
func parseDoc(doc string) error {
	if strings.HasPrefix(strings.TrimLeft(doc, " "), "- ") {
		doc = "sinks:\n" + doc
	}
	_, err := config.Parse([]byte(doc), anyEnv, builtin.Kinds())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Every YAML example in the README and examples/ is parsed by the real
// parser, so a misspelled or renamed setting in the documentation fails
// here rather than in an operator's hands.
func TestDocumentedYAMLParses(t *testing.T) {
	blocks := yamlBlocks(t, "../README.md")
	if len(blocks) < 8 {
		t.Fatalf("found %d yaml blocks in the README, want at least 8: is the parser of this test broken?", len(blocks))
	}
	for line, doc := range blocks {
		if err := parseDoc(doc); err != nil {
			t.Errorf("README.md:%d: %v\n%s", line, err, doc)
		}
	}
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := parseDoc(string(b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The parser of this test finds a wrong setting: a documented block that
// drifted would fail.
func TestDocumentedYAMLCatchesDrift(t *testing.T) {
	err := parseDoc("outbox:\n  sync_mode: always\n")
	if err == nil || !regexp.MustCompile(`sync_mode`).MatchString(err.Error()) {
		t.Fatalf("a misspelled setting parsed: %v", err)
	}
	if err := parseDoc("  - name: hook\n    type: webhook\n    url: http://127.0.0.1/x\n    formt: gluster\n"); err == nil {
		t.Fatal("a misspelled sink setting parsed")
	}
}
