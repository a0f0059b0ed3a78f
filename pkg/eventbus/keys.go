package eventbus

import (
	"fmt"
	"regexp"
	"strings"
)

// Bucket names. Each is a JetStream KV bucket, which is a stream, so every
// write is both the stored state and an event that consumers receive.
const (
	// ResourceBucket holds the SCIM state: users, groups and memberships.
	ResourceBucket = "scim"
	// StatusBucket holds the applier's sync status per member.
	StatusBucket = "sync_status"
)

// ResourceStream is the stream behind ResourceBucket.
const ResourceStream = "KV_" + ResourceBucket

// ResourceSubjectPrefix is the subject prefix of ResourceBucket's keys.
const ResourceSubjectPrefix = "$KV." + ResourceBucket + "."

var keyToken = regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)

// MaxTokenLen is the longest token of a key (an id, a tenant name).
const MaxTokenLen = 256

// MaxKeyLen is the longest key (or filter) the store sends to NATS. A key is
// part of a subject, and a subject longer than the server's control line
// (4 KiB by default) makes the server close the whole connection — every
// service sharing it — so longer keys are refused before anything is sent.
const MaxKeyLen = 1024

// ValidToken reports whether s can be one token of a key (ids, tenant
// names): 1 to MaxTokenLen characters of A-Z a-z 0-9 _ = -. Check every
// user-supplied token with it before building a key or subject.
func ValidToken(s string) bool { return len(s) <= MaxTokenLen && keyToken.MatchString(s) }

// kvKey is what JetStream KV accepts as a key (nats.go's rule), without
// empty tokens.
var kvKey = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

// ValidKey reports whether k can be sent as a key of the store: at most
// MaxKeyLen characters, non-empty dot-separated tokens of the characters
// JetStream KV allows (no wildcards, spaces or control characters).
func ValidKey(k string) bool { return len(k) <= MaxKeyLen && kvKey.MatchString(k) }

// ValidFilter is ValidKey for a ListKeys filter: tokens may also be the
// wildcards "*" and (last) ">".
func ValidFilter(f string) bool {
	if len(f) > MaxKeyLen || f == "" {
		return false
	}
	parts := strings.Split(f, ".")
	for i, p := range parts {
		switch {
		case p == "*":
		case p == ">" && i == len(parts)-1:
		case p != "" && kvKey.MatchString(p):
		default:
			return false
		}
	}
	return true
}

// checkKey refuses a key that must not be sent (see MaxKeyLen).
func checkKey(op, k string) error {
	if ValidKey(k) {
		return nil
	}
	return fmt.Errorf("eventbus: %s: %w: %s", op, ErrInvalidKey, describeKey(k))
}

// describeKey names a bad key in an error without echoing a huge input.
func describeKey(k string) string {
	if len(k) > 64 {
		return fmt.Sprintf("%q… (%d bytes; at most %d)", k[:64], len(k), MaxKeyLen)
	}
	return fmt.Sprintf("%q", k)
}

// UserKey is the key of a user record.
func UserKey(tenant, userID string) string { return tenant + ".u." + userID }

// GroupKey is the key of a group record.
func GroupKey(tenant, groupID string) string { return tenant + ".g." + groupID }

// MemberKey is the key of one (group, user) membership record.
func MemberKey(tenant, groupID, userID string) string {
	return tenant + ".m." + groupID + "." + userID
}

// GroupMembersFilter matches every membership key of one group.
func GroupMembersFilter(tenant, groupID string) string { return tenant + ".m." + groupID + ".*" }

// UserGroupsFilter matches every membership key of one user.
func UserGroupsFilter(tenant, userID string) string { return tenant + ".m.*." + userID }

// StatusKey is the key of a member's sync status in StatusBucket.
func StatusKey(tenant, guildID, userID string) string { return tenant + "." + guildID + "." + userID }

// Key is a parsed ResourceBucket key.
type Key struct {
	Tenant  string
	Kind    string // "u", "g" or "m"
	ID      string // user or group id
	GroupID string // memberships only
	UserID  string // memberships only
}

// ParseKey parses a key (or a "$KV.scim." subject) of ResourceBucket.
func ParseKey(k string) (Key, error) {
	k = strings.TrimPrefix(k, ResourceSubjectPrefix)
	parts := strings.Split(k, ".")
	switch {
	case len(parts) == 3 && (parts[1] == "u" || parts[1] == "g"):
		return Key{Tenant: parts[0], Kind: parts[1], ID: parts[2]}, nil
	case len(parts) == 4 && parts[1] == "m":
		return Key{Tenant: parts[0], Kind: "m", GroupID: parts[2], UserID: parts[3]}, nil
	}
	return Key{}, fmt.Errorf("eventbus: not a resource key: %q", k)
}
