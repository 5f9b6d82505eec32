package worker

import (
	"fmt"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/internal/nkeyseed"
	"github.com/courierhq/courier/outbox"
)

// Credentials are what the worker and its commands present to the outbox.
func credentials(cfg *config.File) outbox.Credentials {
	a := cfg.Outbox.Auth
	return outbox.Credentials{User: a.User, Password: a.Password, NkeySeedFile: a.NkeySeedFile, CAFile: cfg.Outbox.TLS.CAFile}
}

// ServerUsers are the clients the embedded server admits: the worker,
// then the producers.
func serverUsers(cfg *config.File) ([]outbox.AuthUser, error) {
	a := cfg.Outbox.Auth
	if !a.On() {
		return nil, nil
	}
	var users []outbox.AuthUser
	if a.NkeySeedFile != "" {
		pub, err := nkeyseed.Public(a.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("outbox.auth.nkey_seed_file: %w", err)
		}
		users = append(users, outbox.AuthUser{Nkey: pub})
	} else {
		users = append(users, outbox.AuthUser{User: a.User, Password: a.Password})
	}
	for _, p := range a.Producers {
		users = append(users, outbox.AuthUser{User: p.User, Password: p.Password, Nkey: p.Nkey, Producer: true})
	}
	return users, nil
}

// tlsFiles are a listener's TLS files as the outbox takes them.
func tlsFiles(t config.ListenerTLS) outbox.TLSFiles {
	return outbox.TLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
}
