package scimcord

import (
	"strings"
	"testing"
)

// TestConfig_RefusesTheSCIMTokenAsAdminToken: one secret for both would let
// every IdP operate scimcord (the admin API answered 200 with the SCIM token).
func TestConfig_RefusesTheSCIMTokenAsAdminToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, admin, dev string
		ok               bool
	}{
		{"same token", "x-shared-token-0123456789", "x-shared-token-0123456789", false},
		{"different tokens", "admin-token-0123456789", "scim-token-0123456789", true},
		{"admin generated", "", "scim-token-0123456789", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.AdminToken, c.DevToken = tc.admin, tc.dev
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "must differ") || strings.Contains(err.Error(), tc.admin)) {
				t.Fatalf("error %q: want a clear reason without the token", err)
			}
		})
	}
}
