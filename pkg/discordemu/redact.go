package discordemu

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
)

// Redacted replaces secret values in recorded requests and responses.
const Redacted = "[redacted]"

// secretKeys are the body, form and query keys whose string values the recorder
// never stores: OAuth2 client secrets, codes, PKCE verifiers and tokens.
var secretKeys = map[string]bool{
	"client_secret": true, "code": true, "code_verifier": true,
	"access_token": true, "refresh_token": true, "token": true,
}

// redactRecord removes secrets from a record before it is stored: string values
// of secretKeys anywhere in a JSON body (request or response), values of those
// keys in a form body and in the query. Only string values are replaced, so a
// Discord error's numeric "code" stays. A body is re-encoded only when it
// contained a secret.
func redactRecord(rec *Record) {
	if len(rec.BodyJSON) > 0 {
		if b, ok := redactJSON(rec.BodyJSON); ok {
			rec.BodyJSON = b
			rec.BodyRaw = string(b)
		}
	} else if rec.BodyRaw != "" {
		rec.BodyRaw = redactForm(rec.BodyRaw)
	}
	if rec.ResponseBody != "" {
		if b, ok := redactJSON([]byte(rec.ResponseBody)); ok {
			rec.ResponseBody = string(b)
		}
	}
	for k, vs := range rec.Query {
		if secretKeys[k] {
			red := make([]string, len(vs))
			for i := range red {
				red[i] = Redacted
			}
			rec.Query[k] = red
		}
	}
}

// redactJSON returns the document with secret string values replaced, and
// whether anything was replaced.
func redactJSON(b []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	if !redactValue(v) {
		return nil, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return out, true
}

func redactValue(v any) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if _, isStr := e.(string); isStr && secretKeys[k] {
				x[k] = Redacted
				changed = true
				continue
			}
			changed = redactValue(e) || changed
		}
	case []any:
		for _, e := range x {
			changed = redactValue(e) || changed
		}
	}
	return changed
}

// redactForm replaces the values of secret keys in an
// application/x-www-form-urlencoded body, keeping everything else verbatim.
func redactForm(body string) string {
	parts := strings.Split(body, "&")
	changed := false
	for i, p := range parts {
		k, _, hasEq := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if secretKeys[name] && hasEq {
			parts[i] = k + "=" + Redacted
			changed = true
		}
	}
	if !changed {
		return body
	}
	return strings.Join(parts, "&")
}
