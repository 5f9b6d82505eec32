package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"
)

// sign and signed keep an action's message to the session that did it.
func sign(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func signed(key, msg, sig string) bool {
	return sig != "" && hmac.Equal([]byte(sig), []byte(sign(key, msg)))
}

var funcs = template.FuncMap{
	"ago":      ago,
	"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"duration": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"bytes":    humanBytes,
	"perMin":   perMin,
	"pretty":   prettyJSON,
	"list":     func(v ...string) []string { return v },
	"stateClass": func(state string) string {
		switch {
		case strings.HasPrefix(state, "enabled"), state == "delivered":
			return "ok"
		case strings.HasPrefix(state, "circuit"), state == "pending", state == "retried":
			return "warn"
		default:
			return "bad"
		}
	},
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
}

// ago says how long ago, at a glance.
func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// perMin is a count over window as a rate per minute.
func perMin(n int64, window time.Duration) string {
	if window <= 0 {
		return "–"
	}
	r := float64(n) / window.Minutes()
	if r >= 10 || r == 0 {
		return fmt.Sprintf("%.0f/min", r)
	}
	return fmt.Sprintf("%.1f/min", r)
}

// prettyJSON indents an event's data; what is not JSON shows as it is.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(raw)
	}
	return string(out)
}
