package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// MaskPlatesInJSON is JSON document b with the value of every "plate" key (at
// any depth, in any case) masked with MaskPlate, normalised first when it is a
// plate, so that "AB-12-CD" and "ab12cd" show alike, as in the logs. It is the
// one masking of what operators read as JSON: the console's task payloads and
// results, request outcomes. indent "" gives compact JSON; numbers keep every
// digit. It fails when b is not exactly one JSON document.
func MaskPlatesInJSON(b []byte, indent string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(maskPlates(v)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

func maskPlates(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && strings.EqualFold(k, "plate") {
				if n, err := NormalizePlate(s); err == nil {
					s = n
				}
				t[k] = MaskPlate(s)
			} else {
				t[k] = maskPlates(x)
			}
		}
	case []any:
		for i := range t {
			t[i] = maskPlates(t[i])
		}
	}
	return v
}
