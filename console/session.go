package console

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Session bounds: a session ends after sessionIdle without a request, and
// at most maxSessions live at once (the oldest go first).
const (
	sessionIdle = 12 * time.Hour
	maxSessions = 1024
)

// session is one signed-in browser. CSRF is the token every form it posts
// must carry.
type session struct {
	caller   Caller
	csrf     string
	lastSeen time.Time
}

// sessions are kept in memory: a restarted worker signs everyone out,
// which costs a sign-in and keeps no credential on disk.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	now  func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{byID: map[string]*session{}, now: now}
}

func (s *sessions) create(c Caller) (id string, sess session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byID {
		if now.Sub(v.lastSeen) > sessionIdle {
			delete(s.byID, k)
		}
	}
	if len(s.byID) >= maxSessions {
		var oldest string
		for k, v := range s.byID {
			if oldest == "" || v.lastSeen.Before(s.byID[oldest].lastSeen) {
				oldest = k
			}
		}
		delete(s.byID, oldest)
	}
	id = randomToken()
	ss := &session{caller: c, csrf: randomToken(), lastSeen: now}
	s.byID[id] = ss
	return id, *ss
}

func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return session{}, false
	}
	now := s.now()
	if now.Sub(ss.lastSeen) > sessionIdle {
		delete(s.byID, id)
		return session{}, false
	}
	ss.lastSeen = now
	return *ss, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
