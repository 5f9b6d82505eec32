package webhook

import (
	"bytes"
	"strings"
	"testing"
)

// The Standard Webhooks specification's published test vector, as in its
// reference libraries' tests (libraries/go/webhook_test.go, TestWebhookSign,
// in github.com/standard-webhooks/standard-webhooks).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustDecodeSecret(t *testing.T, s string) []byte {
	t.Helper()
	k, err := DecodeSecret(s)
	if err != nil {
		t.Fatalf("DecodeSecret(%q): %v", s, err)
	}
	return k
}

func TestSignMatchesTheStandardWebhooksTestVector(t *testing.T) {
	tests := []struct {
		name   string
		secret string
	}{
		{"secret with the whsec_ prefix", specSecret},
		{"secret without the prefix, as the reference libraries also accept", strings.TrimPrefix(specSecret, "whsec_")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := mustDecodeSecret(t, tt.secret)
			got := Sign([][]byte{key}, specMsgID, specTimestamp, []byte(specPayload))
			if got != specSignature {
				t.Errorf("Sign = %q, want the specification's %q", got, specSignature)
			}
		})
	}
}

func TestSignChangesWithEverySignedInput(t *testing.T) {
	key := mustDecodeSecret(t, specSecret)
	otherKey := mustDecodeSecret(t, "whsec_"+"c2Vjb25kLWtleS1mb3ItdGVzdHM=")
	tests := []struct {
		name string
		sig  string
	}{
		{"other key", Sign([][]byte{otherKey}, specMsgID, specTimestamp, []byte(specPayload))},
		{"other id", Sign([][]byte{key}, "msg_other", specTimestamp, []byte(specPayload))},
		{"other timestamp", Sign([][]byte{key}, specMsgID, specTimestamp+1, []byte(specPayload))},
		{"other body", Sign([][]byte{key}, specMsgID, specTimestamp, []byte(`{"test": 2432232315}`))},
		{"body with different whitespace", Sign([][]byte{key}, specMsgID, specTimestamp, []byte(`{"test":2432232314}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.sig == specSignature {
				t.Errorf("signature %q is the same as for the specification's inputs", tt.sig)
			}
			if !strings.HasPrefix(tt.sig, "v1,") {
				t.Errorf("signature %q does not start with v1,", tt.sig)
			}
		})
	}
}

func TestSignWithSeveralKeysGivesOneSignaturePerKeySpaceSeparated(t *testing.T) {
	k1 := mustDecodeSecret(t, "whsec_"+"Zmlyc3Qta2V5LWZvci10ZXN0cw==")
	k2 := mustDecodeSecret(t, specSecret)
	k3 := mustDecodeSecret(t, "whsec_"+"dGhpcmQta2V5LWZvci10ZXN0cw==")
	body := []byte(specPayload)
	tests := []struct {
		name string
		keys [][]byte
	}{
		{"two keys", [][]byte{k1, k2}},
		{"three keys", [][]byte{k1, k2, k3}},
		{"the spec key first", [][]byte{k2, k3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sign(tt.keys, specMsgID, specTimestamp, body)
			parts := strings.Split(got, " ")
			if len(parts) != len(tt.keys) {
				t.Fatalf("Sign = %q: %d signatures, want %d (one per key)", got, len(parts), len(tt.keys))
			}
			for i, k := range tt.keys {
				if want := Sign([][]byte{k}, specMsgID, specTimestamp, body); parts[i] != want {
					t.Errorf("signature %d = %q, want %q (key %d alone)", i, parts[i], want, i)
				}
				if bytes.Equal(k, k2) && parts[i] != specSignature {
					t.Errorf("signature %d = %q, want the specification's %q", i, parts[i], specSignature)
				}
			}
		})
	}
}

func TestSignWithoutKeysIsEmpty(t *testing.T) {
	if got := Sign(nil, specMsgID, specTimestamp, []byte(specPayload)); got != "" {
		t.Errorf("Sign(no keys) = %q, want empty", got)
	}
}

func TestDecodeSecret(t *testing.T) {
	tests := []struct {
		name    string
		secret  string
		want    string // the decoded key, when valid
		wantErr bool
	}{
		{"prefixed base64", "whsec_" + "a2V5", "key", false},
		{"bare base64", "a2V5", "key", false},
		{"padded base64", "whsec_" + "a2V5MQ==", "key1", false},
		{"empty", "", "", true},
		{"prefix alone", "whsec_", "", true},
		{"not base64", "whsec_not base64!", "", true},
		{"URL-safe alphabet", "whsec_" + "a2V5-_8=", "", true},
		{"missing padding", "whsec_" + "a2V5MQ", "", true},
		{"plain text", "my-webhook-password", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeSecret(tt.secret)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeSecret(%q) = %q, %v; want error %v", tt.secret, got, err, tt.wantErr)
			}
			if !tt.wantErr && string(got) != tt.want {
				t.Errorf("DecodeSecret(%q) = %q, want %q", tt.secret, got, tt.want)
			}
			if err != nil {
				if body := strings.TrimPrefix(tt.secret, "whsec_"); body != "" && strings.Contains(err.Error(), body) {
					t.Errorf("error %q echoes the secret", err)
				}
				if !strings.Contains(err.Error(), "whsec_") {
					t.Errorf("error %q does not say what a secret looks like", err)
				}
			}
		})
	}
}

func TestConfigValidateRejectsBadSecretsWithoutEchoingThem(t *testing.T) {
	const (
		bad1 = "whsec_Sup3r$ecret!Value"
		bad2 = "hunter2-plain-password"
	)
	tests := []struct {
		name    string
		secret  string
		secrets []string
		wantMsg string
		leak    string
	}{
		{"bad secret", bad1, nil, "secret #1", "Sup3r$ecret!Value"},
		{"bad secret in the rotation list", "", []string{specSecret, bad2}, "secret #2", bad2},
		{"bad rotation secret after a good secret", specSecret, []string{bad2}, "secret #2", bad2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{URL: "https://example.com/hook", Secret: tt.secret, Secrets: tt.secrets}.WithDefaults()
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error for a secret that is not whsec_ and base64")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say which secret (%s)", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), tt.leak) {
				t.Errorf("error %q echoes the secret", err)
			}
			if _, err := New(c, "", 1, "test"); err == nil || strings.Contains(err.Error(), tt.leak) {
				t.Errorf("New = %v, want an error that does not echo the secret", err)
			}
		})
	}
}

func TestConfigValidateAcceptsGoodSecrets(t *testing.T) {
	c := Config{URL: "https://example.com/hook", Secret: specSecret, Secrets: []string{"whsec_a2V5"}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	keys, err := c.signingKeys()
	if err != nil {
		t.Fatalf("signingKeys: %v", err)
	}
	if len(keys) != 2 || string(keys[1]) != "key" {
		t.Errorf("signing keys = %q, want the secret's key then the rotation key", keys)
	}
}
