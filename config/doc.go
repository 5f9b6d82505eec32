// Package config reads the worker's YAML file: strictly (an unknown key is an
// error naming it and its line), with ${ENV} expansion for secrets, defaults
// filled in and every value validated once, before anything starts.
package config

//go:generate go run ../internal/configdoc/gen -root .. -o ../docs/configuration.md
