package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/courierhq/courier/internal/netguard"
)

// Settings are what operators change at run time on every node at once,
// like Gluster's config-set: the log level and the defaults of sinks that
// do not set their own.
type Settings struct {
	LogLevel string
	Sink     SinkDefaults
	// EventPurgeDelay is how many days the event log keeps an event (0:
	// for ever), and EventPurgeInterval how often it purges, as
	// CloudStack's event.purge.delay and event.purge.interval.
	EventPurgeDelay    int
	EventPurgeInterval time.Duration
}

// Event log purge defaults, CloudStack's.
const (
	DefaultEventPurgeDelay    = 15 // days
	DefaultEventPurgeInterval = 24 * time.Hour
)

// Setting describes one name `worker config get|set|reset` accepts.
type Setting struct {
	Name        string
	Description string
	get         func(Settings) string
	set         func(*Settings, string) error
}

var settings = []Setting{
	{
		Name: "log-level", Description: "log level of every worker: debug, info, warn or error",
		get: func(s Settings) string { return s.LogLevel },
		set: func(s *Settings, v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				s.LogLevel = v
				return nil
			}
			return fmt.Errorf("want debug, info, warn or error, got %q", v)
		},
	},
	{
		Name: "concurrency", Description: "deliveries in flight per sink and node, for sinks that do not set concurrency",
		get: func(s Settings) string { return strconv.Itoa(s.Sink.Concurrency) },
		set: func(s *Settings, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4096 {
				return fmt.Errorf("want a whole number from 1 to 4096, got %q", v)
			}
			s.Sink.Concurrency = n
			return nil
		},
	},
	{
		Name: "event-purge-delay", Description: "days the event log keeps an event; 0 keeps events for ever",
		get: func(s Settings) string { return strconv.Itoa(s.EventPurgeDelay) },
		set: func(s *Settings, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 36500 {
				return fmt.Errorf("want a whole number of days from 0 (never purge) to 36500, got %q", v)
			}
			s.EventPurgeDelay = n
			return nil
		},
	},
	{
		Name: "webhook-allow", Description: "networks webhooks may reach although not public, comma-separated (e.g. 127.0.0.1/32,10.20.0.0/16); empty: none",
		get: func(s Settings) string {
			parts := make([]string, len(s.Sink.Webhook.Allow))
			for i, p := range s.Sink.Webhook.Allow {
				parts[i] = p.String()
			}
			return strings.Join(parts, ",")
		},
		set: func(s *Settings, v string) error {
			allow, err := netguard.ParseAllow(strings.Split(v, ","))
			if err != nil {
				return err
			}
			s.Sink.Webhook.Allow = allow
			return nil
		},
	},
	{
		Name: "webhook-https-only", Description: "true refuses webhooks with http:// URLs",
		get: func(s Settings) string { return strconv.FormatBool(s.Sink.Webhook.HTTPSOnly) },
		set: func(s *Settings, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false, got %q", v)
			}
			s.Sink.Webhook.HTTPSOnly = b
			return nil
		},
	},
	durationSetting("event-purge-interval", "how often the event log purges events older than event-purge-delay", func(s *Settings) *time.Duration { return &s.EventPurgeInterval }),
	durationSetting("retry-initial", "delay before the second attempt", func(s *Settings) *time.Duration { return &s.Sink.Retry.Initial }),
	durationSetting("retry-max-interval", "longest delay between two attempts", func(s *Settings) *time.Duration { return &s.Sink.Retry.MaxInterval }),
	durationSetting("retry-max-age", "how long after it was stored an undelivered event is dead-lettered", func(s *Settings) *time.Duration { return &s.Sink.Retry.MaxAge }),
	{
		Name: "retry-max-attempts", Description: "attempts (the first included) before an event is dead-lettered",
		get: func(s Settings) string { return strconv.Itoa(s.Sink.Retry.MaxAttempts) },
		set: func(s *Settings, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("want a whole number of at least 1, got %q", v)
			}
			s.Sink.Retry.MaxAttempts = n
			return nil
		},
	},
	{
		Name: "retry-multiplier", Description: "factor by which the delay grows after each failed attempt",
		get: func(s Settings) string { return strconv.FormatFloat(s.Sink.Retry.Multiplier, 'g', -1, 64) },
		set: func(s *Settings, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 1 {
				return fmt.Errorf("want a number of at least 1, got %q", v)
			}
			s.Sink.Retry.Multiplier = f
			return nil
		},
	},
}

func durationSetting(name, description string, field func(*Settings) *time.Duration) Setting {
	return Setting{
		Name: name, Description: description + " (a duration such as 30s or 2h)",
		get: func(s Settings) string { return field(&s).String() },
		set: func(s *Settings, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("want a positive duration such as 30s, got %q", v)
			}
			*field(s) = d
			return nil
		},
	}
}

// SettingNames lists every setting, sorted.
func SettingNames() []Setting {
	out := append([]Setting(nil), settings...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func lookupSetting(name string) (Setting, error) {
	for _, s := range settings {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, 0, len(settings))
	for _, s := range SettingNames() {
		names = append(names, s.Name)
	}
	return Setting{}, fmt.Errorf("unknown setting %q (known: %v)", name, names)
}

// BaseSettings are the settings before any override: the file's log level
// and webhook policy, and the built-in sink defaults.
func (f *File) BaseSettings() Settings {
	d := BuiltinSinkDefaults(f.Outbox.MaxAge)
	d.Webhook, _ = f.WebhookPolicy() // validated by Parse
	return Settings{LogLevel: f.Log.Level, Sink: d,
		EventPurgeDelay: DefaultEventPurgeDelay, EventPurgeInterval: DefaultEventPurgeInterval}
}

// Get returns a setting's value.
func (s Settings) Get(name string) (string, error) {
	st, err := lookupSetting(name)
	if err != nil {
		return "", err
	}
	return st.get(s), nil
}

// Set validates value and applies it. The resulting retry policy as a
// whole must still be valid and end before the outbox drops events.
func (s *Settings) Set(name, value string) error {
	st, err := lookupSetting(name)
	if err != nil {
		return err
	}
	next := *s
	if err := st.set(&next, value); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	if err := next.Sink.Retry.Validate(); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	if next.Sink.Retry.MaxAge >= next.Sink.OutboxMaxAge {
		return fmt.Errorf("setting %s: retry-max-age (%s) must be below outbox.max_age (%s)", name, next.Sink.Retry.MaxAge, next.Sink.OutboxMaxAge)
	}
	*s = next
	return nil
}

// WithOverrides applies stored overrides in name order. An override that
// no longer validates (say, after outbox.max_age was lowered in the file)
// is skipped and reported, so one bad value cannot stop a node.
func (s Settings) WithOverrides(overrides map[string]string) (Settings, []error) {
	var errs []error
	for _, st := range SettingNames() {
		v, ok := overrides[st.Name]
		if !ok {
			continue
		}
		if err := s.Set(st.Name, v); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range overrides {
		if _, err := lookupSetting(name); err != nil {
			errs = append(errs, err)
		}
	}
	return s, errs
}
