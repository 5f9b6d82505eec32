package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/courierhq/courier/config"
)

// Settings returns the settings in force: the file's, with every stored
// override applied. Overrides that do not apply (no longer valid here) are
// returned in errs and skipped.
func (r *Registry) Settings(ctx context.Context) (config.Settings, []error, error) {
	overrides, err := r.Overrides(ctx)
	if err != nil {
		return r.base, nil, err
	}
	s, errs := r.base.WithOverrides(overrides)
	return s, errs, nil
}

// Overrides returns the values set with `worker config set`, by name.
func (r *Registry) Overrides(ctx context.Context) (map[string]string, error) {
	all, err := r.settings.All(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(all))
	for k, v := range all {
		out[k] = string(v)
	}
	return out, nil
}

// Set validates a setting against the settings in force and stores it;
// every node applies it.
func (r *Registry) Set(ctx context.Context, name, value string) error {
	s, _, err := r.Settings(ctx)
	if err != nil {
		return err
	}
	if err := s.Set(name, value); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// A default that would make a stored sink invalid (say, retry-initial
	// above a sink's own retry.max_interval) would stop that sink, and the
	// nodes whose file defines it, from starting.
	recs, err := r.Records(ctx)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if _, err := r.parse([]byte(rec.Definition), rec.Origin, s.Sink); err != nil {
			return fmt.Errorf("%w: with %s %s, sink %s would no longer be valid: %w", ErrInvalid, name, value, rec.Name, err)
		}
	}
	return r.settings.Put(ctx, name, []byte(value))
}

// Reset removes a setting's override ("all": every override), so the
// file's value or the built-in default applies again.
func (r *Registry) Reset(ctx context.Context, name string) error {
	if name == "all" {
		overrides, err := r.Overrides(ctx)
		if err != nil {
			return err
		}
		for k := range overrides {
			if err := r.settings.Delete(ctx, k); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := r.base.Get(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := r.settings.Delete(ctx, name); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	return nil
}

// Fingerprint names a set of overrides: a node reports the fingerprint of
// the overrides it applied, and a command that changed one waits until
// every node up reports the fingerprint of the overrides it left.
func Fingerprint(overrides map[string]string) string {
	names := make([]string, 0, len(overrides))
	for k := range overrides {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + "=" + overrides[k] + "\n")
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}
