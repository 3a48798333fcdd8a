package config

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"
)

// Setting is one variable of the effective configuration, as `ctmflow
// config` prints it.
type Setting struct {
	// Name is the environment variable.
	Name string
	// Value is the effective value, masked when it is a secret.
	Value string
	// Default is the value used when the variable is unset; empty when
	// there is none.
	Default string
	// Source says where Value came from: "env", "default" or "unset".
	Source string
}

// Sources of a setting.
const (
	SourceEnv     = "env"
	SourceDefault = "default"
	SourceUnset   = "unset"
)

// Masked is what a secret's value prints as.
const Masked = "********"

// Settings lists every variable Config reads, in declaration order, with
// its effective value. environ says which variables were set (nil: the
// process environment). Secrets are masked by the field's mask tag:
// "secret" hides the value, "url" hides a URL's password (and the whole
// value when it does not parse); webhook secrets show their accounts
// only.
func (c *Config) Settings(environ map[string]string) []Setting {
	if environ == nil {
		environ = processEnv()
	}
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make([]Setting, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		s := Setting{
			Name:    name,
			Value:   display(f.Tag.Get("mask"), v.Field(i).Interface()),
			Default: f.Tag.Get("envDefault"),
			Source:  SourceUnset,
		}
		switch _, set := environ[name]; {
		case set:
			s.Source = SourceEnv
		case s.Default != "":
			s.Source = SourceDefault
		}
		out = append(out, s)
	}
	return out
}

// Names lists every environment variable Config reads.
func Names() []string {
	t := reflect.TypeFor[Config]()
	var out []string
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("env"); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// display renders a value for printing, masked as the field's tag says.
func display(how string, v any) string {
	var s string
	switch x := v.(type) {
	case Secrets, APIKeys:
		// Which accounts are configured is useful; their secrets never.
		ids := strings.Split(x.(fmt.Stringer).String(), ",")
		for i, id := range ids {
			if id != "" {
				ids[i] = id + "=" + Masked
			}
		}
		return strings.Join(ids, ",")
	case time.Duration:
		s = x.String()
	default:
		s = fmt.Sprint(v)
	}
	if s == "" {
		return ""
	}
	switch how {
	case "secret":
		return Masked
	case "url":
		if _, err := url.Parse(s); err != nil {
			return Masked
		}
		return RedactURL(s)
	}
	return s
}

func processEnv() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}
