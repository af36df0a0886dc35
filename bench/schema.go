package bench

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// Schema is the JSON Schema (draft 2020-12) of the report that
// `usysv bench -json` writes; doc.go describes the fields.
//
//go:embed schema.json
var Schema []byte

// Validate checks a JSON report against Schema, and then what a schema
// cannot say: each speed-up is the ratio of the usysv and kernel numbers
// next to it, and p99 is not below p50.
func Validate(doc []byte) error {
	var schema any
	if err := decodeJSON(Schema, &schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	var inst any
	if err := decodeJSON(doc, &inst); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	v := &validator{root: schema}
	if err := v.check(schema, inst, "$"); err != nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(doc, &rep); err != nil {
		return err
	}
	return rep.check()
}

func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// check is the part of validation that needs arithmetic.
func (r *Report) check() error {
	for _, res := range r.Results {
		for impl, ir := range res.Impls {
			if ir.P50NS != nil && *ir.P99NS < *ir.P50NS {
				return fmt.Errorf("%s on %s: p99 %v below p50 %v", res.Case, impl, *ir.P99NS, *ir.P50NS)
			}
		}
		want := speedup(res.Kind, res.Impls[Usysv], res.Impls[Kernel])
		switch {
		case want == nil && res.Speedup != nil:
			return fmt.Errorf("%s: speedup %v without both usysv and kernel numbers", res.Case, *res.Speedup)
		case want != nil && res.Speedup == nil:
			return fmt.Errorf("%s: speedup missing (usysv and kernel both measured)", res.Case)
		case want != nil && math.Abs(*want-*res.Speedup) > 0.011*max(1, *want):
			return fmt.Errorf("%s: speedup %v, but the numbers give %v", res.Case, *res.Speedup, *want)
		}
	}
	return nil
}

// validator implements the subset of JSON Schema that schema.json uses. A
// keyword it does not know is an error, so the schema cannot silently
// claim more than is checked.
type validator struct{ root any }

var knownKeywords = map[string]bool{
	"$schema": true, "$id": true, "title": true, "description": true, "$defs": true,
	"$ref": true, "type": true, "const": true, "enum": true, "pattern": true,
	"minLength": true, "minimum": true, "exclusiveMinimum": true, "required": true,
	"properties": true, "additionalProperties": true, "propertyNames": true,
	"minProperties": true, "items": true, "anyOf": true, "oneOf": true,
}

func (v *validator) check(schema, x any, path string) error {
	if b, ok := schema.(bool); ok {
		if !b {
			return fmt.Errorf("%s: not allowed", path)
		}
		return nil
	}
	s, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("schema at %s is %T, not an object", path, schema)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		if !knownKeywords[k] {
			return fmt.Errorf("schema uses keyword %q, which the validator does not implement", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := v.keyword(k, s, x, path); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) keyword(k string, s map[string]any, x any, path string) error {
	arg := s[k]
	switch k {
	case "$ref":
		ref, _ := arg.(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := v.root.(map[string]any)["$defs"].(map[string]any)
		target, found := defs[name]
		if !ok || !found {
			return fmt.Errorf("schema: cannot resolve $ref %q", ref)
		}
		return v.check(target, x, path)
	case "type":
		var types []any
		if t, ok := arg.(string); ok {
			types = []any{t}
		} else {
			types, _ = arg.([]any)
		}
		for _, t := range types {
			if isType(x, t.(string)) {
				return nil
			}
		}
		return fmt.Errorf("%s: %s is not of type %v", path, show(x), arg)
	case "const":
		if !jsonEqual(arg, x) {
			return fmt.Errorf("%s: %s, want %s", path, show(x), show(arg))
		}
	case "enum":
		for _, e := range arg.([]any) {
			if jsonEqual(e, x) {
				return nil
			}
		}
		return fmt.Errorf("%s: %s is not one of %s", path, show(x), show(arg))
	case "pattern":
		if str, ok := x.(string); ok {
			re, err := regexp.Compile(arg.(string))
			if err != nil {
				return fmt.Errorf("schema: pattern: %w", err)
			}
			if !re.MatchString(str) {
				return fmt.Errorf("%s: %q does not match %s", path, str, arg)
			}
		}
	case "minLength":
		if str, ok := x.(string); ok && len([]rune(str)) < num(arg) {
			return fmt.Errorf("%s: %q is shorter than %v", path, str, arg)
		}
	case "minimum", "exclusiveMinimum":
		n, ok := x.(json.Number)
		if !ok {
			return nil
		}
		f, _ := n.Float64()
		lim, _ := arg.(json.Number).Float64()
		if f < lim || (k == "exclusiveMinimum" && f == lim) {
			return fmt.Errorf("%s: %v is below the %s %v", path, n, k, lim)
		}
	case "required":
		if o, ok := x.(map[string]any); ok {
			for _, r := range arg.([]any) {
				if _, has := o[r.(string)]; !has {
					return fmt.Errorf("%s: %q is missing", path, r)
				}
			}
		}
	case "properties":
		if o, ok := x.(map[string]any); ok {
			for name, sub := range arg.(map[string]any) {
				if val, has := o[name]; has {
					if err := v.check(sub, val, path+"."+name); err != nil {
						return err
					}
				}
			}
		}
	case "additionalProperties":
		o, ok := x.(map[string]any)
		if !ok {
			return nil
		}
		props, _ := s["properties"].(map[string]any)
		for _, name := range sortedKeys(o) {
			if _, listed := props[name]; listed {
				continue
			}
			if err := v.check(arg, o[name], path+"."+name); err != nil {
				return err
			}
		}
	case "propertyNames":
		if o, ok := x.(map[string]any); ok {
			for _, name := range sortedKeys(o) {
				if err := v.check(arg, name, path+" key "+name); err != nil {
					return err
				}
			}
		}
	case "minProperties":
		if o, ok := x.(map[string]any); ok && len(o) < num(arg) {
			return fmt.Errorf("%s: fewer than %v properties", path, arg)
		}
	case "items":
		if a, ok := x.([]any); ok {
			for i, el := range a {
				if err := v.check(arg, el, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case "anyOf", "oneOf":
		var errs []error
		matched := 0
		for _, sub := range arg.([]any) {
			if err := v.check(sub, x, path); err != nil {
				errs = append(errs, err)
			} else {
				matched++
			}
		}
		switch {
		case matched == 0:
			return fmt.Errorf("%s: matches none of %s: %w", path, k, errors.Join(errs...))
		case k == "oneOf" && matched > 1:
			return fmt.Errorf("%s: matches %d of oneOf", path, matched)
		}
	}
	return nil
}

func isType(x any, t string) bool {
	switch t {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "null":
		return x == nil
	case "number":
		_, ok := x.(json.Number)
		return ok
	case "integer":
		n, ok := x.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f == math.Trunc(f)
	}
	return false
}

func jsonEqual(a, b any) bool {
	na, ok1 := a.(json.Number)
	nb, ok2 := b.(json.Number)
	if ok1 && ok2 {
		fa, _ := na.Float64()
		fb, _ := nb.Float64()
		return fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func num(v any) int {
	n, _ := v.(json.Number).Int64()
	return int(n)
}

func sortedKeys(o map[string]any) []string {
	ks := make([]string, 0, len(o))
	for k := range o {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func show(x any) string {
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Sprint(x)
	}
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}
