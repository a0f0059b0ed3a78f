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

// ValidToken reports whether s can be one token of a key (ids, tenant names).
func ValidToken(s string) bool { return keyToken.MatchString(s) }

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
