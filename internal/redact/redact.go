// Package redact removes secrets from what the harness writes or prints:
// artifacts, the matrix's evidence and log lines. A failing CNI pod's logs,
// a pod's environment or a provider's console can hold tokens, keys and
// kubeconfigs, and all of them end up in CI logs and uploaded bundles.
package redact

import (
	"reflect"
	"regexp"
)

// Marker replaces what was removed.
const Marker = "REDACTED"

// patterns are replaced whole; keyed patterns keep their key (group 1).
var (
	patterns = []*regexp.Regexp{
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----`),
		// A key whose end was cut off (a log tail, an excerpt) is still a key.
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*`),
		regexp.MustCompile(`-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----`),
		regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`),                                 // kubeadm bootstrap tokens
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`), // JWTs (service account tokens)
	}
	keyed = []*regexp.Regexp{
		regexp.MustCompile(`(?i)((?:client-key-data|client-certificate-data|certificate-authority-data|token|password|passwd|secret|api[-_]?key)["']?\s*[:=]\s*["']?)[^\s"',}]+`),
		// "Basic" only as an Authorization scheme: "basic connectivity" is prose.
		regexp.MustCompile(`(?i)(\bbearer\s+|\bauthorization:\s*basic\s+)[A-Za-z0-9._~+/=-]{8,}`),
	}
)

// Bytes returns b with secrets, tokens, certificates and keys replaced by
// Marker.
func Bytes(b []byte) []byte {
	for _, re := range patterns {
		b = re.ReplaceAll(b, []byte(Marker))
	}
	for _, re := range keyed {
		b = re.ReplaceAll(b, []byte("${1}"+Marker))
	}
	return b
}

// String is Bytes for a string.
func String(s string) string {
	if s == "" {
		return s
	}
	return string(Bytes([]byte(s)))
}

// Strings redacts, in place, every exported string reachable from v (a
// pointer to a struct, e.g. a cell's result with its evidence).
func Strings(v any) {
	walk(reflect.ValueOf(v))
}

func walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walk(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walk(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.String {
				v.SetMapIndex(k, reflect.ValueOf(String(e.String())).Convert(e.Type()))
				continue
			}
			// Map values are not addressable: redact a copy and put it back.
			c := reflect.New(e.Type()).Elem()
			c.Set(e)
			walk(c)
			v.SetMapIndex(k, c)
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(String(v.String()))
		}
	}
}
