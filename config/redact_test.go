package config

import (
	"strings"
	"testing"
)

func TestRedactSourceHidesEveryCredential(t *testing.T) {
	def := `name: hook
type: webhook
url: https://ops:hunter2@example.com/hook # pw inline
bearer_token: tok-SECRET-1
secret: whsec_SECRET2
secrets: [whsec_SECRET3]
headers: {X-Api: SECRET4}
token_file: /run/secrets/token
sasl: {mechanism: plain, username: u, password: SECRET5}
other_token: ${HOOK_TOKEN}
`
	got := RedactSource(def)
	for _, s := range []string{"hunter2", "SECRET", "pw inline"} {
		if strings.Contains(got, s) {
			t.Errorf("redacted definition shows %q:\n%s", s, got)
		}
	}
	for _, s := range []string{"https://ops:xxxxx@example.com/hook", "${HOOK_TOKEN}", "mechanism: plain", "username: u", "type: webhook"} {
		if !strings.Contains(got, s) {
			t.Errorf("redacted definition lost %q:\n%s", s, got)
		}
	}
	if got := RedactSource("url: [unclosed"); got != Redacted {
		t.Errorf("unparsable definition shown as %q", got)
	}
}
