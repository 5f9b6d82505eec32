package bearer_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/courierhq/courier/internal/bearer"
)

func TestTheSchemeIsMatchedInAnyCase(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
		"Basic abc": "", "abc": "", "Bearer ": "", "": "",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		got, ok := bearer.FromRequest(r)
		if got != want || ok != (want != "") {
			t.Errorf("%q: %q %v, want %q", header, got, ok, want)
		}
	}
	if bearer.Equal("", "") {
		t.Error("an empty token matched an empty configured one")
	}
}

func TestRepeatedWrongTokensFromOneAddressAreSlowedDown(t *testing.T) {
	const token = "right-token"
	h := bearer.NewThrottle().Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got, ok := bearer.FromRequest(r); !ok || !bearer.Equal(got, token) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	try := func(addr, tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	unauthorized := 0
	for range 100 {
		rec := try("192.0.2.7:4000", "guess")
		if rec.Code == http.StatusTooManyRequests {
			if rec.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
		unauthorized++
	}
	if unauthorized != 20 {
		t.Errorf("%d wrong tokens answered 401 before 429, want 20", unauthorized)
	}
	if rec := try("192.0.2.7:4001", token); rec.Code != http.StatusTooManyRequests {
		t.Errorf("the throttled address (another port) got %d: its token must not be looked at", rec.Code)
	}
	if rec := try("198.51.100.1:4000", token); rec.Code != http.StatusOK {
		t.Errorf("another address got %d", rec.Code)
	}
}
