package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebianPackageInstallsTheUnitAndPaths builds the packages, unpacks
// the .deb into a scratch root as dpkg would, and checks what an operator
// relies on: the binaries, the systemd unit (verified by systemd-analyze),
// the courier user, and a configuration that passes worker check.
func TestDebianPackageInstallsTheUnitAndPaths(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "systemd-analyze", "rpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/services.sh installs it): %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	opts := PackageOptions{
		Config: filepath.Join(root, "deploy/packages/nfpm.yaml"), Root: root,
		Version: "0.1.0", Arch: "amd64", Bin: bin, OutDir: t.TempDir(),
		MTime: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	}
	paths, err := BuildPackages(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Reproducible: the same inputs and time give the same bytes.
	opts.OutDir = t.TempDir()
	again, err := BuildPackages(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		if a, b := fileSum(t, paths[i]), fileSum(t, again[i]); a != b {
			t.Errorf("%s differs between two builds: %s, %s", filepath.Base(paths[i]), a, b)
		}
	}
	if len(paths) != 2 || !strings.HasSuffix(paths[0], ".deb") || !strings.HasSuffix(paths[1], ".rpm") {
		t.Fatalf("packages %v, want a .deb and an .rpm", paths)
	}
	deb, rpm := paths[0], paths[1]

	scratch := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, scratch)
	for path, mode := range map[string]os.FileMode{
		"usr/bin/courier-worker":                        0o755,
		"usr/bin/courier-emit":                          0o755,
		"usr/lib/systemd/system/courier-worker.service": 0o644,
		"usr/lib/sysusers.d/courier.conf":               0o644,
		"etc/courier/courier.yaml":                      0o640,
	} {
		fi, err := os.Stat(filepath.Join(scratch, path))
		if err != nil {
			t.Errorf("the package does not install /%s: %v", path, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("/%s has mode %o, want %o", path, fi.Mode().Perm(), mode)
		}
	}
	if got := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture"); got != "Package: courier\nVersion: 0.1.0\nArchitecture: amd64\n" {
		t.Errorf("control fields:\n%s", got)
	}
	control := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, control)
	if b, _ := os.ReadFile(filepath.Join(control, "conffiles")); strings.TrimSpace(string(b)) != "/etc/courier/courier.yaml" {
		t.Errorf("conffiles = %q: an edited configuration would be overwritten on upgrade", b)
	}
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		run(t, "sh", "-n", filepath.Join(control, script))
	}
	if b, _ := os.ReadFile(filepath.Join(control, "preinst")); !bytes.Contains(b, []byte("useradd --system")) {
		t.Error("preinst does not create the courier user")
	}
	if got := run(t, "dpkg-deb", "-c", deb); !strings.Contains(got, "root/courier") {
		t.Errorf("/etc/courier/courier.yaml is not group courier:\n%s", got)
	}

	// The unit as installed, with its commands pointing into the scratch
	// root; any warning fails.
	unit, err := os.ReadFile(filepath.Join(scratch, "usr/lib/systemd/system/courier-worker.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=courier", "StateDirectory=courier", "ExecStartPre=/usr/bin/courier-worker check --config /etc/courier/courier.yaml"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	unitPath := filepath.Join(t.TempDir(), "courier-worker.service")
	if err := os.WriteFile(unitPath, bytes.ReplaceAll(unit, []byte("/usr/bin/"), []byte(scratch+"/usr/bin/")), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "systemd-analyze", "verify", unitPath); got != "" {
		t.Errorf("systemd-analyze verify: %s", got)
	}

	// The installed worker accepts the installed configuration, with the
	// environment the unit's EnvironmentFile gives it.
	check := exec.Command(filepath.Join(scratch, "usr/bin/courier-worker"), "check", "--config", filepath.Join(scratch, "etc/courier/courier.yaml"))
	check.Env = []string{"HOSTNAME=node1", "AUDIT_TOKEN=t0ken", "AUDIT_SECRET=whsec_dGVzdA=="}
	if b, err := check.CombinedOutput(); err != nil {
		t.Errorf("installed worker check: %v\n%s", err, b)
	}

	// The .rpm holds the same files.
	list := run(t, "rpm", "-qlp", rpm)
	for _, path := range []string{"/usr/bin/courier-worker", "/usr/bin/courier-emit", "/usr/lib/systemd/system/courier-worker.service", "/etc/courier/courier.yaml"} {
		if !strings.Contains(list, path+"\n") {
			t.Errorf("the .rpm does not install %s:\n%s", path, list)
		}
	}
	if got := run(t, "rpm", "-qcp", rpm); got != "/etc/courier/courier.yaml\n" {
		t.Errorf("the .rpm's configuration files: %q", got)
	}
	if got := run(t, "rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{ARCH}", rpm); got != "courier 0.1.0 x86_64" {
		t.Errorf("rpm header: %q", got)
	}
}

// run runs a command and returns what it printed; a failure fails the test.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
