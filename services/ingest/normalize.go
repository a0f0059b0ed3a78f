package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// snowflakeRe is the Discord extension's userId: 17 to 20 digits.
var snowflakeRe = regexp.MustCompile(`^[0-9]{17,20}$`)

// decodeObject decodes a JSON object, keeping numbers exact (a snowflake
// sent as a number must be refused, not rounded).
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest(scimInvalidSyntax, "request body is not valid JSON: %s", jsonErrText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest(scimInvalidSyntax, "request body has data after the JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest(scimInvalidSyntax, "request body must be a JSON object")
	}
	return m, nil
}

func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "malformed JSON"
}

// normalize turns a client's resource representation into the canonical
// form: attribute names spelled as in the schema (names are
// case-insensitive, RFC 7643 §2.1), values type-checked, read-only and
// unknown attributes dropped (consistently: RFC 7644 §3.3 lets a service
// provider ignore them), empty values removed, and the write-only password
// discarded.
func normalize(k resourceKind, in map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for key, v := range in {
		if strings.EqualFold(key, "schemas") {
			continue
		}
		if ext := extensionByURN(k, key); ext != nil {
			obj, ok := v.(map[string]any)
			if v == nil {
				continue
			}
			if !ok {
				return nil, badRequest(scimInvalidValue, "%s must be an object", ext.ID)
			}
			norm := map[string]any{}
			for sk, sv := range obj {
				a := ext.attr(sk)
				if a == nil {
					continue
				}
				nv, err := normalizeValue(ext.ID, a, sv)
				if err != nil {
					return nil, err
				}
				if nv != nil {
					norm[a.Name] = nv
				}
			}
			if len(norm) > 0 {
				out[ext.ID] = norm
			}
			continue
		}
		urn, rest := splitURNPath(k, key)
		if urn != "" && extensionByURN(k, urn) != nil {
			// Dialect "flat extension key" (Entra): "urn:…:User:department": value.
			if err := setFlat(k, out, urn, rest, v); err != nil {
				return nil, err
			}
			continue
		}
		_, a := lookupAttr(k, urn, rest)
		if a == nil || a.Mutability == "readOnly" || a.Mutability == "writeOnly" {
			continue
		}
		nv, err := normalizeValue("", a, v)
		if err != nil {
			return nil, err
		}
		if nv != nil {
			out[a.Name] = nv
		}
	}
	return out, nil
}

// setFlat stores an extension attribute given as "attr" or "attr.sub".
func setFlat(k resourceKind, out map[string]any, urn, rest string, v any) error {
	ext := extensionByURN(k, urn)
	name, sub, _ := strings.Cut(rest, ".")
	a := ext.attr(name)
	if a == nil {
		return nil
	}
	obj, _ := out[ext.ID].(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	if sub != "" {
		if v != nil {
			v = map[string]any{sub: v}
		}
	}
	nv, err := normalizeValue(ext.ID, a, v)
	if err != nil {
		return err
	}
	if nv == nil {
		delete(obj, a.Name)
	} else if sub != "" {
		cur, _ := obj[a.Name].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		for kk, vv := range nv.(map[string]any) {
			cur[kk] = vv
		}
		obj[a.Name] = cur
	} else {
		obj[a.Name] = nv
	}
	if len(obj) > 0 {
		out[ext.ID] = obj
	} else {
		delete(out, ext.ID)
	}
	return nil
}

// normalizeValue checks and canonicalises the value of attribute a; nil
// means "no value".
func normalizeValue(urn string, a *attr, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if a.Multi {
		arr, ok := v.([]any)
		if !ok {
			if _, isObj := v.(map[string]any); isObj || a.Type != tComplex {
				arr = []any{v} // a single value where a list is expected: lenient
			} else {
				return nil, badRequest(scimInvalidValue, "%s must be an array", a.Name)
			}
		}
		var out []any
		for _, e := range arr {
			nv, err := normalizeSingle(urn, a, e)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				out = append(out, nv)
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		if a.sub("primary") != nil && countPrimary(out) > 1 {
			// RFC 7643 §2.4: the primary attribute value "true" MUST appear
			// no more than once.
			return nil, badRequest(scimInvalidValue, "%s has more than one value with primary true", a.Name)
		}
		return out, nil
	}
	return normalizeSingle(urn, a, v)
}

func normalizeSingle(urn string, a *attr, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if arr, ok := v.([]any); ok && !a.Multi {
		if a.Type != tComplex {
			// `{"userName": ["a"]}`: a simple single-valued attribute takes
			// one value, not a list (RFC 7643 §2.3).
			return nil, badRequest(scimInvalidValue, "%s is single-valued: a value, not an array", a.Name)
		}
		// Dialect "single value as a one-element array" (Entra sends the
		// manager as [{"value": "…"}]); an empty array clears the attribute.
		switch len(arr) {
		case 0:
			return nil, nil
		case 1:
			v = arr[0]
		default:
			return nil, badRequest(scimInvalidValue, "%s is single-valued", a.Name)
		}
	}
	if a.Type == tComplex {
		obj, ok := v.(map[string]any)
		if !ok {
			if a.Multi || a.sub("value") != nil {
				// Dialect "bare value for a complex attribute" (Entra sends the
				// enterprise manager as a plain id string): it is the "value".
				obj = map[string]any{"value": v}
			} else {
				return nil, badRequest(scimInvalidValue, "%s must be an object", a.Name)
			}
		}
		out := map[string]any{}
		for sk, sv := range obj {
			s := a.sub(sk)
			if s == nil || s.Mutability == "readOnly" && a.Name != "members" && a.Name != "groups" {
				continue
			}
			if s.Type == tString && !namesResource(a) {
				// `"emails": [1, 2]`: a number or boolean is not an e-mail
				// (RFC 7643 §2.3.1); only ids of members/manager are read
				// leniently from a number.
				switch sv.(type) {
				case json.Number, bool, float64:
					return nil, badRequest(scimInvalidValue, "%s.%s must be a string", a.Name, s.Name)
				}
			}
			nv, err := normalizeSingle(urn, s, sv)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				out[s.Name] = nv
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	name := a.Name
	if urn == SchemaDiscord && a.Name == discordUserIDAttr {
		s, ok := v.(string)
		if !ok {
			return nil, badRequest(scimInvalidValue, "%s:%s must be a string of 17 to 20 digits (a JSON number loses precision)", SchemaDiscord, discordUserIDAttr)
		}
		if s == "" {
			return nil, nil
		}
		if !snowflakeRe.MatchString(s) {
			return nil, badRequest(scimInvalidValue, "%s:%s must be a string of 17 to 20 digits", SchemaDiscord, discordUserIDAttr)
		}
		// One id, one spelling: uniqueness is checked on the text, so a
		// leading zero would let a second user claim the same snowflake,
		// and Discord ids are unsigned 64-bit integers.
		if n, err := strconv.ParseUint(s, 10, 64); err != nil || strconv.FormatUint(n, 10) != s {
			return nil, badRequest(scimInvalidValue, "%s:%s %q is not a Discord id (an unsigned 64-bit integer without leading zeros)", SchemaDiscord, discordUserIDAttr, s)
		}
		return s, nil
	}
	switch a.Type {
	case tBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			// Dialect "boolean as string" (Entra sends "True"/"False").
			switch strings.ToLower(strings.TrimSpace(b)) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, badRequest(scimInvalidValue, "%s must be a boolean", name)
	case tInteger, tDecimal:
		switch n := v.(type) {
		case json.Number:
			return n, nil
		case float64:
			return json.Number(strconv.FormatFloat(n, 'g', -1, 64)), nil
		}
		return nil, badRequest(scimInvalidValue, "%s must be a number", name)
	default:
		switch s := v.(type) {
		case string:
			return s, nil
		case bool:
			if name == "value" || name == "display" {
				return strconv.FormatBool(s), nil
			}
		case json.Number:
			if name == "value" {
				return s.String(), nil
			}
		}
		return nil, badRequest(scimInvalidValue, "%s must be a string", name)
	}
}

// isPrimary reports whether a value of a multi-valued attribute is marked
// primary (a boolean, or Entra's "True" string before normalisation).
func isPrimary(el any) bool {
	m, ok := el.(map[string]any)
	if !ok {
		return false
	}
	switch v := getFold(m, "primary").(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(strings.TrimSpace(v), "true")
	}
	return false
}

func countPrimary(list []any) int {
	n := 0
	for _, el := range list {
		if isPrimary(el) {
			n++
		}
	}
	return n
}

// clearPrimary removes the primary flag of every value of list except
// those keep reports (RFC 7644 §3.5.2.1: a new primary value makes the
// previous one non-primary).
func clearPrimary(list []any, keep func(i int) bool) {
	for i, el := range list {
		if m, ok := el.(map[string]any); ok && !keep(i) {
			for k := range m {
				if strings.EqualFold(k, "primary") {
					delete(m, k)
				}
			}
		}
	}
}

// checkKeyCase refuses an object with two keys that differ only in case
// (`{"userName":"a","USERNAME":"b"}`), at any depth: SCIM attribute names
// are case-insensitive (RFC 7643 §2.1), so which one applies would be
// chosen by map order. 400 invalidSyntax.
func checkKeyCase(v any, depth int) error {
	if depth > 64 {
		return nil // encoding/json limits nesting anyway; bound the recursion
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) > 1 {
			seen := make(map[string]string, len(x))
			for k := range x {
				lk := strings.ToLower(k)
				if other, dup := seen[lk]; dup {
					a, b := min(k, other), max(k, other)
					return badRequest(scimInvalidSyntax, "keys %q and %q differ only in case (attribute names are case-insensitive)", truncate(a, 100), truncate(b, 100))
				}
				seen[lk] = k
			}
		}
		for _, e := range x {
			if err := checkKeyCase(e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkKeyCase(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// namesResource reports whether a complex attribute's value is a resource
// id (members, groups, the enterprise manager).
func namesResource(a *attr) bool {
	return a.Name == "members" || a.Name == "groups" || a.Name == "manager"
}
