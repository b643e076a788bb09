package jobs

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/parkd/parkd/domain"
)

// Check refuses a request that parkd could not store as it was sent: an
// instant outside the years parkd accepts (CheckInstants), or a string holding
// the NUL character, which no identifier, plate or reason contains and
// Postgres's text cannot hold. Both are bad_request rejections naming the
// field. The constructors check it, and the worker again, since a payload may
// come from anywhere.
func Check(req Request) error {
	if f := NULField(req); f != "" {
		return domain.Reject(domain.CodeBadRequest, "%s contains the NUL character, which is not text", f)
	}
	return req.CheckInstants()
}

// NULField names (by JSON name, with [i] for list items: "paid_hours[0].from")
// the first string in v that holds the NUL character, or "" when none does. v
// is a struct, a pointer to one, or any value encoding/json decodes into.
func NULField(v any) string {
	return nulField(reflect.ValueOf(v), "")
}

func nulField(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return nulField(v.Elem(), path)
	case reflect.String:
		if strings.ContainsRune(v.String(), 0) {
			if path == "" {
				return "value"
			}
			return path
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if f := nulField(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); f != "" {
				return f
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			name := fmt.Sprint(it.Key().Interface())
			if strings.ContainsRune(name, 0) {
				return join(path, "(a key)")
			}
			if f := nulField(it.Value(), join(path, name)); f != "" {
				return f
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			p := path // an embedded struct's fields are the outer one's
			if !sf.Anonymous || name != "" {
				if name == "" {
					name = sf.Name
				}
				p = join(path, name)
			}
			if f := nulField(v.Field(i), p); f != "" {
				return f
			}
		}
	}
	return ""
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
