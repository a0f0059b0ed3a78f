package ingest

import (
	"strings"
)

// Schema URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	// SchemaDiscord is the Discord extension (DESIGN §2): its userId is the
	// member's snowflake.
	SchemaDiscord     = "urn:ietf:params:scim:schemas:extension:discord:2.0:User"
	schemaListResp    = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	schemaError       = "urn:ietf:params:scim:api:messages:2.0:Error"
	schemaBulkResp    = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
	schemaSPC         = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaResType     = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSchema      = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	discordUserIDAttr = "userId"
)

// attrType is a SCIM attribute type (RFC 7643 §2.3).
type attrType string

const (
	tString    attrType = "string"
	tBool      attrType = "boolean"
	tDecimal   attrType = "decimal"
	tInteger   attrType = "integer"
	tDateTime  attrType = "dateTime"
	tReference attrType = "reference"
	tComplex   attrType = "complex"
)

// attr describes one attribute; the same table drives /Schemas, the
// canonical spelling of incoming keys, filter validation and caseExact.
type attr struct {
	Name        string
	Type        attrType
	Multi       bool
	Required    bool
	CaseExact   bool
	Mutability  string // readWrite (default), readOnly, immutable, writeOnly
	Returned    string // default (default), always, never, request
	Uniqueness  string // none (default), server
	Description string
	RefTypes    []string
	Canonical   []string
	Sub         []*attr
}

func (a *attr) sub(name string) *attr {
	for _, s := range a.Sub {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// schemaDef is one schema (core or extension).
type schemaDef struct {
	ID, Name, Description string
	Attrs                 []*attr
}

func (s *schemaDef) attr(name string) *attr {
	for _, a := range s.Attrs {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

func str(name, desc string) *attr { return &attr{Name: name, Type: tString, Description: desc} }

func multiSub(extra ...*attr) []*attr {
	return append([]*attr{
		str("value", "The attribute's significant value."),
		str("display", "A human-readable name, primarily used for display purposes."),
		{Name: "type", Type: tString, Description: "A label indicating the attribute's function."},
		{Name: "primary", Type: tBool, Description: "Indicates the 'primary' or preferred attribute value."},
	}, extra...)
}

var metaAttr = &attr{Name: "meta", Type: tComplex, Mutability: "readOnly", Description: "Resource metadata.", Sub: []*attr{
	{Name: "resourceType", Type: tString, Mutability: "readOnly", CaseExact: true},
	{Name: "created", Type: tDateTime, Mutability: "readOnly"},
	{Name: "lastModified", Type: tDateTime, Mutability: "readOnly"},
	{Name: "location", Type: tReference, Mutability: "readOnly", CaseExact: true, RefTypes: []string{"uri"}},
	{Name: "version", Type: tString, Mutability: "readOnly", CaseExact: true},
}}

// commonAttrs are the attributes every resource has (RFC 7643 §3.1).
var commonAttrs = []*attr{
	{Name: "id", Type: tString, CaseExact: true, Mutability: "readOnly", Returned: "always", Uniqueness: "server", Description: "Unique identifier for the resource, assigned by the service provider."},
	{Name: "externalId", Type: tString, CaseExact: true, Description: "Identifier of the resource as defined by the provisioning client."},
	metaAttr,
}

var userSchema = &schemaDef{ID: SchemaUser, Name: "User", Description: "User Account", Attrs: []*attr{
	{Name: "userName", Type: tString, Required: true, Returned: "always", Uniqueness: "server", Description: "Unique identifier for the User, used to authenticate; case-insensitive."},
	{Name: "name", Type: tComplex, Description: "The components of the user's real name.", Sub: []*attr{
		str("formatted", "The full name."), str("familyName", "The family name."), str("givenName", "The given name."),
		str("middleName", "The middle name(s)."), str("honorificPrefix", "The honorific prefix(es)."), str("honorificSuffix", "The honorific suffix(es)."),
	}},
	str("displayName", "The name of the User, suitable for display to end-users."),
	str("nickName", "The casual way to address the user."),
	{Name: "profileUrl", Type: tReference, RefTypes: []string{"external"}, Description: "A URI to the user's online profile."},
	str("title", "The user's title."),
	str("userType", "The relationship between the organization and the user."),
	str("preferredLanguage", "The user's preferred written or spoken language."),
	str("locale", "The user's default location."),
	str("timezone", "The user's time zone."),
	{Name: "active", Type: tBool, Description: "The user's administrative status."},
	{Name: "password", Type: tString, Mutability: "writeOnly", Returned: "never", Description: "Accepted and discarded: Discord has no password."},
	{Name: "emails", Type: tComplex, Multi: true, Description: "Email addresses for the user.", Sub: multiSub()},
	{Name: "phoneNumbers", Type: tComplex, Multi: true, Description: "Phone numbers for the user.", Sub: multiSub()},
	{Name: "ims", Type: tComplex, Multi: true, Description: "Instant messaging addresses for the user.", Sub: multiSub()},
	{Name: "photos", Type: tComplex, Multi: true, Description: "URLs of photos of the user.", Sub: multiSub()},
	{Name: "addresses", Type: tComplex, Multi: true, Description: "A physical mailing address for this user.", Sub: []*attr{
		str("formatted", "The full mailing address."), str("streetAddress", "The street address."), str("locality", "The city or locality."),
		str("region", "The state or region."), str("postalCode", "The zip code or postal code."), str("country", "The country name."),
		str("type", "A label indicating the attribute's function."), {Name: "primary", Type: tBool},
	}},
	{Name: "groups", Type: tComplex, Multi: true, Mutability: "readOnly", Description: "Groups the user belongs to (read-only; change group membership on the Group).", Sub: []*attr{
		{Name: "value", Type: tString, Mutability: "readOnly"}, {Name: "$ref", Type: tReference, Mutability: "readOnly", RefTypes: []string{"Group"}},
		{Name: "display", Type: tString, Mutability: "readOnly"}, {Name: "type", Type: tString, Mutability: "readOnly"},
	}},
	{Name: "entitlements", Type: tComplex, Multi: true, Description: "Entitlements of the user.", Sub: multiSub()},
	{Name: "roles", Type: tComplex, Multi: true, Description: "Roles of the user (Okta entitlements: managed Discord role ids).", Sub: multiSub()},
	{Name: "x509Certificates", Type: tComplex, Multi: true, Description: "X.509 certificates of the user.", Sub: multiSub()},
}}

var enterpriseSchema = &schemaDef{ID: SchemaEnterprise, Name: "EnterpriseUser", Description: "Enterprise User", Attrs: []*attr{
	str("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
	str("costCenter", "Identifies the name of a cost center."),
	str("organization", "Identifies the name of an organization."),
	str("division", "Identifies the name of a division."),
	str("department", "Identifies the name of a department."),
	{Name: "manager", Type: tComplex, Description: "The user's manager.", Sub: []*attr{
		str("value", "The id of the manager."), {Name: "$ref", Type: tReference, RefTypes: []string{"User"}},
		{Name: "displayName", Type: tString, Mutability: "readOnly"},
	}},
}}

var discordSchema = &schemaDef{ID: SchemaDiscord, Name: "DiscordUser", Description: "Discord account of the user", Attrs: []*attr{
	{Name: discordUserIDAttr, Type: tString, CaseExact: true, Uniqueness: "server", Description: "Discord user id (snowflake): a string of 17 to 20 digits."},
}}

var groupSchema = &schemaDef{ID: SchemaGroup, Name: "Group", Description: "Group", Attrs: []*attr{
	{Name: "displayName", Type: tString, Required: true, Uniqueness: "server", Description: "A human-readable name for the Group (unique per tenant)."},
	{Name: "members", Type: tComplex, Multi: true, Description: "A list of members of the Group.", Sub: []*attr{
		{Name: "value", Type: tString, Mutability: "immutable", CaseExact: true},
		{Name: "$ref", Type: tReference, Mutability: "immutable", RefTypes: []string{"User"}},
		{Name: "display", Type: tString, Mutability: "readOnly"},
		{Name: "type", Type: tString, Mutability: "immutable", Canonical: []string{"User"}},
	}},
}}

// resourceKind says what a handler serves.
type resourceKind int

const (
	kindUser resourceKind = iota
	kindGroup
)

// schemasFor returns the core schema and the extensions of a kind.
func schemasFor(k resourceKind) (*schemaDef, []*schemaDef) {
	if k == kindGroup {
		return groupSchema, nil
	}
	return userSchema, []*schemaDef{enterpriseSchema, discordSchema}
}

// lookupAttr resolves a top-level attribute name (optionally URN-prefixed)
// of a kind: it returns the extension URN ("" for core) and the attribute.
func lookupAttr(k resourceKind, uri, name string) (string, *attr) {
	core, exts := schemasFor(k)
	if uri == "" || strings.EqualFold(uri, core.ID) {
		for _, a := range commonAttrs {
			if strings.EqualFold(a.Name, name) {
				return "", a
			}
		}
		if a := core.attr(name); a != nil {
			return "", a
		}
		if uri != "" {
			return "", nil
		}
	}
	for _, e := range exts {
		if strings.EqualFold(uri, e.ID) {
			if a := e.attr(name); a != nil {
				return e.ID, a
			}
		}
	}
	return "", nil
}

// extensionByURN finds an extension schema of a kind, case-insensitively.
func extensionByURN(k resourceKind, urn string) *schemaDef {
	_, exts := schemasFor(k)
	for _, e := range exts {
		if strings.EqualFold(e.ID, urn) {
			return e
		}
	}
	return nil
}

// splitURNPath splits "urn:...:User:name.givenName" into the URN and the
// rest; it returns ("", p) when p has no known schema URN prefix.
func splitURNPath(k resourceKind, p string) (string, string) {
	core, exts := schemasFor(k)
	for _, s := range append([]*schemaDef{core}, exts...) {
		if len(p) > len(s.ID) && strings.EqualFold(p[:len(s.ID)], s.ID) && p[len(s.ID)] == ':' {
			return s.ID, p[len(s.ID)+1:]
		}
	}
	return "", p
}
